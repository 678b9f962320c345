"""What flows to clients: log events (encoded once, for every transport) and ephemeral
messages."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def iso_millis(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One outbox row, with its wire forms built once however many clients receive it."""

    id: int
    channel: str
    type: str
    data: dict[str, Any]
    committed_at: float
    sse: bytes
    ws: str

    @classmethod
    def from_row(
        cls,
        id: int,
        channel: str,
        type: str,
        data_json: str,
        actor_id: uuid.UUID,
        created_at: datetime,
    ) -> "LogEvent":
        created = iso_millis(created_at)
        body = (
            f'{{"id":{id},"channel":{json.dumps(channel)},"type":{json.dumps(type)},'
            f'"data":{data_json},"actor_id":"{actor_id}","created_at":"{created}"}}'
        )
        ws = (
            f'{{"type":"event","id":{id},"channel":{json.dumps(channel)},'
            f'"event":{json.dumps(type)},"data":{data_json},"actor_id":"{actor_id}",'
            f'"created_at":"{created}"}}'
        )
        return cls(
            id=id,
            channel=channel,
            type=type,
            data=json.loads(data_json),
            committed_at=created_at.timestamp(),
            sse=f"id: {id}\nevent: {type}\ndata: {body}\n\n".encode(),
            ws=ws,
        )


@dataclass(frozen=True, slots=True)
class Ephemeral:
    """A message published over WebSocket: delivered to the channel's other subscribers on
    every replica, never stored."""

    channel: str
    sender: str
    """The publishing connection's id, so that it does not get its own message back."""
    ws: str


def sse_control(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()

"""Fan-out: the registry of subscribers by channel, and handing each event or ephemeral message
to the subscribers of its channel. Each event's wire forms are built once (LogEvent), however
many subscribers receive it."""

from collections import defaultdict

from realtime_service.events import Ephemeral, LogEvent
from realtime_service.subscriber import Subscriber


class FanOut:
    def __init__(self) -> None:
        self.subscribers: set[Subscriber] = set()
        self._by_channel: dict[str, set[Subscriber]] = defaultdict(set)

    def subscribe(self, subscriber: Subscriber, channel: str) -> None:
        self.subscribers.add(subscriber)
        subscriber.channels.add(channel)
        self._by_channel[channel].add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, channel: str) -> None:
        subscriber.channels.discard(channel)
        members = self._by_channel.get(channel)
        if members is not None:
            members.discard(subscriber)
            if not members:
                del self._by_channel[channel]

    def revoke(self, subscriber: Subscriber, channel: str) -> None:
        """Stop delivering `channel` to `subscriber`, and tell it so."""
        self.unsubscribe(subscriber, channel)
        subscriber.revoked_from(channel)

    def remove(self, subscriber: Subscriber) -> None:
        for channel in list(subscriber.channels):
            self.unsubscribe(subscriber, channel)
        self.subscribers.discard(subscriber)
        subscriber.cancel_timer()

    def close_all(self, code: int, reason: str) -> None:
        for subscriber in list(self.subscribers):
            subscriber.close(code, reason)

    def subscribers_of(self, channel: str) -> list[Subscriber]:
        return list(self._by_channel.get(channel, ()))

    def deliver(self, event: LogEvent) -> None:
        for subscriber in self.subscribers_of(event.channel):
            subscriber.push(event)

    def deliver_message(self, message: Ephemeral) -> None:
        """To the channel's other WebSocket subscribers (SSE carries no messages)."""
        for subscriber in self.subscribers_of(message.channel):
            if subscriber.transport == "ws" and subscriber.id != message.sender:
                subscriber.push(message)

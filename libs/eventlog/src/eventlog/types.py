"""Event types: values of `EventType`, each declared once by the module that emits it.

Declaring a type registers it and creates its metric series, so `api_events_written_total`
has a series for every type from the start (a rate over a missing series would read as no
data, not as zero). The writer accepts only registered types: an event cannot reach the log
under a name nobody declared, and a type cannot be declared twice (two modules claiming one
name would be two meanings).
"""

from dataclasses import dataclass

from prometheus_client import Counter

# The metric keeps the name it had in api-service: dashboards and alerts read it.
EVENTS_WRITTEN = Counter("api_events_written", "Events committed to the outbox", ["type"])


class UnregisteredEventType(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class EventType:
    """One kind of event, as it appears in the log's `type` column and on the wire."""

    name: str

    def __str__(self) -> str:
        return self.name


class EventTypeRegistry:
    def __init__(self) -> None:
        self._types: dict[str, EventType] = {}

    def declare(self, name: str) -> EventType:
        """Register `name` and return its value; an existing name is an error."""
        if name in self._types:
            raise ValueError(f"event type {name!r} is declared twice")
        if len(name) > 32:
            raise ValueError(f"event type {name!r} is longer than the log's column")
        declared = EventType(name)
        self._types[name] = declared
        EVENTS_WRITTEN.labels(type=name)
        return declared

    def check(self, event_type: EventType) -> None:
        if self._types.get(event_type.name) is not event_type:
            raise UnregisteredEventType(f"event type {event_type.name!r} is not declared")

    def names(self) -> frozenset[str]:
        return frozenset(self._types)

    def __contains__(self, name: object) -> bool:
        return name in self._types


EVENT_TYPES = EventTypeRegistry()
"""The process's registry: every module that emits events declares its types here."""


def declare(name: str) -> EventType:
    return EVENT_TYPES.declare(name)

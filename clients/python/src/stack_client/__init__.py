"""The stack's Python client: `AsyncStackClient` (session, REST helpers, live subscriptions),
and `StackClient`, the same blocking, for scripts."""

from stack_client.client import AsyncStackClient
from stack_client.errors import StackError, SubscriptionStopped
from stack_client.live import Event, Message, Reset, StateChange, Subscription
from stack_client.sync import StackClient

__all__ = [
    "AsyncStackClient",
    "Event",
    "Message",
    "Reset",
    "StackClient",
    "StackError",
    "StateChange",
    "Subscription",
    "SubscriptionStopped",
]

"""The stack's Python client: `AsyncStackClient` (session, REST helpers, live subscriptions)."""

from stack_client.client import AsyncStackClient
from stack_client.errors import StackError, SubscriptionStopped
from stack_client.live import Event, Message, Reset, StateChange, Subscription

__all__ = [
    "AsyncStackClient",
    "Event",
    "Message",
    "Reset",
    "StackError",
    "StateChange",
    "Subscription",
    "SubscriptionStopped",
]

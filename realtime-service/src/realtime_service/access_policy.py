"""The policy that turns events into access changes for live subscriptions, applied in log
order around each event's delivery (docs/contract.md §6, §7):

- a revocation (`user.deactivated`, `user.sessions_revoked`; eventlog.revocations) is recorded
  for the token verifier, and the user's connections are closed (4401);
- `member.removed` on a board channel: the removed member's subscription to it ends before the
  event is delivered, so they get nothing from it on;
- `board.deleted`: every subscription to the board's channel ends after the event is delivered,
  so its members see the deletion, then nothing more.

The event types are api-service's and auth-service's, named as the contract names them.
"""

from eventlog.revocations import REACTIVATED, RevokedUsers, is_revocation
from realtime_service.events import LogEvent
from realtime_service.fanout import FanOut
from realtime_service.subscriber import Subscriber

REVOKED_CLOSE = (4401, "access revoked: the account was deactivated or its sessions ended")
MEMBER_REMOVED = "member.removed"
BOARD_DELETED = "board.deleted"
BOARD_CHANNEL_PREFIX = "board:"


class AccessPolicy:
    def __init__(self, fanout: FanOut, revoked: RevokedUsers) -> None:
        self._fanout = fanout
        self.revoked = revoked

    def admit(self, subscriber: Subscriber) -> None:
        """On subscribing: a ticket issued just before a deactivation may reach this node."""
        if self.revoked.is_deactivated(subscriber.user_id):
            subscriber.close(*REVOKED_CLOSE)

    def before_delivery(self, event: LogEvent) -> None:
        if is_revocation(event.type):
            self._revoke_user(event)
        if event.type == MEMBER_REMOVED and event.channel.startswith(BOARD_CHANNEL_PREFIX):
            removed = str(event.data.get("user_id"))
            for subscriber in self._fanout.subscribers_of(event.channel):
                if str(subscriber.user_id) == removed:
                    self._fanout.revoke(subscriber, event.channel)

    def after_delivery(self, event: LogEvent) -> None:
        if event.type == BOARD_DELETED:
            for subscriber in self._fanout.subscribers_of(event.channel):
                self._fanout.revoke(subscriber, event.channel)

    def _revoke_user(self, event: LogEvent) -> None:
        user_id = self.revoked.apply(event.type, event.data, event.committed_at)
        if user_id is None or event.type == REACTIVATED.name:
            return
        for subscriber in list(self._fanout.subscribers):
            if subscriber.user_id == user_id:
                subscriber.close(*REVOKED_CLOSE)

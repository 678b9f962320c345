import time
import uuid

from eventlog.revocations import DEACTIVATED, REACTIVATED, SESSIONS_REVOKED, RevokedUsers


def test_deactivation_revokes_every_token_until_reactivated() -> None:
    revoked = RevokedUsers(window_seconds=60)
    user = uuid.uuid4()
    assert revoked.apply(DEACTIVATED.name, {"user_id": str(user)}, time.time()) == user
    assert revoked.is_revoked(user, issued_at=time.time() + 10)
    assert revoked.is_deactivated(user)
    assert not revoked.is_revoked(uuid.uuid4(), issued_at=0)
    reactivated_at = time.time()
    revoked.apply(
        REACTIVATED.name, {"user_id": str(user), "issued_before": reactivated_at}, reactivated_at
    )
    assert not revoked.is_revoked(user, issued_at=reactivated_at)
    assert not revoked.is_deactivated(user)
    # Deactivation ended every session: a token from before it does not come back to life.
    assert revoked.is_revoked(user, issued_at=reactivated_at - 10)
    assert revoked.apply(REACTIVATED.name, {"user_id": str(uuid.uuid4())}, time.time()) is not None
    assert len(revoked) == 1


def test_sessions_revoked_refuses_only_tokens_issued_before() -> None:
    revoked = RevokedUsers(window_seconds=60)
    user = uuid.uuid4()
    revoked.apply(SESSIONS_REVOKED.name, {"user_id": str(user), "issued_before": 1000}, time.time())
    assert revoked.is_revoked(user, issued_at=999)
    assert not revoked.is_revoked(user, issued_at=1000)
    assert not revoked.is_deactivated(user)


def test_entries_are_forgotten_once_no_token_can_still_verify() -> None:
    revoked = RevokedUsers(window_seconds=60)
    user = uuid.uuid4()
    revoked.apply(DEACTIVATED.name, {"user_id": str(user)}, time.time() - 61)
    assert not revoked.is_revoked(user, issued_at=0)
    assert len(revoked) == 0


def test_the_set_is_bounded_and_ignores_malformed_events() -> None:
    revoked = RevokedUsers(window_seconds=60, max_entries=3)
    users = [uuid.uuid4() for _ in range(5)]
    for user in users:
        revoked.apply(DEACTIVATED.name, {"user_id": str(user)}, time.time())
    assert len(revoked) == 3
    assert not revoked.is_revoked(users[0], issued_at=0)
    assert revoked.is_revoked(users[4], issued_at=0)
    assert revoked.apply(DEACTIVATED.name, {"user_id": "nope"}, time.time()) is None
    assert revoked.apply(DEACTIVATED.name, {}, time.time()) is None
    assert len(revoked) == 3


def test_a_full_set_makes_room_by_forgetting_expired_entries_first() -> None:
    revoked = RevokedUsers(window_seconds=60, max_entries=2)
    expired, live, new = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    revoked.apply(SESSIONS_REVOKED.name, {"user_id": str(expired)}, time.time() - 61)
    revoked.apply(DEACTIVATED.name, {"user_id": str(live)}, time.time())
    revoked.apply(DEACTIVATED.name, {"user_id": str(new)}, time.time())
    assert len(revoked) == 2
    assert revoked.is_revoked(live, issued_at=0)
    assert revoked.is_revoked(new, issued_at=0)

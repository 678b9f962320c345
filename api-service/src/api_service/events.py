"""The events api-service emits, declared in the log's registry (eventlog.types), and the
channels it emits them on (docs/contract.md §6)."""

import uuid

from eventlog.types import declare

BOARD_UPDATED = declare("board.updated")
BOARD_DELETED = declare("board.deleted")
MEMBER_ADDED = declare("member.added")
MEMBER_UPDATED = declare("member.updated")
MEMBER_REMOVED = declare("member.removed")
TASK_CREATED = declare("task.created")
TASK_UPDATED = declare("task.updated")
TASK_DELETED = declare("task.deleted")
COMMENT_CREATED = declare("comment.created")
COMMENT_UPDATED = declare("comment.updated")
COMMENT_DELETED = declare("comment.deleted")


def board_channel(board_id: uuid.UUID) -> str:
    return f"board:{board_id}"


def user_channel(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"

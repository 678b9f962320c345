from servicekit.errors import Conflict, NotFound, ServiceError, field_issue


class BoardNotFound(NotFound):
    error = "board_not_found"
    default_detail = "No such board, or you are not a member"


class TaskNotFound(NotFound):
    error = "task_not_found"
    default_detail = "No such task, or you are not a member of its board"


class CommentNotFound(NotFound):
    error = "comment_not_found"
    default_detail = "No such comment, or you are not a member of its board"


class MemberNotFound(NotFound):
    error = "member_not_found"
    default_detail = "This user is not a member of the board"


class LastOwner(Conflict):
    error = "last_owner"
    default_detail = "A board must keep at least one owner"


class InvalidIfMatch(ServiceError):
    error = "invalid_if_match"
    default_detail = 'If-Match must be * or a list of quoted versions, e.g. "3"'


class AssigneeNotMember(ServiceError):
    """A 422 like a validation error's: its detail names the field."""

    status_code = 422
    error = "assignee_not_member"

    def __init__(self) -> None:
        super().__init__(
            field_issue(
                "body", "assignee_id", "must be a member of the board", "assignee_not_member"
            )
        )

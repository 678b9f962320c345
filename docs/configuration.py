"""Writes docs/configuration.md from the services' settings classes: every environment
variable a service reads, its default, and what it is for (the comment above the field).

    uv run python docs/configuration.py

docs/test_configuration.py fails when the file and the classes disagree.
"""

import ast
import inspect
import textwrap
from pathlib import Path

from pydantic_settings import BaseSettings

from api_service.config import Settings as ApiSettings
from auth_service.config import Settings as AuthSettings
from realtime_service.config import Settings as RealtimeSettings
from servicekit.settings import ServiceSettings

OUTPUT = Path(__file__).with_name("configuration.md")
SERVICES: dict[str, type[BaseSettings]] = {
    "auth-service": AuthSettings,
    "api-service": ApiSettings,
    "realtime-service": RealtimeSettings,
}
HEADER = """# Configuration reference

Generated from the settings classes by `uv run python docs/configuration.py`; a test fails
when it and the code disagree. Each service reads these from its environment (or an `.env`
file in its working directory); names are case-insensitive. The defaults are development
defaults for the native stack: production sets at least `DATABASE_URL`, `PUBLIC_URL`,
`JWT_ISSUER` and the signing key (docker-compose.yml and the Helm chart's values show how).
Settings used only by the tests (docs/testing.md) are listed with the rest: each defaults to
its production value.

Any setting can also come from a file: `<NAME>_FILE=/path` sets `<NAME>` to the file's content
(setting both is refused). The Helm chart passes the database URL and every `secretSettings`
entry this way, from Secrets mounted as files, so that no secret sits in a process's
environment.
"""


def comments_above_fields(settings: type[BaseSettings]) -> dict[str, str]:
    """Each field's comment: its own trailing comment, or the run of `#` lines above it, or
    the one above the run of fields it belongs to (no blank line between), or else the
    nearest comment above that names it in backquotes."""
    lines = textwrap.dedent(inspect.getsource(settings)).splitlines()
    (klass,) = ast.parse("\n".join(lines)).body
    assert isinstance(klass, ast.ClassDef)
    comments: dict[str, str] = {}
    seen: list[str] = []
    group = ""
    previous_end = 0
    for node in klass.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        name = node.target.id
        above: list[str] = []
        index = node.lineno - 2
        while index >= 0 and lines[index].strip().startswith("#"):
            above.insert(0, lines[index].strip().removeprefix("#").strip())
            index -= 1
        if above:
            group = " ".join(above)
            seen.append(group)
        elif index + 1 != previous_end:
            group = ""
        last_line = lines[(node.end_lineno or node.lineno) - 1]
        trailing = last_line.split("  # ", 1)[1].strip() if "  # " in last_line else ""
        naming = [comment for comment in seen if f"`{name}`" in comment]
        comments[name] = trailing or group or (naming[-1] if naming else "")
        previous_end = node.end_lineno or node.lineno
    return comments


def default_of(settings: type[BaseSettings], name: str) -> str:
    field = settings.model_fields[name]
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, str) and not value:
        return '`""`'
    return f"`{value}`"


def all_comments(settings: type[BaseSettings]) -> dict[str, str]:
    """Every field's comment, from the class that defines it or any class it inherits from."""
    comments = dict.fromkeys(settings.model_fields, "")
    for klass in reversed(settings.__mro__):
        if issubclass(klass, BaseSettings) and klass is not BaseSettings:
            comments.update({k: v for k, v in comments_above_fields(klass).items() if v})
    return comments


def table(settings: type[BaseSettings], names: list[str]) -> list[str]:
    comments = all_comments(settings)
    rows = ["| variable | default | what it is for |", "|---|---|---|"]
    for name in names:
        text = comments.get(name, "").replace("|", "\\|")
        rows.append(f"| `{name.upper()}` | {default_of(settings, name)} | {text} |")
    return rows


def render() -> str:
    shared = list(ServiceSettings.model_fields)
    out = [HEADER, "## Every service", "", *table(ServiceSettings, shared), ""]
    for service, settings in SERVICES.items():
        own = [
            name
            for name in settings.model_fields
            if name not in shared or default_of(settings, name) != default_of(ServiceSettings, name)
        ]
        out += [f"## {service}", "", *table(settings, own), ""]
    return "\n".join(out)


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")

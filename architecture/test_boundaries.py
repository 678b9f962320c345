"""The code's boundaries, checked by reading it (no database, no processes):

- the event log's tables (inbox, log, lease, watermark) are named only inside the eventlog
  package (libs/eventlog/src), which owns them;
- no service imports another service's package, and libs/ import no service;
- nothing the images ship (the services, servicekit, eventlog) imports devstack, the
  development package no image contains;
- no service names another service's schema in its code, except the objects that schema
  publishes as its contract (docs/contract.md).

Tests are outside the rules: they inspect and fault the database directly, on purpose. The
benchmarks and the native launcher drive whole stacks, so they may import any service, but
they too name the log's tables only through the package.
"""

import ast
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
SERVICES = {"auth": "auth_service", "api": "api_service", "realtime": "realtime_service"}
LOG_PACKAGE = Path("libs/eventlog/src/eventlog")

LOG_TABLE = re.compile(r"\b(event_inbox|sequencer_lease|outbox_state|(api|eventlog)\.events)\b")
# api-service's history created the log's tables before they moved (eventlog's migration
# 0001); those revisions stay as they ran.
LOG_HISTORY = {
    Path("api-service/migrations/versions") / name
    for name in (
        "0001_initial.py",
        "0002_outbox_watermark.py",
        "0003_event_inbox_and_sequencer.py",
    )
}
# Another service's schema objects a service may name: each one documented in its contract.
CONTRACTS = {"api.board_role": "docs/contract.md"}

Source = tuple[Path, str]  # (path relative to the repository, its text)


def code_files() -> Iterator[Source]:
    """Every Python file that is not a test: the services, the libraries, deploy/ and bench/."""
    for top in ("auth-service", "api-service", "realtime-service", "libs", "deploy", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or path.name.startswith("test_") or ".venv" in parts:
                continue
            yield path.relative_to(ROOT), path.read_text()


def owner_of(path: Path) -> str | None:
    """The service a file belongs to; None for the libraries, deploy/ and bench/."""
    return path.parts[0].removesuffix("-service") if path.parts[0].endswith("-service") else None


def string_constants(path: Path, text: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.value


def imported_modules(path: Path, text: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


def log_table_offenders(sources: Iterable[Source]) -> list[str]:
    return [
        f"{path}: {match.group(0)}"
        for path, text in sources
        if not path.is_relative_to(LOG_PACKAGE) and path not in LOG_HISTORY
        for constant in string_constants(path, text)
        for match in LOG_TABLE.finditer(constant)
    ]


def import_offenders(sources: Iterable[Source]) -> list[str]:
    offenders = []
    for path, text in sources:
        if path.parts[0] in ("bench", "deploy"):
            continue
        owner = owner_of(path)
        foreign = {package for name, package in SERVICES.items() if name != owner}
        offenders += [
            f"{path} imports {module}"
            for module in imported_modules(path, text)
            if module.split(".")[0] in foreign
        ]
    return offenders


# What the production images install: each service and its runtime libraries.
SHIPPED = (*(f"{name}-service" for name in SERVICES), "libs/servicekit", "libs/eventlog")


def development_offenders(sources: Iterable[Source]) -> list[str]:
    return [
        f"{path} imports {module}"
        for path, text in sources
        if any(path.is_relative_to(top) for top in SHIPPED)
        for module in imported_modules(path, text)
        if module.split(".")[0] == "devstack"
    ]


def schema_offenders(sources: Iterable[Source]) -> list[str]:
    offenders = []
    for path, text in sources:
        owner = owner_of(path)
        if owner is None:
            continue
        others = "|".join(name for name in SERVICES if name != owner)
        # `api.members` in SQL; not `/api/boards` (a path) nor `api_service.x` (a module).
        schema_object = re.compile(rf"(?<![\w/.-])({others})\.[a-z_]+\b")
        offenders += [
            f"{path}: {match.group(0)}"
            for constant in string_constants(path, text)
            for match in schema_object.finditer(constant)
            if match.group(0) not in CONTRACTS
        ]
    return offenders


def test_only_the_log_package_names_the_log_tables() -> None:
    assert log_table_offenders(code_files()) == []


def test_no_service_imports_another_and_libraries_import_none() -> None:
    assert import_offenders(code_files()) == []


def test_nothing_the_images_ship_imports_the_development_package() -> None:
    assert development_offenders(code_files()) == []


def test_no_service_names_another_services_schema_but_its_contract() -> None:
    assert schema_offenders(code_files()) == []
    for name, doc in CONTRACTS.items():
        assert f"`{name}" in (ROOT / doc).read_text(), f"{name} is not documented in {doc}"


def test_each_rule_finds_what_it_forbids() -> None:
    realtime = Path("realtime-service/src/realtime_service/x.py")
    assert log_table_offenders([(realtime, "q = 'SELECT id FROM eventlog.events'")])
    assert log_table_offenders([(Path("libs/servicekit/src/x.py"), "q = 'FROM event_inbox'")])
    assert not log_table_offenders([(LOG_PACKAGE / "x.py", "q = 'FROM eventlog.event_inbox'")])
    assert import_offenders([(realtime, "from api_service.models import members")])
    assert import_offenders([(Path("libs/eventlog/src/eventlog/x.py"), "import auth_service")])
    assert not import_offenders([(realtime, "from realtime_service import hub")])
    assert development_offenders([(realtime, "from devstack.testing import free_port")])
    assert development_offenders([(Path("libs/servicekit/src/x.py"), "import devstack")])
    assert not development_offenders([(Path("bench/x.py"), "from devstack import launcher")])
    assert schema_offenders([(realtime, "q = 'SELECT role FROM api.members'")])
    assert not schema_offenders([(realtime, "q = 'SELECT api.board_role($1, $2)'")])
    assert not schema_offenders([(realtime, "url = 'http://x/api/boards'")])

"""The README and the docs hold together: every relative link points at a file that exists
(and at a heading that exists, when it names one), the README stays a landing page, and
nothing cites a design document that is not in the repository."""

import os
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150
SKIPPED_DIRS = {".git", "node_modules", ".venv"}
# Spelled in two parts, so that this file does not cite what it forbids.
OUTSIDE_DESIGN = re.compile(rb"DESIGN" + rb"(\s*\xc2\xa7|\.md)")

FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)


def prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def anchors(markdown: Path) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown file."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(FENCE.sub("", markdown.read_text())):
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def relative_links(markdown: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(markdown.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("#")
    ]


@pytest.mark.parametrize("markdown", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(markdown: Path) -> None:
    broken = []
    for target in relative_links(markdown):
        path, _, anchor = target.partition("#")
        resolved = (markdown.parent / path).resolve()
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{markdown.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("markdown", DOCS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_anchor_within_a_file_names_one_of_its_headings(markdown: Path) -> None:
    own = anchors(markdown)
    targets = LINK.findall(prose(markdown.read_text()))
    broken = [target for target in targets if target.startswith("#") and target[1:] not in own]
    assert not broken, f"{markdown.relative_to(ROOT)}: {broken}"


def test_the_link_check_sees_links_and_headings() -> None:
    """The checks above would pass on nothing: make sure they read what they should."""
    assert "docs/contract.md" in relative_links(ROOT / "README.md")
    assert "8-metrics" in anchors(ROOT / "docs" / "contract.md")


def test_the_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, (
        f"README.md has {len(lines)} lines: move the detail into docs/ and link it"
    )


def test_the_readme_gives_the_test_command_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^```sh\n(.*?)^```", readme, re.MULTILINE | re.DOTALL)
    assert commands, "the README's first code block gives the two set-up commands"
    first = [line.split("#", 1)[0].strip() for line in commands[0].splitlines()]
    assert first == ["docker compose up --build", "make test"]
    assert 'timed "make test" make test' in (ROOT / ".ci" / "run").read_text()


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    citing = []
    for directory, subdirectories, files in os.walk(ROOT):
        subdirectories[:] = [name for name in subdirectories if name not in SKIPPED_DIRS]
        for name in files:
            path = Path(directory, name)
            if OUTSIDE_DESIGN.search(path.read_bytes()):
                citing.append(str(path.relative_to(ROOT)))
    assert not citing, f"cite the repository's docs (e.g. docs/contract.md §5) instead: {citing}"

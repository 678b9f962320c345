"""The client examples of docs/clients.md, run as written against the client stack."""

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from ..conftest import ROOT
from .conftest import ClientStack
from .helpers import PASSWORD, sign_up


def doc_example(language: str) -> str:
    clients = (ROOT / "docs" / "clients.md").read_text()
    blocks = re.findall(rf"```{language}\n(.*?)```", clients, re.DOTALL)
    assert len(blocks) == 1, f"one {language} example expected in docs/clients.md"
    return str(blocks[0])


async def run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=cwd,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, output.decode()
    return output.decode()


@pytest.mark.parametrize("language", ["js", "python"])
async def test_the_doc_example_runs_as_written(
    client_stack: ClientStack, language: str, tmp_path: Path
) -> None:
    person = await sign_up(client_stack.base_url)
    await person.client.aclose()
    env = {"STACK_URL": client_stack.base_url, "STACK_EMAIL": person.email}
    env["STACK_PASSWORD"] = PASSWORD
    if language == "js":
        node = shutil.which("node")
        assert node is not None, "Node.js is missing: `make install` links it into .venv/bin"
        # Inside the package, so that `import ... from "stack-client"` resolves as it would
        # for an application that installed it.
        script = ROOT / "clients" / "js" / "example.mjs"
        script.write_text(doc_example("js"))
        try:
            output = await run([node, script.name], script.parent, env)
        finally:
            script.unlink()
    else:
        script = tmp_path / "example.py"
        script.write_text(doc_example("python"))
        output = await run([sys.executable, str(script)], tmp_path, env)
    created = re.findall(r"^\d+ task\.created (\w+)$", output, re.MULTILINE)
    assert created == ["Write", "Review", "Ship"], output

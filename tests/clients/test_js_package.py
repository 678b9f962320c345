"""The JavaScript package's static promises."""

import json

from ..conftest import ROOT

JS_CLIENT = ROOT / "clients" / "js"


def test_the_package_is_an_es_module_without_runtime_dependencies() -> None:
    package = json.loads((JS_CLIENT / "package.json").read_text())
    assert package["type"] == "module"
    assert package["types"] == "index.d.ts"
    assert "dependencies" not in package
    lock = json.loads((JS_CLIENT / "package-lock.json").read_text())
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]
    assert set(lock["packages"]) == {"", "node_modules/ws"}

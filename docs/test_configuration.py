"""docs/configuration.md is what docs/configuration.py renders from the settings classes, and
every setting says what it is for."""

import importlib.util
from pathlib import Path

# docs/configuration.py is a script beside the document it writes, not a package's module:
# loaded from its path, as `python docs/configuration.py` runs it.
_SPEC = importlib.util.spec_from_file_location(
    "configuration", Path(__file__).with_name("configuration.py")
)
assert _SPEC is not None
assert _SPEC.loader is not None
configuration = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(configuration)


def test_the_reference_matches_the_settings_classes() -> None:
    assert configuration.OUTPUT.read_text() == configuration.render(), (
        "docs/configuration.md is out of date: uv run python docs/configuration.py"
    )


def test_every_setting_says_what_it_is_for() -> None:
    undocumented = [
        f"{service}: {name}"
        for service, settings in {
            "every service": configuration.ServiceSettings,
            **configuration.SERVICES,
        }.items()
        for name, comment in configuration.all_comments(settings).items()
        if not comment
    ]
    assert not undocumented, f"add a comment above each in its config.py: {undocumented}"

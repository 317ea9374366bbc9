"""Exercises docs/providers/adding-new-provider.md with the package in tests/plugin_example.

`pip install` needs a build backend with `bdist_wheel`, which offline CI may lack, so the test
does what installing does for discovery: it puts the package on sys.path and writes the
`.dist-info` (METADATA + entry_points.txt) that pip would write, taking the entry points
from the example's own pyproject.toml, so the documented file is what gets tested.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from shared.providers.base import Message, StreamEnd, TextDelta
from shared.providers.errors import InvalidModel
from shared.providers.manager import ENTRY_POINT_GROUP, ProviderManager
from shared.settings import Settings

EXAMPLE = Path(__file__).resolve().parents[1] / "plugin_example"


@pytest.fixture
def installed_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"][ENTRY_POINT_GROUP]
    dist = tmp_path / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    yield "reverse"
    sys.modules.pop("switchboard_reverse", None)


def test_plugin_is_discovered_configured_and_streams(installed_example: str) -> None:
    manager = ProviderManager()
    assert installed_example in manager.list_providers()
    # Built-ins still load next to the plugin.
    assert "openai" in manager.list_providers()

    settings = Settings(PROVIDERS_ENABLED=[])
    assert "reverse" in manager.available_providers(settings)

    provider = manager.get_provider("reverse")
    events = list(
        provider.generate_streaming_response(
            [Message(role="user", content="one two three")], "reverse-1"
        )
    )
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["three", " two", " one"]
    assert isinstance(events[-1], StreamEnd) and events[-1].usage.estimated
    assert [m["id"] for m in provider.list_models()] == ["reverse-1"]

    with pytest.raises(InvalidModel):
        provider.generate_chat_response([Message(role="user", content="x")], "nope")

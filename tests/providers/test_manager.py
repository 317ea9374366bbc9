"""ProviderManager: registry, entry-point loading, rebuild on config change; catalog rules."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from shared.providers.base import BaseProvider, Message, ProviderConfig, StreamEnd, TextDelta
from shared.providers.catalog import provider_configs
from shared.providers.echo import EchoProvider
from shared.providers.manager import ProviderManager, UnknownProvider, provider_manager
from shared.settings import CompatibleProviderSettings, Settings

TEST_GROUP = "switchboard.providers.tests"


class RecordingProvider(BaseProvider):
    name = "recording"
    closed: list[RecordingProvider] = []

    def _stream(
        self, messages: list[Message], model: str, temperature: float | None, max_tokens: int | None
    ) -> Iterator[TextDelta | StreamEnd]:
        yield TextDelta("hi")
        from shared.providers.base import Usage

        yield StreamEnd(Usage(1, 1), "stop")

    def list_models(self) -> list[dict[str, Any]]:
        return []

    def close(self) -> None:
        RecordingProvider.closed.append(self)


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "OPENAI_API_KEY": None,
        "ANTHROPIC_API_KEY": None,
        "OPENAI_COMPATIBLE_PROVIDERS": [],
        "MULTI_PROVIDER_ENABLED": True,
        "DEFAULT_PROVIDER": "ollama",
        "ECHO_ENABLED": True,
        "PROVIDERS_ENABLED": [],
    }
    base.update(overrides)
    return Settings(**base)


def cfg(**overrides: Any) -> ProviderConfig:
    fields: dict[str, Any] = {"name": "rec", "adapter": "recording"}
    fields.update(overrides)
    return ProviderConfig(**fields)


# -- registry -----------------------------------------------------------------------------


def test_builtin_adapters_load_from_entry_points() -> None:
    names = ProviderManager().list_providers()
    assert {"echo", "ollama", "anthropic", "openai", "openai_compatible"} <= set(names)


def test_register_and_get_provider_caches_instance() -> None:
    manager = ProviderManager(entry_point_group=TEST_GROUP)
    manager.register_provider("recording", RecordingProvider)
    first = manager.get_provider("rec", cfg())
    assert isinstance(first, RecordingProvider)
    assert manager.get_provider("rec", cfg()) is first
    assert "recording" in manager.list_providers()


def test_register_rejects_non_providers() -> None:
    with pytest.raises(TypeError):
        ProviderManager().register_provider("bad", object)  # type: ignore[arg-type]


def test_config_change_rebuilds_and_closes_old_instance() -> None:
    manager = ProviderManager(entry_point_group=TEST_GROUP)
    manager.register_provider("recording", RecordingProvider)
    old = manager.get_provider("rec", cfg(api_key=SecretStr("k1")))
    new = manager.get_provider("rec", cfg(api_key=SecretStr("k2")))
    assert new is not old
    assert new.config.api_key is not None and new.config.api_key.get_secret_value() == "k2"
    assert old in RecordingProvider.closed
    assert manager.get_provider("rec", cfg(api_key=SecretStr("k2"))) is new


def test_unknown_provider_and_unknown_adapter() -> None:
    manager = ProviderManager()
    with pytest.raises(UnknownProvider):
        manager.get_provider("no-such-provider")
    with pytest.raises(UnknownProvider):
        manager.get_provider("x", cfg(name="x", adapter="no-such-adapter"))


def test_get_provider_without_config_uses_catalog() -> None:
    provider = provider_manager.get_provider("echo")
    assert isinstance(provider, EchoProvider)
    assert provider_manager.get_provider("echo") is provider


def test_replaced_http_adapter_closes_only_after_inflight_stream(ollama_stub: Any) -> None:
    manager = ProviderManager()
    base = {"name": "ollama", "adapter": "ollama", "api_endpoint": ollama_stub.base_url}
    old = manager.get_provider("ollama", ProviderConfig(**base, timeout=5.0))
    stream = old.generate_streaming_response(
        [Message(role="user", content="hi")], "stub-model+tokens=4"
    )
    first = next(stream)
    manager.get_provider("ollama", ProviderConfig(**base, timeout=6.0))  # swap mid-stream
    rest = list(stream)
    assert isinstance(first, TextDelta) and isinstance(rest[-1], StreamEnd)
    assert old._inflight.closed


# -- entry points -------------------------------------------------------------------------


def _fake_distribution(tmp_path: Path, entries: dict[str, str]) -> Path:
    dist = tmp_path / "fake_plugins-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugins\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in entries.items())
    (dist / "entry_points.txt").write_text(f"[{TEST_GROUP}]\n{lines}\n")
    return tmp_path


def test_broken_entry_point_is_logged_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    module = tmp_path / "fake_good_plugin.py"
    module.write_text(
        textwrap.dedent("""
        from shared.providers.echo import EchoProvider

        class GoodProvider(EchoProvider):
            name = "good"
    """)
    )
    monkeypatch.syspath_prepend(
        str(
            _fake_distribution(
                tmp_path,
                {
                    "broken": "module_that_does_not_exist_xyz:Provider",
                    "notaclass": "os.path:join",
                    "good": "fake_good_plugin:GoodProvider",
                },
            )
        )
    )
    caplog.set_level(logging.ERROR, logger="shared.providers.manager")
    manager = ProviderManager(entry_point_group=TEST_GROUP)
    assert manager.list_providers() == ["good"]
    assert "broken" in caplog.text and "notaclass" in caplog.text


def test_providers_enabled_limits_what_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(
        str(
            _fake_distribution(
                tmp_path,
                {
                    "echo": "shared.providers.echo:EchoProvider",
                    "ollama": "shared.providers.ollama:OllamaProvider",
                },
            )
        )
    )
    manager = ProviderManager(entry_point_group=TEST_GROUP)
    available = manager.available_providers(settings(PROVIDERS_ENABLED=["echo"]))
    assert manager.list_providers() == ["echo"]
    assert list(available) == ["echo"]


# -- catalog ------------------------------------------------------------------------------


def test_catalog_enables_keyed_providers_only() -> None:
    configs = provider_configs(settings())
    assert {"echo", "ollama", "anthropic", "openai"} <= set(configs)
    assert configs["ollama"].enabled and configs["echo"].enabled
    assert not configs["anthropic"].enabled and not configs["openai"].enabled

    keyed = provider_configs(
        settings(
            OPENAI_API_KEY="sk-x",
            ANTHROPIC_API_KEY="sk-ant-x",
            PROVIDER_TIMEOUT_SECONDS=7,
            PROVIDER_MAX_RETRIES=4,
        )
    )
    assert keyed["openai"].enabled and keyed["anthropic"].enabled
    assert keyed["openai"].timeout == 7 and keyed["anthropic"].max_retries == 4
    assert keyed["anthropic"].option("default_max_tokens") == 4096
    assert keyed["openai"].api_endpoint == "https://api.openai.com/v1"


def test_catalog_echo_and_ollama_settings() -> None:
    configs = provider_configs(settings(ECHO_TOKEN_DELAY_MS=5, OLLAMA_API_URL="http://h:1"))
    assert configs["echo"].option("token_delay_ms") == 5
    assert configs["ollama"].api_endpoint == "http://h:1"
    assert "echo" not in provider_configs(settings(ECHO_ENABLED=False))


def test_catalog_compatible_providers() -> None:
    groq = CompatibleProviderSettings(
        name="groq",
        base_url="https://api.groq.com/openai/v1",
        api_key=SecretStr("gsk-x"),
        models=["llama-3.1-8b"],
    )
    off = CompatibleProviderSettings(
        name="lmstudio", base_url="http://l:1234/v1", models=["m"], enabled=False
    )
    configs = provider_configs(settings(OPENAI_COMPATIBLE_PROVIDERS=[groq, off]))
    assert configs["groq"].adapter == "openai_compatible"
    assert configs["groq"].default_model == "llama-3.1-8b"
    assert configs["groq"].enabled and not configs["lmstudio"].enabled


def test_feature_flag_off_leaves_only_default_provider() -> None:
    configs = provider_configs(
        settings(
            MULTI_PROVIDER_ENABLED=False,
            DEFAULT_PROVIDER="openai",
            OPENAI_API_KEY="sk-x",
            ANTHROPIC_API_KEY="sk-ant",
        )
    )
    assert {n for n, c in configs.items() if c.enabled} == {"openai"}
    assert "anthropic" in configs  # still listed, as disabled


def test_available_providers_lists_enabled_only() -> None:
    available = ProviderManager().available_providers(settings())
    assert set(available) == {"echo", "ollama"}

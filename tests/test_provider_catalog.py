"""The provider tables as the runtime truth (issue 13, item 1), on real PostgreSQL: the
environment sync, what admins own, and each process's catalog built from both."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from shared.db import get_sessionmaker
from shared.models import ProviderCatalog, ProviderConfigRow, ProviderModel
from shared.pricing import ModelPrice, seed_price
from shared.providers.directory import ProviderDirectory, read_tables, sync_environment
from shared.providers.keys import ProviderKeyBox
from shared.providers.snapshot import build_catalog
from shared.settings import Settings

SECRET = Fernet.generate_key().decode()


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "ENVIRONMENT": "test",
        "DEFAULT_PROVIDER": "echo",
        "ECHO_MODELS": ["echo-1"],
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_MODELS": ["gpt-4", "gpt-4o-mini"],
        "ANTHROPIC_API_KEY": None,
        "PROVIDER_KEYS_SECRET": SECRET,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def tables(db_clean: None) -> Iterator[None]:
    yield


def _sync(settings: Settings) -> bool:
    with get_sessionmaker().begin() as session:
        return sync_environment(session, settings)


def _rows() -> dict[str, ProviderConfigRow]:
    with get_sessionmaker()() as session:
        rows = session.scalars(select(ProviderConfigRow)).all()
        for row in rows:
            _ = row.models  # loaded before the session closes
        return {row.provider_name: row for row in rows}


def _version() -> int:
    with get_sessionmaker()() as session:
        return session.scalar(select(ProviderCatalog.version)) or 0


def _catalog(settings: Settings):  # type: ignore[no-untyped-def]
    with get_sessionmaker()() as session:
        return build_catalog(settings, read_tables(session))


def test_the_sync_writes_the_environment_providers_priced_from_the_shipped_list(tables) -> None:
    settings = _settings()
    assert _sync(settings) is True
    rows = _rows()
    assert {"echo", "ollama", "anthropic", "openai"} <= set(rows)
    assert {row.source for row in rows.values()} == {"environment"}
    openai = rows["openai"]
    assert (openai.adapter, openai.api_endpoint) == ("openai", settings.OPENAI_API_BASE)
    assert openai.api_key_encrypted is None  # its key stays in the environment
    priced = {
        m.model_name: (m.input_cost_per_1k_tokens, m.output_cost_per_1k_tokens)
        for m in openai.models
    }
    assert priced == {
        "gpt-4": (Decimal("0.03"), Decimal("0.06")),
        "gpt-4o-mini": (Decimal("0.00015"), Decimal("0.0006")),
    }
    version = _version()
    assert version >= 1

    assert _sync(settings) is False  # nothing changed: no new version, no reload anywhere
    assert _version() == version


def test_admins_changes_to_an_environment_provider_survive_the_next_start(tables) -> None:
    settings = _settings()
    _sync(settings)
    with get_sessionmaker().begin() as session:
        openai = session.scalar(
            select(ProviderConfigRow).where(ProviderConfigRow.provider_name == "openai")
        )
        assert openai is not None
        gpt4 = next(m for m in openai.models if m.model_name == "gpt-4")
        gpt4.input_cost_per_1k_tokens = Decimal("0.5")
        gpt4.output_cost_per_1k_tokens = Decimal("1")
        mini = next(m for m in openai.models if m.model_name == "gpt-4o-mini")
        mini.is_enabled = False
        mini.input_cost_per_1k_tokens = mini.output_cost_per_1k_tokens = Decimal("0.7")
        openai.models.append(ProviderModel(model_name="o3-tuned", source="admin", is_enabled=True))
        openai.display_name = "OpenAI (team)"

    # The next start lists one model fewer and one more: only the environment's rows change.
    restarted = _settings(OPENAI_MODELS=["gpt-4", "gpt-4o-mini", "gpt-4.1"])
    assert _sync(restarted) is True
    catalog = _catalog(restarted)
    config = catalog.configs["openai"]
    assert config.models == ("gpt-4", "gpt-4.1", "o3-tuned")
    assert config.display_name == "OpenAI (team)"
    assert catalog.price("openai", "gpt-4") == ModelPrice(Decimal("0.5"), Decimal("1"))
    assert catalog.price("openai", "gpt-4.1") == seed_price("openai", "gpt-4.1")
    assert catalog.price("openai", "o3-tuned") is None  # no price given: unpriced, not free
    # Not offered any more, but a reply that was running on it is billed at its row's price.
    assert catalog.price("openai", "gpt-4o-mini") == ModelPrice(Decimal("0.7"), Decimal("0.7"))

    fewer = _settings(OPENAI_MODELS=["gpt-4"])
    _sync(fewer)
    names = {m.model_name: m.source for m in _rows()["openai"].models}
    assert names == {"gpt-4": "environment", "o3-tuned": "admin"}


def test_a_provider_dropped_from_the_settings_loses_its_row(tables) -> None:
    with_lab = _settings(
        OPENAI_COMPATIBLE_PROVIDERS=[
            {"name": "lab", "base_url": "http://127.0.0.1:9/v1", "models": ["m1"]}
        ]
    )
    _sync(with_lab)
    assert "lab" in _rows()
    _sync(_settings())
    assert "lab" not in _rows()
    assert "lab" not in _catalog(_settings()).configs


def test_a_disabled_provider_stays_listed_and_a_keyless_one_stays_disabled(tables) -> None:
    settings = _settings()
    _sync(settings)
    with get_sessionmaker().begin() as session:
        for name in ("openai", "anthropic"):
            row = session.scalar(
                select(ProviderConfigRow).where(ProviderConfigRow.provider_name == name)
            )
            assert row is not None
            row.is_enabled = name == "anthropic"  # enabling anthropic cannot give it a key
    catalog = _catalog(settings)
    assert catalog.configs["openai"].enabled is False
    assert catalog.configs["anthropic"].enabled is False
    assert "openai" not in catalog.enabled and "echo" in catalog.enabled


def test_an_admin_provider_is_built_from_its_row_with_its_key_decrypted(tables) -> None:
    settings = _settings()
    _sync(settings)
    token = ProviderKeyBox.from_settings(settings).encrypt("sk-lab-not-a-real-key-0001")
    with get_sessionmaker().begin() as session:
        session.add(
            ProviderConfigRow(
                provider_name="lab",
                adapter="openai_compatible",
                source="admin",
                api_endpoint="http://127.0.0.1:9/v1",
                api_key_encrypted=token,
                default_model="m2",
                max_tokens=256,
                temperature_default=0.2,
                config_json={"include_usage": False},
                models=[
                    ProviderModel(model_name="m1", source="admin", is_enabled=True),
                    ProviderModel(
                        model_name="m2",
                        source="admin",
                        is_enabled=True,
                        input_cost_per_1k_tokens=Decimal("0.001"),
                        output_cost_per_1k_tokens=Decimal("0.002"),
                    ),
                    ProviderModel(model_name="m3", source="admin", is_enabled=False),
                ],
            )
        )
    config = _catalog(settings).configs["lab"]
    assert (
        config.api_key is not None
        and config.api_key.get_secret_value() == "sk-lab-not-a-real-key-0001"
    )
    assert "sk-lab-not-a-real-key-0001" not in repr(config)
    assert (config.models, config.default_model) == (("m1", "m2"), "m2")
    assert (config.max_tokens, config.temperature) == (256, 0.2)
    assert config.option("include_usage") is False

    # Without the secret that encrypted it, the key cannot be read: refused, not sent keyless.
    other = _settings(PROVIDER_KEYS_SECRET=Fernet.generate_key().decode())
    assert _catalog(other).configs["lab"].enabled is False


def test_a_directory_reloads_on_a_new_version_and_keeps_its_catalog_when_unchanged(
    tables,
) -> None:
    settings = _settings()
    _sync(settings)
    directory = ProviderDirectory()
    assert directory.refresh(force=True) is True
    first = directory.catalog(settings)
    assert directory.refresh() is False
    assert directory.catalog(settings) is first  # unchanged: the same catalog object

    seen = []
    directory.add_listener(seen.append)
    _sync(_settings(ECHO_MODELS=["echo-1", "echo-9"]))
    assert directory.refresh() is True
    assert directory.catalog(settings) is not first
    assert seen and "echo-9" in seen[-1].configs["echo"].models


def test_emptied_tables_are_noticed_even_when_the_version_repeats(tables) -> None:
    """Tests empty the tables between cases; a re-seeded row may repeat a version number,
    but never with the same time, so the reload still happens."""
    settings = _settings()
    _sync(settings)
    directory = ProviderDirectory()
    directory.refresh(force=True)
    before = directory.catalog(settings).stamp
    with get_sessionmaker().begin() as session:
        session.execute(ProviderCatalog.__table__.delete())
        session.execute(ProviderConfigRow.__table__.delete())
    _sync(settings)
    assert directory.refresh() is True
    assert directory.catalog(settings).stamp != before

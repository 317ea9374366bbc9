"""The provider registry: adapter classes from entry points, one live instance per provider name.

Adapters are discovered through the `switchboard.providers` entry-point group, so a
pip-installed package adds a provider without touching this repository. Instances are cached
per provider name and rebuilt when their `ProviderConfig` changes (new key, endpoint, models).
"""

from __future__ import annotations

import logging
import threading
from importlib.metadata import EntryPoint, entry_points

from shared.providers.base import BaseProvider, ProviderConfig
from shared.providers.catalog import apply_feature_flag
from shared.providers.directory import current_catalog
from shared.providers.errors import ProviderError
from shared.settings import Settings, get_settings

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "switchboard.providers"


class UnknownProvider(ProviderError):
    kind = "unknown_provider"


class ProviderManager:
    def __init__(self, entry_point_group: str = ENTRY_POINT_GROUP) -> None:
        self._group = entry_point_group
        self._classes: dict[str, type[BaseProvider]] = {}
        self._instances: dict[str, BaseProvider] = {}
        self._loaded = False
        self._configs_memo: tuple[Settings, object, dict[str, ProviderConfig]] | None = None
        # One lock for loading and building: two greenlets asking for a cold provider must
        # not build two SDK clients (and leak one connection pool).
        self._lock = threading.RLock()

    # -- registry -----------------------------------------------------------------------

    def register_provider(self, name: str, provider_class: type[BaseProvider]) -> None:
        """Register an adapter class under `name`; explicit registration wins over plugins."""
        if not (isinstance(provider_class, type) and issubclass(provider_class, BaseProvider)):
            raise TypeError(f"{provider_class!r} is not a BaseProvider subclass")
        with self._lock:
            self._classes[name] = provider_class

    def list_providers(self) -> list[str]:
        """Registered adapter names (entry points loaded on first use)."""
        self._ensure_loaded()
        return sorted(self._classes)

    def provider_class(self, adapter: str) -> type[BaseProvider]:
        self._ensure_loaded()
        try:
            return self._classes[adapter]
        except KeyError:
            raise UnknownProvider(
                f"no adapter named {adapter!r} is installed", provider=adapter
            ) from None

    def _ensure_loaded(self, settings: Settings | None = None) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            allowed = set((settings or get_settings()).PROVIDERS_ENABLED)
            for entry in entry_points(group=self._group):
                if allowed and entry.name not in allowed:
                    continue
                if entry.name in self._classes:
                    continue
                cls = _load_entry(entry)
                if cls is not None:
                    self._classes[entry.name] = cls
            self._loaded = True

    def reload_entry_points(self) -> None:
        """Forget what was discovered (registered classes stay); used by tests and plugins."""
        with self._lock:
            self._loaded = False

    # -- configs ------------------------------------------------------------------------

    def all_configs(self, settings: Settings) -> dict[str, ProviderConfig]:
        """The catalog plus plugin adapters that configure themselves via `default_config`."""
        configs = dict(current_catalog(settings).configs)
        self._ensure_loaded(settings)
        extra: dict[str, ProviderConfig] = {}
        for adapter, cls in list(self._classes.items()):
            if adapter in configs or any(c.adapter == adapter for c in configs.values()):
                continue
            try:
                config = cls.default_config(settings)
            except Exception:
                logger.exception("provider plugin %r: default_config failed", adapter)
                continue
            if config is not None:
                extra[config.name] = config
        configs.update(apply_feature_flag(extra, settings))
        return configs

    def _configs_of_current_settings(self) -> dict[str, ProviderConfig]:
        # Building every config costs more than a short generation's bookkeeping: they are
        # computed once per settings object and catalog (a new one after each table change).
        settings = get_settings()
        catalog = current_catalog(settings)
        memo = self._configs_memo
        if memo is None or memo[0] is not settings or memo[1] is not catalog:
            memo = self._configs_memo = (settings, catalog, self.all_configs(settings))
        return memo[2]

    def available_providers(self, settings: Settings) -> dict[str, ProviderConfig]:
        """Enabled providers whose adapter is installed, by provider name."""
        self._ensure_loaded(settings)
        return {
            name: config
            for name, config in self.all_configs(settings).items()
            if config.enabled and config.adapter in self._classes
        }

    # -- instances ----------------------------------------------------------------------

    def get_provider(self, name: str, config: ProviderConfig | None = None) -> BaseProvider:
        """The live instance for provider `name`, rebuilt if its config changed.

        Disabled providers are returned too: whether to refuse them is the caller's call
        (the API answers "disabled", the catalog keeps them listed).
        """
        if config is None:
            config = self._configs_of_current_settings().get(name)
            if config is None:
                raise UnknownProvider(f"unknown provider {name!r}", provider=name)
        cached = self._instances.get(name)
        if cached is not None and cached.config == config:
            return cached
        with self._lock:
            cached = self._instances.get(name)
            if cached is not None and cached.config == config:
                return cached
            instance = self.provider_class(config.adapter)(config)
            self._instances[name] = instance
        if cached is not None:
            # Closing waits for the old instance's in-flight streams (see InflightGuard).
            try:
                cached.close()
            except Exception:
                logger.exception("closing replaced provider %r failed", name)
        return instance

    def close_all(self) -> None:
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            instance.close()


def _load_entry(entry: EntryPoint) -> type[BaseProvider] | None:
    try:
        cls = entry.load()
    except Exception as exc:
        # One broken plugin must not take the others down with it.
        logger.error(
            "provider plugin %r (%s) failed to load: %s: %s",
            entry.name,
            entry.value,
            type(exc).__name__,
            exc,
        )
        return None
    if not (isinstance(cls, type) and issubclass(cls, BaseProvider)):
        logger.error(
            "provider plugin %r (%s) is not a BaseProvider subclass", entry.name, entry.value
        )
        return None
    return cls


provider_manager = ProviderManager()

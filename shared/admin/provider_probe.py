"""Asking a provider itself: is it reachable with its key (`probe`), which models it lists
(`discover`). Both build a throwaway instance from the config this process serves, with a
short timeout and no retries, call `list_models()` and close it. Blocking (network): run them
off the event loop, and outside any database transaction.

A failure is an answer, not an error: its kind (the ProviderError subclass) and message, with
the provider's key and anything key-shaped removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from shared.errors import AppError, Conflict
from shared.providers._http import redact
from shared.providers.base import BaseProvider, ProviderConfig
from shared.providers.directory import current_catalog, provider_directory
from shared.providers.errors import ProviderError
from shared.providers.manager import provider_manager
from shared.settings import Settings

log = logging.getLogger(__name__)

PROBE_TIMEOUT_SECONDS = 10.0


class ProviderUnreachable(AppError):
    """The provider did not list its models (502: the upstream failed, not the request)."""

    status_code = 502


@dataclass(frozen=True, slots=True)
class ProbeError:
    kind: str
    message: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    latency_ms: float
    models_listed: int | None = None
    error: ProbeError | None = None


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    id: str
    added: bool
    details: dict[str, Any]


def probe_config(settings: Settings, name: str) -> ProviderConfig:
    """The config this process serves for `name`, for a probe (its row exists: the caller
    checked). A provider created by another process a moment ago may not be read yet."""
    config = current_catalog(settings).configs.get(name)
    if config is None:
        provider_directory.refresh()
        config = current_catalog(settings).configs.get(name)
    if config is None:
        raise Conflict(
            f"'{name}' is not served by this deployment (is its adapter in PROVIDERS_ENABLED?)"
        )
    return config.model_copy(
        update={"timeout": min(config.timeout, PROBE_TIMEOUT_SECONDS), "max_retries": 0}
    )


def _secret(config: ProviderConfig) -> str | None:
    return config.api_key.get_secret_value() if config.api_key else None


def _failure(exc: BaseException, config: ProviderConfig) -> ProbeError:
    if isinstance(exc, ProviderError):
        return ProbeError(exc.kind, redact(exc.message, _secret(config)))
    # Not a ProviderError: an adapter bug or a plugin's own exception, whose text nobody has
    # vetted for keys. Its type is enough to go on.
    log.warning("provider %r: model listing raised %s", config.name, type(exc).__name__)
    return ProbeError("error", f"unexpected {type(exc).__name__} from the adapter")


def _list_models(config: ProviderConfig) -> list[dict[str, Any]]:
    instance: BaseProvider = provider_manager.provider_class(config.adapter)(config)
    try:
        return instance.list_models()
    finally:
        try:
            instance.close()
        except Exception:
            log.warning("provider %r: closing the probe instance failed", config.name)


def probe(config: ProviderConfig) -> ProbeResult:
    started = time.perf_counter()
    try:
        models = _list_models(config)
    except Exception as exc:
        elapsed = (time.perf_counter() - started) * 1000
        return ProbeResult(False, round(elapsed, 1), error=_failure(exc, config))
    elapsed = (time.perf_counter() - started) * 1000
    return ProbeResult(True, round(elapsed, 1), models_listed=len(models))


def discover(config: ProviderConfig, added: set[str]) -> list[DiscoveredModel]:
    """The provider's own model list, each marked whether the provider has it already."""
    try:
        listed = _list_models(config)
    except Exception as exc:
        failure = _failure(exc, config)
        raise ProviderUnreachable(
            f"'{config.name}' did not list its models ({failure.kind}): {failure.message}"
        ) from None
    found = []
    for entry in listed:
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not model_id:
            continue
        details = {k: v for k, v in entry.items() if k != "id" and v not in (None, {}, "")}
        found.append(DiscoveredModel(model_id, model_id in added, details))
    return found

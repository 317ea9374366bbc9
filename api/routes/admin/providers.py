"""/admin/providers: the provider tables, edited at run time.

Each write commits in its unit of work, then `provider_directory.changed` reloads this
process's catalog at once and tells every other process (within about a second). Answers are
built from the catalog this process then serves, so `usable` and `offered` say what a
submission would meet right now.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.concurrency import run_in_threadpool

from api.routes.admin.common import AdminDep
from api.schemas.admin_providers import (
    AdminModelCreate,
    AdminModelRead,
    AdminModelUpdate,
    AdminProviderCreate,
    AdminProviderList,
    AdminProviderRead,
    AdminProviderUpdate,
    DiscoveredModelRead,
    DiscoveredModels,
    ProbeErrorRead,
    ProviderProbeRead,
)
from api.schemas.common import ErrorOut
from api.schemas.responses import BODY_ERRORS, conflict, not_found
from shared.admin.provider_models import provider_model_admin
from shared.admin.provider_probe import discover, probe, probe_config
from shared.admin.provider_views import ModelView, ProviderView, availability
from shared.admin.providers import NewModel, NewProvider, provider_admin
from shared.providers.directory import current_catalog, provider_directory
from shared.settings import Settings

router = APIRouter(prefix="/providers", tags=["admin"])

PROVIDER_NOT_FOUND = not_found("provider")
MODEL_NOT_FOUND = not_found("provider, or no such model on it")
UNREACHABLE = {502: {"model": ErrorOut, "description": "The provider did not list its models"}}
NOT_SERVED = conflict("The provider's adapter is not loaded here (PROVIDERS_ENABLED)")


def _model_read(model: ModelView, offered: tuple[str, ...]) -> AdminModelRead:
    return AdminModelRead.model_validate({**asdict(model), "offered": model.model_name in offered})


def _read(view: ProviderView, settings: Settings) -> AdminProviderRead:
    state = availability(view, current_catalog(settings), settings)
    return AdminProviderRead(
        provider_name=view.provider_name,
        display_name=view.display_name,
        adapter=view.adapter,
        source=view.source,
        api_endpoint=view.api_endpoint,
        api_key_set=view.key.is_set,
        api_key_hint=view.key.hint,
        key_source=view.key.source,
        key_setting=view.key.setting,
        is_enabled=view.is_enabled,
        usable=state.usable,
        unusable_reason=state.reason,
        default_model=view.default_model,
        effective_default_model=state.default_model,
        max_tokens=view.max_tokens,
        temperature_default=view.temperature_default,
        config_json=view.config_json,
        models=[_model_read(m, state.offered) for m in view.models],
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


async def _changed(settings: Settings) -> None:
    # After the commit: a reload here (one query) and a Redis notice, both blocking.
    await run_in_threadpool(provider_directory.changed, settings)


def _offered(settings: Settings, provider: str) -> tuple[str, ...]:
    config = current_catalog(settings).configs.get(provider)
    return config.models if config is not None else ()


def _new_model(body: AdminModelCreate | str) -> NewModel:
    if isinstance(body, str):
        return NewModel(model_name=body)
    fields = body.model_dump(exclude={"input_cost_per_1k_tokens", "output_cost_per_1k_tokens"})
    priced = bool({"input_cost_per_1k_tokens", "output_cost_per_1k_tokens"} & body.model_fields_set)
    return NewModel(
        **fields,
        input_cost_per_1k_tokens=body.input_cost_per_1k_tokens,
        output_cost_per_1k_tokens=body.output_cost_per_1k_tokens,
        priced=priced,
    )


def _set_fields(body: AdminProviderUpdate | AdminModelUpdate) -> dict[str, Any]:
    # Attributes, not model_dump: a dump would turn the SecretStr key into a masked string.
    return {field: getattr(body, field) for field in body.model_fields_set}


@router.get("", response_model=AdminProviderList)
async def list_providers(auth: AdminDep) -> AdminProviderList:
    """Every provider, environment and admin, with its models and whether it is usable now."""
    views = await auth.run(provider_admin.list_providers, auth.settings)
    data = [_read(view, auth.settings) for view in views]
    return AdminProviderList(data=data, count=len(data))


@router.post(
    "",
    response_model=AdminProviderRead,
    status_code=status.HTTP_201_CREATED,
    responses=BODY_ERRORS | conflict("A provider with this name exists"),
)
async def create_provider(body: AdminProviderCreate, auth: AdminDep) -> AdminProviderRead:
    """An admin provider (`source: admin`), served by every process within about a second.
    422 for an unknown adapter, an endpoint the SSRF policy refuses, or a key while
    PROVIDER_KEYS_SECRET is unset."""
    new = NewProvider(
        provider_name=body.provider_name,
        adapter=body.adapter,
        api_endpoint=body.api_endpoint,
        api_key=body.api_key,
        is_enabled=body.is_enabled,
        default_model=body.default_model,
        max_tokens=body.max_tokens,
        temperature_default=body.temperature_default,
        config_json=body.config_json,
        display_name=body.display_name,
        models=tuple(_new_model(m) for m in body.models),
    )
    view = await auth.run(provider_admin.create_provider, auth.settings, new)
    await _changed(auth.settings)
    return _read(view, auth.settings)


@router.get("/{name}", response_model=AdminProviderRead, responses=PROVIDER_NOT_FOUND)
async def read_provider(name: str, auth: AdminDep) -> AdminProviderRead:
    view = await auth.run(provider_admin.get_provider, auth.settings, name)
    return _read(view, auth.settings)


@router.patch(
    "/{name}",
    response_model=AdminProviderRead,
    responses=BODY_ERRORS | PROVIDER_NOT_FOUND,
)
async def update_provider(
    name: str, body: AdminProviderUpdate, auth: AdminDep
) -> AdminProviderRead:
    """Change the fields sent. Disabling refuses new submissions (422) while queued replies
    finish. On an environment provider, adapter, api_endpoint, api_key, default_model and
    config_json are the settings' (422 naming the setting)."""
    view = await auth.run(provider_admin.update_provider, auth.settings, name, _set_fields(body))
    await _changed(auth.settings)
    return _read(view, auth.settings)


@router.delete(
    "/{name}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=PROVIDER_NOT_FOUND
    | conflict("An environment provider, or one with queued or running replies not disabled"),
)
async def delete_provider(name: str, auth: AdminDep) -> Response:
    await auth.run(provider_admin.delete_provider, name)
    await _changed(auth.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/models", response_model=list[AdminModelRead], responses=PROVIDER_NOT_FOUND)
async def list_models(name: str, auth: AdminDep) -> list[AdminModelRead]:
    models = await auth.run(provider_model_admin.list_models, name)
    offered = _offered(auth.settings, name)
    return [_model_read(m, offered) for m in models]


@router.post(
    "/{name}/models",
    response_model=AdminModelRead,
    status_code=status.HTTP_201_CREATED,
    responses=BODY_ERRORS | PROVIDER_NOT_FOUND | conflict("The provider has this model"),
)
async def add_model(name: str, body: AdminModelCreate, auth: AdminDep) -> AdminModelRead:
    """Add a model (`source: admin`), to an admin or an environment provider. Prices omitted:
    the shipped price (zero for Ollama and echo adapters), if there is one."""
    model = await auth.run(provider_model_admin.add_model, name, _new_model(body))
    await _changed(auth.settings)
    return _model_read(model, _offered(auth.settings, name))


@router.patch(
    "/{name}/models/{model:path}",
    response_model=AdminModelRead,
    responses=BODY_ERRORS | MODEL_NOT_FOUND | conflict("Disabling the default model"),
)
async def update_model(
    name: str, model: str, body: AdminModelUpdate, auth: AdminDep
) -> AdminModelRead:
    """Enable, disable, rename for display, set context length, capabilities or prices (both
    or neither; a new price applies to usage recorded after it)."""
    view = await auth.run(provider_model_admin.update_model, name, model, _set_fields(body))
    await _changed(auth.settings)
    return _model_read(view, _offered(auth.settings, name))


@router.delete(
    "/{name}/models/{model:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=MODEL_NOT_FOUND
    | conflict("A model listed in the settings (disable it), or the default model"),
)
async def delete_model(name: str, model: str, auth: AdminDep) -> Response:
    await auth.run(provider_model_admin.delete_model, name, model)
    await _changed(auth.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{name}/test", response_model=ProviderProbeRead, responses=PROVIDER_NOT_FOUND | NOT_SERVED
)
async def probe_provider(name: str, auth: AdminDep) -> ProviderProbeRead:
    """List the provider's models with its current config (10 s timeout, no retry): 200 with
    `ok`, `latency_ms` and `models_listed`, or `ok: false` and `error: {kind, message}`."""
    await auth.run(provider_admin.get_provider, auth.settings, name)
    config = await run_in_threadpool(probe_config, auth.settings, name)
    result = await run_in_threadpool(probe, config)
    error = result.error
    return ProviderProbeRead(
        ok=result.ok,
        latency_ms=result.latency_ms,
        models_listed=result.models_listed,
        error=ProbeErrorRead(kind=error.kind, message=error.message) if error else None,
    )


@router.get(
    "/{name}/discover",
    response_model=DiscoveredModels,
    responses=PROVIDER_NOT_FOUND | NOT_SERVED | UNREACHABLE,
)
async def discover_models(name: str, auth: AdminDep) -> DiscoveredModels:
    """The models the provider itself lists (Ollama's tags, /v1/models, Anthropic's models),
    each marked `added` when the provider has it already (enabled or not)."""
    models = await auth.run(provider_model_admin.list_models, name)
    config = await run_in_threadpool(probe_config, auth.settings, name)
    found = await run_in_threadpool(discover, config, {m.model_name for m in models})
    return DiscoveredModels(
        provider=name,
        data=[DiscoveredModelRead(id=m.id, added=m.added, details=m.details) for m in found],
    )

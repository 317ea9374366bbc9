"""/admin/routing: fallback chains, pools and A/B experiments (docs/providers/routing.md).

Writes commit in their unit of work, then `provider_directory.changed` reloads this process's
catalog at once and tells every other process, as /admin/providers does.

A chain is addressed by its primary in the path, `/chains/{provider}/{model}`: a provider name
holds no '/', so everything after it is the model, '/' and ':' included
(`/chains/vllm/meta-llama/Llama-3-8B`, `/chains/ollama/llama3.1:8b`). Escape each segment of
the model on its own and keep the '/' between them.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.concurrency import run_in_threadpool

from api.routes.admin.common import AdminDep
from api.schemas.admin_providers import MODEL_NAME_PATTERN, PROVIDER_NAME_PATTERN
from api.schemas.admin_routing import (
    ArmRead,
    ChainList,
    ChainPut,
    ChainRead,
    DeploymentRead,
    ExperimentCreate,
    ExperimentList,
    ExperimentRead,
    ExperimentResultsRead,
    ExperimentUpdate,
    PoolList,
    PoolPut,
    PoolRead,
    TargetIn,
    TargetRead,
)
from api.schemas.responses import BODY_ERRORS, conflict, not_found
from shared.admin.experiments import experiment_results
from shared.admin.routing import (
    POOL_NAME_PATTERN,
    ChainView,
    ExperimentView,
    Health,
    NewDeployment,
    NewExperiment,
    PoolView,
    TargetView,
    pool_health,
    routing_admin,
)
from shared.providers.directory import provider_directory
from shared.routing.targets import Target
from shared.settings import Settings

router = APIRouter(prefix="/routing", tags=["admin"])

# The patterns of the bodies' names: also keeps a NUL, which PostgreSQL text cannot hold, out of
# the lookups.
ProviderPath = Annotated[str, Path(pattern=PROVIDER_NAME_PATTERN)]
ModelPath = Annotated[
    str, Path(max_length=100, pattern=MODEL_NAME_PATTERN, description="May hold '/' and ':'")
]
PoolName = Annotated[
    str, Path(pattern=POOL_NAME_PATTERN, description="Clients ask for pool:<name>")
]
ExperimentId = Annotated[int, Path(ge=1, le=2**31 - 1)]

CHAIN_NOT_FOUND = not_found("fallback chain")
POOL_NOT_FOUND = not_found("pool")
EXPERIMENT_NOT_FOUND = not_found("experiment")
EXPERIMENT_CONFLICT = conflict(
    "An experiment with this name, or an active one on the same control, exists"
)


async def _changed(settings: Settings) -> None:
    # After the commit: a reload here (one query) and a Redis notice, both blocking.
    await run_in_threadpool(provider_directory.changed, settings)


def _target(body: TargetIn) -> Target:
    return Target(body.provider, body.model)


def _target_read(view: TargetView) -> TargetRead:
    return TargetRead(provider=view.provider, model=view.model, usable=view.usable)


def _chain_read(view: ChainView) -> ChainRead:
    return ChainRead(
        provider=view.provider,
        model=view.model,
        targets=[_target_read(t) for t in view.targets],
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


def _pool_read(view: PoolView, health: dict[Target, Health] | None) -> PoolRead:
    deployments = []
    for d in view.deployments:
        state = health.get(Target(d.provider, d.model)) if health is not None else None
        deployments.append(
            DeploymentRead(
                provider=d.provider,
                model=d.model,
                weight=d.weight,
                is_enabled=d.is_enabled,
                usable=d.usable,
                cooling_down=state.cooling_down if state else None,
                weight_factor=state.weight_factor if state else None,
            )
        )
    return PoolRead(name=view.name, model=view.model, deployments=deployments)


async def _pools_read(views: list[PoolView], settings: Settings) -> list[PoolRead]:
    # Redis, not the database: read after the unit of work has given its connection back.
    health = await run_in_threadpool(pool_health, settings, views)
    return [_pool_read(view, health) for view in views]


def _experiment_read(view: ExperimentView) -> ExperimentRead:
    return ExperimentRead(
        id=view.id,
        name=view.name,
        is_active=view.is_active,
        control=_target_read(view.control),
        variant=_target_read(view.variant),
        variant_share=view.variant_share,
        created_at=view.created_at,
        updated_at=view.updated_at,
    )


# -- chains -----------------------------------------------------------------------------------


@router.get("/chains", response_model=ChainList)
async def list_chains(auth: AdminDep) -> ChainList:
    """Every fallback chain, by primary, each target marked `usable` now."""
    views = await auth.run(routing_admin.list_chains, auth.settings)
    return ChainList(data=[_chain_read(v) for v in views], count=len(views))


@router.put("/chains/{provider}/{model:path}", response_model=ChainRead, responses=BODY_ERRORS)
async def set_chain(
    provider: ProviderPath, model: ModelPath, body: ChainPut, auth: AdminDep
) -> ChainRead:
    """Create or replace the chain of the primary (provider, model): 1 to 10 targets tried in
    order when it fails. The primary and each target must be a known provider and one of its
    enabled models; no target is the primary or listed twice (422 otherwise)."""
    primary = Target(provider, model)
    targets = [_target(t) for t in body.targets]
    view = await auth.run(routing_admin.set_chain, auth.settings, primary, targets)
    await _changed(auth.settings)
    return _chain_read(view)


@router.delete(
    "/chains/{provider}/{model:path}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=CHAIN_NOT_FOUND,
)
async def delete_chain(provider: ProviderPath, model: ModelPath, auth: AdminDep) -> Response:
    await auth.run(routing_admin.delete_chain, Target(provider, model))
    await _changed(auth.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- pools ------------------------------------------------------------------------------------


@router.get("/pools", response_model=PoolList)
async def list_pools(auth: AdminDep) -> PoolList:
    """Every pool with its deployments (disabled ones too) and each one's live health."""
    views = await auth.run(routing_admin.list_pools, auth.settings)
    data = await _pools_read(views, auth.settings)
    return PoolList(data=data, count=len(data))


@router.put("/pools/{name}", response_model=PoolRead, responses=BODY_ERRORS)
async def set_pool(name: PoolName, body: PoolPut, auth: AdminDep) -> PoolRead:
    """Create the pool or replace its deployments: 1 to 50, each a known provider and one of
    its enabled models, weight 1 to 1000, none listed twice (422 otherwise)."""
    deployments = [
        NewDeployment(Target(d.provider, d.model), d.weight, d.is_enabled) for d in body.deployments
    ]
    view = await auth.run(routing_admin.set_pool, auth.settings, name, deployments)
    await _changed(auth.settings)
    return (await _pools_read([view], auth.settings))[0]


@router.delete("/pools/{name}", status_code=status.HTTP_204_NO_CONTENT, responses=POOL_NOT_FOUND)
async def delete_pool(name: PoolName, auth: AdminDep) -> Response:
    await auth.run(routing_admin.delete_pool, name)
    await _changed(auth.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- experiments ------------------------------------------------------------------------------


@router.get("/experiments", response_model=ExperimentList)
async def list_experiments(auth: AdminDep) -> ExperimentList:
    views = await auth.run(routing_admin.list_experiments, auth.settings)
    return ExperimentList(data=[_experiment_read(v) for v in views], count=len(views))


@router.post(
    "/experiments",
    response_model=ExperimentRead,
    status_code=status.HTTP_201_CREATED,
    responses=BODY_ERRORS | EXPERIMENT_CONFLICT,
)
async def create_experiment(body: ExperimentCreate, auth: AdminDep) -> ExperimentRead:
    """An A/B split: `variant_share` of the new chats bound for the control go to the
    variant (sticky per chat). One active experiment per control (409)."""
    new = NewExperiment(
        name=body.name,
        control=_target(body.control),
        variant=_target(body.variant),
        variant_share=body.variant_share,
        is_active=body.is_active,
    )
    view = await auth.run(routing_admin.create_experiment, auth.settings, new)
    await _changed(auth.settings)
    return _experiment_read(view)


@router.patch(
    "/experiments/{experiment_id}",
    response_model=ExperimentRead,
    responses=BODY_ERRORS | EXPERIMENT_NOT_FOUND | EXPERIMENT_CONFLICT,
)
async def update_experiment(
    experiment_id: ExperimentId, body: ExperimentUpdate, auth: AdminDep
) -> ExperimentRead:
    """Rename, change the share (for chats created from now on) or (de)activate."""
    changes = {field: getattr(body, field) for field in body.model_fields_set}
    view = await auth.run(routing_admin.update_experiment, auth.settings, experiment_id, changes)
    await _changed(auth.settings)
    return _experiment_read(view)


@router.delete(
    "/experiments/{experiment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=EXPERIMENT_NOT_FOUND,
)
async def delete_experiment(experiment_id: ExperimentId, auth: AdminDep) -> Response:
    """Its chats forget it, and its results are gone: deactivate it to keep them."""
    await auth.run(routing_admin.delete_experiment, experiment_id)
    await _changed(auth.settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/experiments/{experiment_id}/results",
    response_model=ExperimentResultsRead,
    responses=EXPERIMENT_NOT_FOUND,
)
async def read_experiment_results(
    experiment_id: ExperimentId,
    auth: AdminDep,
    start: Annotated[
        dt.datetime | None, Query(alias="from", description="Inclusive; UTC when no offset")
    ] = None,
    end: Annotated[dt.datetime | None, Query(alias="to", description="Exclusive")] = None,
) -> ExperimentResultsRead:
    """Both arms side by side: chats, requests, tokens, cost, p50/p95 latency and time to
    first token, error rate, cached requests and ratings. No range: the whole experiment."""
    results = await auth.run(experiment_results, auth.settings, experiment_id, start, end)
    return ExperimentResultsRead(
        experiment=_experiment_read(results.experiment),
        from_=results.start,
        to=results.end,
        arms=[ArmRead.model_validate(arm, from_attributes=True) for arm in results.arms],
    )

"""Admin routing: fallback chains, pools and A/B experiments (docs/providers/routing.md).

The rows are part of the provider catalog (shared/providers/directory.py read_routing): every
write takes the catalog lock and bumps its version in the same transaction, as provider
writes do (shared/admin/providers.py), and the caller tells the processes after the commit.

A target (a provider and model) an admin names must be in the catalog this process serves: a
known provider, enabled or not, and one of its enabled models. One disabled later stays in
the rows; the route planner passes over it (reads show it as not `usable`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from shared.admin.service import require_admin
from shared.errors import AppError, Conflict, NotFound
from shared.models import Experiment, FallbackChain, PoolDeployment, User
from shared.providers.directory import bump_version, current_catalog, lock_catalog
from shared.providers.snapshot import Catalog
from shared.routing.plan import target_health, usable
from shared.routing.targets import POOL_PREFIX, Target
from shared.settings import Settings

log = logging.getLogger(__name__)

MAX_CHAIN_TARGETS = 10
MAX_POOL_DEPLOYMENTS = 50
MAX_WEIGHT = 1000
POOL_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
# How many of a provider's models a refusal lists (a provider may have hundreds).
LISTED_MODELS = 20
EXPERIMENT_FIELDS = frozenset({"name", "is_active", "variant_share"})


class InvalidRoutingChange(AppError):
    status_code = 422


# -- targets ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TargetView:
    provider: str
    model: str
    usable: bool  # an enabled provider and model of the catalog now


def target_view(catalog: Catalog, target: Target) -> TargetView:
    return TargetView(target.provider, target.model, usable(catalog, target))


def check_target(catalog: Catalog, target: Target, what: str) -> None:
    """422 unless `target` names a known provider and one of its enabled models."""
    config = catalog.configs.get(target.provider)
    if config is None:
        known = ", ".join(sorted(catalog.configs)) or "none"
        raise InvalidRoutingChange(
            f"{what}: unknown provider '{target.provider}'. Providers: {known}"
        )
    if target.model not in config.models:
        models = list(config.models[:LISTED_MODELS])
        more = len(config.models) - len(models)
        listed = ", ".join(models) + (f" and {more} more" if more > 0 else "")
        raise InvalidRoutingChange(
            f"{what}: '{target.provider}' has no enabled model '{target.model}'. "
            f"Its models: {listed or 'none'}"
        )


def _check_distinct(targets: Sequence[Target], what: str) -> None:
    seen: set[Target] = set()
    for target in targets:
        if target in seen:
            raise InvalidRoutingChange(f"{what}: {target} is listed twice")
        seen.add(target)


# -- fallback chains --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainView:
    provider: str
    model: str
    targets: tuple[TargetView, ...]
    created_at: datetime | None
    updated_at: datetime | None


def _chain_view(row: FallbackChain, catalog: Catalog) -> ChainView:
    return ChainView(
        provider=row.provider_name,
        model=row.model_name,
        targets=tuple(target_view(catalog, Target.from_json(t)) for t in row.targets),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _find_chain(session: Session, primary: Target) -> FallbackChain | None:
    return session.scalars(
        select(FallbackChain).where(
            FallbackChain.provider_name == primary.provider,
            FallbackChain.model_name == primary.model,
        )
    ).first()


# -- pools ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewDeployment:
    target: Target
    weight: int = 1
    is_enabled: bool = True


@dataclass(frozen=True, slots=True)
class DeploymentView:
    provider: str
    model: str
    weight: int
    is_enabled: bool
    usable: bool


@dataclass(frozen=True, slots=True)
class PoolView:
    name: str
    deployments: tuple[DeploymentView, ...]

    @property
    def model(self) -> str:
        """What clients ask for."""
        return POOL_PREFIX + self.name


@dataclass(frozen=True, slots=True)
class Health:
    cooling_down: bool
    weight_factor: float


def pool_health(settings: Settings, pools: Iterable[PoolView]) -> dict[Target, Health] | None:
    """Each deployment's live health from Redis (one round trip), or None when Redis cannot
    say: a read of the pools never fails on it."""
    targets = [Target(d.provider, d.model) for pool in pools for d in pool.deployments]
    try:
        factors = target_health(settings).factors(targets)
    except Exception as exc:
        log.warning("target health unavailable: %s", type(exc).__name__)
        return None
    return {t: Health(cooling_down=f <= 0, weight_factor=f) for t, f in factors.items()}


def _pool_views(rows: Iterable[PoolDeployment], catalog: Catalog) -> list[PoolView]:
    pools: dict[str, list[DeploymentView]] = {}
    for row in rows:
        target = Target(row.provider_name, row.model_name)
        pools.setdefault(row.pool_name, []).append(
            DeploymentView(
                provider=row.provider_name,
                model=row.model_name,
                weight=row.weight,
                is_enabled=row.is_enabled,
                usable=row.is_enabled and usable(catalog, target),
            )
        )
    return [PoolView(name, tuple(deployments)) for name, deployments in sorted(pools.items())]


def _pool_rows(session: Session, name: str | None = None) -> list[PoolDeployment]:
    statement = select(PoolDeployment).order_by(PoolDeployment.pool_name, PoolDeployment.id)
    if name is not None:
        statement = statement.where(PoolDeployment.pool_name == name)
    return list(session.scalars(statement))


def check_pool_name(name: str) -> None:
    if not re.fullmatch(POOL_NAME_PATTERN, name):
        raise InvalidRoutingChange(
            f"Pool name '{name}' must match {POOL_NAME_PATTERN} (lowercase letters, digits, "
            "'.', '_' and '-', starting with a letter or digit, at most 100 characters)"
        )


# -- experiments ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewExperiment:
    name: str
    control: Target
    variant: Target
    variant_share: float = 0.5
    is_active: bool = True


@dataclass(frozen=True, slots=True)
class ExperimentView:
    id: int
    name: str
    is_active: bool
    control: TargetView
    variant: TargetView
    variant_share: float
    created_at: datetime | None
    updated_at: datetime | None


def experiment_view(row: Experiment, catalog: Catalog) -> ExperimentView:
    return ExperimentView(
        id=row.id,
        name=row.name,
        is_active=row.is_active,
        control=target_view(catalog, Target(row.control_provider, row.control_model)),
        variant=target_view(catalog, Target(row.variant_provider, row.variant_model)),
        variant_share=row.variant_share,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def load_experiment(session: Session, experiment_id: int) -> Experiment:
    row = session.get(Experiment, experiment_id, populate_existing=True)
    if row is None:
        raise NotFound(f"No experiment {experiment_id}")
    return row


def _check_share(share: Any) -> None:
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise InvalidRoutingChange("variant_share must be a number from 0 to 1")


def _check_name_free(session: Session, name: str, own_id: int | None = None) -> None:
    condition = Experiment.name == name
    if own_id is not None:
        condition = condition & (Experiment.id != own_id)
    if session.scalar(select(exists().where(condition))):
        raise Conflict(f"An experiment named '{name}' already exists")


def _check_control_free(session: Session, control: Target, own_id: int | None = None) -> None:
    """One active experiment per control: a new chat bound for it joins one split only."""
    condition = (
        Experiment.is_active
        & (Experiment.control_provider == control.provider)
        & (Experiment.control_model == control.model)
    )
    if own_id is not None:
        condition = condition & (Experiment.id != own_id)
    other = session.scalars(select(Experiment).where(condition)).first()
    if other is not None:
        raise Conflict(
            f"Experiment '{other.name}' (id {other.id}) is already active on {control}: "
            "deactivate it first (PATCH is_active false)"
        )


# -- the service ------------------------------------------------------------------------------


class RoutingAdminService:
    # Chains

    def list_chains(self, session: Session, admin: User, settings: Settings) -> list[ChainView]:
        require_admin(admin)
        catalog = current_catalog(settings)
        rows = session.scalars(
            select(FallbackChain).order_by(FallbackChain.provider_name, FallbackChain.model_name)
        )
        return [_chain_view(row, catalog) for row in rows]

    def set_chain(
        self,
        session: Session,
        admin: User,
        settings: Settings,
        primary: Target,
        targets: Sequence[Target],
    ) -> ChainView:
        """Create or replace the chain of `primary`: its fallbacks, in the order tried."""
        require_admin(admin)
        if not 1 <= len(targets) <= MAX_CHAIN_TARGETS:
            raise InvalidRoutingChange(f"A chain has 1 to {MAX_CHAIN_TARGETS} targets")
        catalog = current_catalog(settings)
        check_target(catalog, primary, "primary")
        _check_distinct(targets, "targets")
        for i, target in enumerate(targets):
            if target == primary:
                raise InvalidRoutingChange(
                    f"targets[{i}]: {target} is the primary itself (a chain lists what is tried "
                    "after it)"
                )
            check_target(catalog, target, f"targets[{i}]")
        lock = lock_catalog(session)
        row = _find_chain(session, primary)
        if row is None:
            row = FallbackChain(provider_name=primary.provider, model_name=primary.model)
            session.add(row)
        row.targets = [t.as_json() for t in targets]
        session.flush()
        bump_version(session, lock)
        return _chain_view(row, catalog)

    def delete_chain(self, session: Session, admin: User, primary: Target) -> None:
        require_admin(admin)
        lock = lock_catalog(session)
        row = _find_chain(session, primary)
        if row is None:
            raise NotFound(f"No fallback chain for {primary}")
        session.delete(row)
        session.flush()
        bump_version(session, lock)

    # Pools

    def list_pools(self, session: Session, admin: User, settings: Settings) -> list[PoolView]:
        require_admin(admin)
        return _pool_views(_pool_rows(session), current_catalog(settings))

    def set_pool(
        self,
        session: Session,
        admin: User,
        settings: Settings,
        name: str,
        deployments: Sequence[NewDeployment],
    ) -> PoolView:
        """Replace the pool's deployments (creating the pool), in the order given."""
        require_admin(admin)
        check_pool_name(name)
        if not 1 <= len(deployments) <= MAX_POOL_DEPLOYMENTS:
            raise InvalidRoutingChange(f"A pool has 1 to {MAX_POOL_DEPLOYMENTS} deployments")
        catalog = current_catalog(settings)
        _check_distinct([d.target for d in deployments], "deployments")
        for i, deployment in enumerate(deployments):
            weight = deployment.weight
            if isinstance(weight, bool) or not isinstance(weight, int):
                raise InvalidRoutingChange(f"deployments[{i}]: weight must be an integer")
            if not 1 <= weight <= MAX_WEIGHT:
                raise InvalidRoutingChange(
                    f"deployments[{i}]: weight must be from 1 to {MAX_WEIGHT}"
                )
            check_target(catalog, deployment.target, f"deployments[{i}]")
        lock = lock_catalog(session)
        # A bulk DELETE first: in one flush the ORM inserts before it deletes, and the new
        # rows would meet the old ones in the (pool, provider, model) unique constraint.
        session.execute(delete(PoolDeployment).where(PoolDeployment.pool_name == name))
        for deployment in deployments:
            session.add(
                PoolDeployment(
                    pool_name=name,
                    provider_name=deployment.target.provider,
                    model_name=deployment.target.model,
                    weight=deployment.weight,
                    is_enabled=deployment.is_enabled,
                )
            )
        session.flush()
        bump_version(session, lock)
        return _pool_views(_pool_rows(session, name), catalog)[0]

    def delete_pool(self, session: Session, admin: User, name: str) -> None:
        require_admin(admin)
        lock = lock_catalog(session)
        deleted = session.execute(delete(PoolDeployment).where(PoolDeployment.pool_name == name))
        if not deleted.rowcount:
            raise NotFound(f"No pool '{name}'")
        bump_version(session, lock)

    # Experiments

    def list_experiments(
        self, session: Session, admin: User, settings: Settings
    ) -> list[ExperimentView]:
        require_admin(admin)
        catalog = current_catalog(settings)
        rows = session.scalars(select(Experiment).order_by(Experiment.id))
        return [experiment_view(row, catalog) for row in rows]

    def create_experiment(
        self, session: Session, admin: User, settings: Settings, new: NewExperiment
    ) -> ExperimentView:
        require_admin(admin)
        name = new.name.strip()
        if not name:
            raise InvalidRoutingChange("name must not be blank")
        _check_share(new.variant_share)
        if new.control == new.variant:
            raise InvalidRoutingChange("control and variant must be different targets")
        catalog = current_catalog(settings)
        check_target(catalog, new.control, "control")
        check_target(catalog, new.variant, "variant")
        lock = lock_catalog(session)
        _check_name_free(session, name)
        if new.is_active:
            _check_control_free(session, new.control)
        row = Experiment(
            name=name,
            is_active=new.is_active,
            control_provider=new.control.provider,
            control_model=new.control.model,
            variant_provider=new.variant.provider,
            variant_model=new.variant.model,
            variant_share=float(new.variant_share),
        )
        session.add(row)
        session.flush()
        bump_version(session, lock)
        return experiment_view(row, catalog)

    def update_experiment(
        self,
        session: Session,
        admin: User,
        settings: Settings,
        experiment_id: int,
        changes: Mapping[str, Any],
    ) -> ExperimentView:
        """Apply `changes` (the fields the request set). A new share applies to chats created
        from now on: a chat keeps the arm it joined."""
        require_admin(admin)
        unknown = set(changes) - EXPERIMENT_FIELDS
        if unknown:
            raise InvalidRoutingChange(f"Unknown fields: {', '.join(sorted(unknown))}")
        for field, value in changes.items():
            if value is None:
                raise InvalidRoutingChange(f"{field} cannot be null")
        values = dict(changes)
        if "name" in values:
            values["name"] = str(values["name"]).strip()
            if not values["name"]:
                raise InvalidRoutingChange("name must not be blank")
        if "variant_share" in values:
            _check_share(values["variant_share"])
            values["variant_share"] = float(values["variant_share"])
        catalog = current_catalog(settings)
        lock = lock_catalog(session)
        row = load_experiment(session, experiment_id)
        if "name" in values and values["name"] != row.name:
            _check_name_free(session, values["name"], own_id=row.id)
        if values.get("is_active") and not row.is_active:
            control = Target(row.control_provider, row.control_model)
            _check_control_free(session, control, own_id=row.id)
        for field, value in values.items():
            setattr(row, field, value)
        session.flush()
        bump_version(session, lock)
        return experiment_view(row, catalog)

    def delete_experiment(self, session: Session, admin: User, experiment_id: int) -> None:
        """Its chats keep their provider and model but forget the experiment (SET NULL), so
        its results are gone: deactivate an experiment to stop it and keep them."""
        require_admin(admin)
        lock = lock_catalog(session)
        session.delete(load_experiment(session, experiment_id))
        session.flush()
        bump_version(session, lock)


routing_admin = RoutingAdminService()

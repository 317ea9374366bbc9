"""Every process's copy of the provider tables, kept current without a restart.

Writers (the admin API, the environment sync at start-up) lock the one `provider_catalog`
row, change the tables and bump its version in the same transaction, then publish a notice
on Redis. Each API and worker process runs one watcher thread that reloads the tables when
it sees a new version: at once on a notice, and every PROVIDER_CATALOG_CHECK_SECONDS
regardless, since pub/sub drops messages while a subscriber is disconnected. A process that
cannot read the database keeps serving the catalog it has.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from decimal import Decimal

import redis
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from shared.db import get_sessionmaker, is_database_unavailable
from shared.models.provider import ProviderCatalog, ProviderConfigRow, ProviderModel
from shared.models.routing import Experiment, FallbackChain, PoolDeployment
from shared.pricing import seed_price
from shared.providers.catalog import configured_providers
from shared.providers.snapshot import (
    ENVIRONMENT,
    Catalog,
    ModelRecord,
    ProviderRecord,
    Stamp,
    TableState,
    build_catalog,
)
from shared.redis_client import sync_redis
from shared.routing.targets import Deployment, ExperimentRecord, RoutingTables, Target
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

CHANGE_CHANNEL = "sb:providers:changed"


def change_channel(client: redis.Redis) -> str:
    """The notice channel of the client's Redis database. Pub/sub channels are server-wide,
    not per database: processes on another database of the same server (another deployment,
    a parallel test worker) must not hear this one's notices."""
    return f"{CHANGE_CHANNEL}:{client.connection_pool.connection_kwargs.get('db', 0)}"


Listener = Callable[[Catalog], None]


# -- writing ------------------------------------------------------------------------------


def lock_catalog(session: Session) -> ProviderCatalog:
    """Take the writers' lock (the catalog row), creating the row if it is missing."""
    row = session.scalars(select(ProviderCatalog).with_for_update()).first()
    if row is None:
        # Two writers may both find it missing (only after the table was emptied): one
        # inserts, the other's insert does nothing, and both then lock the same row.
        insert = postgresql_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
        session.execute(insert(ProviderCatalog).values(id=1, version=0).on_conflict_do_nothing())
        row = session.scalars(select(ProviderCatalog).with_for_update()).one()
    return row


def bump_version(session: Session, catalog: ProviderCatalog) -> None:
    """Say the tables changed; commits with the caller's transaction."""
    catalog.version += 1
    catalog.updated_at = session.execute(select(func.now())).scalar_one()


def sync_environment(session: Session, settings: Settings) -> bool:
    """Make the `source = environment` rows match the settings; True if anything changed.

    The settings own these providers' adapter, endpoint and default model, and which of their
    models exist; admins own whether provider and models are enabled, their prices, display
    names, max tokens and temperature, and the models they added (`source = admin`), which
    this never touches. A new model is priced from the shipped list.
    """
    catalog = lock_catalog(session)
    described = configured_providers(settings)
    rows = {
        row.provider_name: row
        for row in session.scalars(
            select(ProviderConfigRow).options(selectinload(ProviderConfigRow.models))
        )
    }
    changed = False
    for name, row in rows.items():
        if row.source == ENVIRONMENT and name not in described:
            session.delete(row)
            changed = True
    for name, config in described.items():
        row = rows.get(name)
        if row is not None and row.source != ENVIRONMENT:
            log.warning(
                "provider %r is defined in the settings and by an admin; the admin's row wins",
                name,
            )
            continue
        if row is None:
            row = ProviderConfigRow(provider_name=name, source=ENVIRONMENT, is_enabled=True)
            session.add(row)
            changed = True
        owned = {
            "adapter": config.adapter,
            "api_endpoint": config.api_endpoint,
            "default_model": config.default_model,
        }
        for column, value in owned.items():
            if getattr(row, column) != value:
                setattr(row, column, value)
                changed = True
        changed |= _sync_models(row, config.models)
    if changed:
        bump_version(session, catalog)
    return changed


def _sync_models(row: ProviderConfigRow, listed: tuple[str, ...]) -> bool:
    existing = {model.model_name: model for model in row.models}
    changed = False
    for model in list(row.models):
        if model.source == ENVIRONMENT and model.model_name not in listed:
            row.models.remove(model)
            changed = True
    for name in listed:
        if name in existing:
            continue
        price = seed_price(row.provider_name, name, row.adapter)
        row.models.append(
            ProviderModel(
                model_name=name,
                source=ENVIRONMENT,
                is_enabled=True,
                input_cost_per_1k_tokens=price.input_per_1k if price else None,
                output_cost_per_1k_tokens=price.output_per_1k if price else None,
            )
        )
        changed = True
    return changed


# -- reading ------------------------------------------------------------------------------


def read_stamp(session: Session) -> Stamp:
    row = session.execute(select(ProviderCatalog.version, ProviderCatalog.updated_at)).first()
    return (row.version, row.updated_at) if row is not None else (0, None)


def read_tables(session: Session) -> TableState:
    stamp = read_stamp(session)
    providers = {}
    rows = session.scalars(
        select(ProviderConfigRow).options(selectinload(ProviderConfigRow.models))
    )
    for row in rows:
        providers[row.provider_name] = ProviderRecord(
            name=row.provider_name,
            adapter=row.adapter,
            source=row.source,
            is_enabled=row.is_enabled,
            display_name=row.display_name,
            api_endpoint=row.api_endpoint,
            api_key_encrypted=row.api_key_encrypted,
            default_model=row.default_model,
            max_tokens=row.max_tokens,
            temperature_default=row.temperature_default,
            config_json=row.config_json,
            models=tuple(
                ModelRecord(
                    name=m.model_name,
                    source=m.source,
                    is_enabled=m.is_enabled,
                    display_name=m.display_name,
                    max_context_length=m.max_context_length,
                    capabilities=m.capabilities,
                    input_cost_per_1k_tokens=_plain(m.input_cost_per_1k_tokens),
                    output_cost_per_1k_tokens=_plain(m.output_cost_per_1k_tokens),
                )
                for m in sorted(row.models, key=lambda m: m.id)
            ),
        )
    return TableState(stamp=stamp, providers=providers, routing=read_routing(session))


def read_routing(session: Session) -> RoutingTables:
    chains = {
        Target(row.provider_name, row.model_name): tuple(Target.from_json(t) for t in row.targets)
        for row in session.scalars(select(FallbackChain))
    }
    pools: dict[str, list[Deployment]] = {}
    for d in session.scalars(
        select(PoolDeployment).where(PoolDeployment.is_enabled).order_by(PoolDeployment.id)
    ):
        pools.setdefault(d.pool_name, []).append(
            Deployment(Target(d.provider_name, d.model_name), d.weight)
        )
    experiments = tuple(
        ExperimentRecord(
            id=e.id,
            name=e.name,
            control=Target(e.control_provider, e.control_model),
            variant=Target(e.variant_provider, e.variant_model),
            variant_share=e.variant_share,
        )
        for e in session.scalars(
            select(Experiment).where(Experiment.is_active).order_by(Experiment.id)
        )
    )
    return RoutingTables(
        chains=chains, pools={k: tuple(v) for k, v in pools.items()}, experiments=experiments
    )


def _plain(price: Decimal | None) -> Decimal | None:
    """The price without the column's padding ("0.030000" reads as "0.03", "2.000000" as
    "2"), as the shipped list writes it; never in exponent notation."""
    if price is None:
        return None
    if price == price.to_integral_value():
        return price.quantize(Decimal(1))
    return price.normalize()


# -- the per-process copy -----------------------------------------------------------------


class ProviderDirectory:
    """The provider tables as this process last read them, and the catalog built from them."""

    def __init__(self) -> None:
        self._state: TableState | None = None
        self._memo: tuple[Settings, TableState | None, Catalog] | None = None
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        # Each watcher has its own stop event: a stopped one may still be finishing its last
        # wait while a new one starts (stop does not wait for it).
        self._watcher: tuple[threading.Thread, threading.Event] | None = None
        self._unavailable = False
        self._synced = False

    def catalog(self, settings: Settings | None = None) -> Catalog:
        """The current catalog, built once per settings object and table state."""
        settings = settings or get_settings()
        memo, state = self._memo, self._state
        if memo is not None and memo[0] is settings and memo[1] is state:
            return memo[2]
        catalog = build_catalog(settings, state)
        self._memo = (settings, state, catalog)
        return catalog

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(catalog)` after every reload (from the watcher thread)."""
        self._listeners.append(listener)

    def refresh(self, *, force: bool = False) -> bool:
        """Reload the tables if their version moved; True if it did. Never raises on a
        database outage: the catalog in hand keeps serving."""
        with self._lock:
            try:
                with get_sessionmaker()() as session:
                    unchanged = (
                        not force
                        and self._state is not None
                        and read_stamp(session) == self._state.stamp
                    )
                    if unchanged:
                        self._unavailable = False
                        return False
                    self._state = read_tables(session)
            except Exception as exc:
                if not is_database_unavailable(exc):
                    raise
                if not self._unavailable:
                    log.warning(
                        "provider tables unreadable (%s); serving the last catalog",
                        type(exc).__name__,
                    )
                self._unavailable = True
                return False
            self._unavailable = False
        catalog = self.catalog()
        for listener in list(self._listeners):
            try:
                listener(catalog)
            except Exception:
                log.exception("provider catalog listener failed")
        return True

    def start(self, settings: Settings) -> None:
        """Sync the environment's rows, read the tables and watch them (idempotent)."""
        self._synced = False
        self._sync(settings)
        self.refresh(force=True)
        if self._watcher is None:
            stop = threading.Event()
            thread = threading.Thread(
                target=self._watch, args=(settings, stop), name="provider-directory", daemon=True
            )
            thread.start()
            self._watcher = (thread, stop)

    def stop(self) -> None:
        """Stop watching; the watcher ends within a check interval, unawaited."""
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            watcher[1].set()

    def changed(self, settings: Settings) -> None:
        """After a committed change: reload here at once, and tell every other process."""
        self.refresh()
        self.publish_change(settings)

    def publish_change(self, settings: Settings) -> None:
        try:
            client = sync_redis(settings.REDIS_URL, socket_timeout=2.0)
            try:
                client.publish(change_channel(client), "1")
            finally:
                client.close()
        except Exception as exc:  # the periodic check still sees the change
            log.warning("provider change notice not sent (%s)", type(exc).__name__)

    def _watch(self, settings: Settings, stop: threading.Event) -> None:
        interval = settings.PROVIDER_CATALOG_CHECK_SECONDS
        while not stop.is_set():
            client = None
            try:
                client = sync_redis(settings.REDIS_URL, socket_timeout=interval + 5)
                pubsub = client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(change_channel(client))
                while not stop.is_set():
                    pubsub.get_message(timeout=interval)
                    if not stop.is_set():
                        self._check(settings)
            except Exception as exc:
                if stop.is_set():
                    break
                log.debug("provider notices unavailable (%s)", type(exc).__name__)
                stop.wait(interval)
                self._check(settings)
            finally:
                if client is not None:
                    client.close()

    def _sync(self, settings: Settings) -> None:
        try:
            with get_sessionmaker().begin() as session:
                changed = sync_environment(session, settings)
        except Exception as exc:
            if not is_database_unavailable(exc):
                raise
            log.warning("provider tables not synced (%s); the watcher retries", type(exc).__name__)
            return
        self._synced = True
        if changed:
            self.publish_change(settings)

    def _check(self, settings: Settings) -> None:
        """One periodic step of the watcher."""
        try:
            if not self._synced:
                self._sync(settings)
            self.refresh()
        except Exception:
            log.exception("provider tables could not be read")


provider_directory = ProviderDirectory()


def current_catalog(settings: Settings | None = None) -> Catalog:
    return provider_directory.catalog(settings)

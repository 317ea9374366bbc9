"""Whether a submission to a provider would be accepted now, and if not, why.

The one place that says so: `GET /providers` shows the short reason to users, the admin API
the detail (which names the setting or route that fixes it).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.providers.manager import provider_manager
from shared.providers.snapshot import Catalog, Unavailable


@dataclass(frozen=True, slots=True)
class Availability:
    """What the catalog makes of one provider: usable or not (and why), and its models."""

    unavailable: Unavailable | None
    offered: tuple[str, ...]
    default_model: str | None

    @property
    def usable(self) -> bool:
        return self.unavailable is None

    @property
    def reason(self) -> str | None:
        return self.unavailable.reason if self.unavailable is not None else None

    @property
    def detail(self) -> str | None:
        return self.unavailable.detail if self.unavailable is not None else None


NOT_IN_CATALOG = Unavailable("unknown provider", "not in this process's provider catalog")


def provider_availability(catalog: Catalog, name: str) -> Availability:
    """The provider `name` as `catalog` serves it."""
    config = catalog.configs.get(name)
    if config is None:
        return Availability(NOT_IN_CATALOG, (), None)
    unavailable: Unavailable | None = None
    if config.adapter not in provider_manager.list_providers():
        unavailable = Unavailable(
            "its adapter is not installed", f"its adapter '{config.adapter}' is not installed"
        )
    elif not config.enabled:
        unavailable = catalog.disabled.get(name, Unavailable("disabled", "disabled"))
    elif not config.models:
        unavailable = Unavailable(
            "no enabled models",
            f"no enabled models: add one (GET /admin/providers/{name}/discover lists them)",
        )
    return Availability(unavailable, config.models, config.default_model)

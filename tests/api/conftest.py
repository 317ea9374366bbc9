"""Fixtures shared by the API tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from shared.settings import get_settings


@pytest.fixture
def set_env() -> Iterator[Callable[..., None]]:
    """Change settings the app reads; the old ones come back after the test."""
    patch = pytest.MonkeyPatch()

    def set_env(**values: str) -> None:
        for name, value in values.items():
            patch.setenv(name, value)
        get_settings.cache_clear()

    yield set_env
    patch.undo()
    get_settings.cache_clear()

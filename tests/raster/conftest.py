"""Fixtures for the raster tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .helpers import SAMPLES


@pytest.fixture(scope="session")
def sample(shared_data: Path) -> Callable[[str], Path]:
    """Return a function giving the path of a sample raster by short name."""

    def path(name: str) -> Path:
        found = shared_data / SAMPLES[name]
        if not found.is_file():
            pytest.fail(f"sample raster {found} is missing")
        return found

    return path

"""Fixtures for index tests: chips over the real sample rasters."""

from __future__ import annotations

import pytest

from gleam_geo.records import Chip

from .helpers import sample_chips


@pytest.fixture(scope="session")
def raster_chips(shared_data) -> list[Chip]:
    """36 chips over Kampala (EPSG:3857) then 36 over the Netherlands sample (EPSG:28992)."""
    return sample_chips(shared_data)

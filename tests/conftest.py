"""Shared fixtures: the real sample imagery in ../shared/data, read in place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The sample data folder: $GLEAM_GEO_DATA, else ../shared/data beside the repository."""
    return Path(os.environ.get("GLEAM_GEO_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.fail(f"sample data not found at {path}; set GLEAM_GEO_DATA to the shared/data folder")
    return path

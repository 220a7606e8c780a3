"""Pairs on real imagery: a view rendered from kampala_z20 and the kampala_z19 chip under it
(a true pair), and a view of the pix4d orthomosaic against the same chip (a false pair)."""

from __future__ import annotations

import pytest

from gleam_geo.evaluation import ViewSpec, render_view
from gleam_geo.raster import open_raster


def view(source, heading=137.0, side=60.0, tilt=20.0, seed=3):
    raster = open_raster(source)
    left, bottom, right, top = raster.bounds
    centre = (left + 0.45 * (right - left), bottom + 0.55 * (top - bottom))
    return render_view(ViewSpec(str(source), centre, heading, side, 256, tilt, photometric=True, seed=seed))


def chip_under(source, xy, size_px=128):
    """A sidecar-like row for the ``size_px`` window of ``source`` centred on map point ``xy``."""
    raster = open_raster(source)
    col, row = ~raster.transform @ xy
    return {
        "chip_id": "test-chip",
        "source": str(source),
        "crs": raster.crs_string,
        "col_off": int(col) - size_px // 2,
        "row_off": int(row) - size_px // 2,
        "width": size_px,
        "height": size_px,
        "gsd_m": raster.gsd_m,
    }


@pytest.fixture(scope="session")
def pairs(shared_data):
    """(true query, false query, chip row)."""
    true_query = view(shared_data / "kampala" / "kampala_z20.tif")
    pix4d = shared_data / "pix4d" / "pix4d_orthomosaic_alpha.tif"
    false_query = view(pix4d, heading=40.0, side=40.0, tilt=0.0)
    chip = chip_under(shared_data / "kampala" / "kampala_z19.tif", true_query.true_xy)
    return true_query, false_query, chip


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    """A tiny random Qwen2.5-VL (model, processor, tokenizer, chat template) on disk."""
    from .tiny_qwen import tiny_qwen_once

    return tiny_qwen_once(tmp_path_factory.getbasetemp())

from pathlib import Path

import numpy as np
import pytest

from gleam_geo.evaluation import ViewSpec, render_view, sample_specs

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "kampala" / "kampala_z19.tif"
pytestmark = pytest.mark.skipif(not SOURCE.is_file(), reason="sample data not found")


def _spec(**kw):
    base = dict(
        source=str(SOURCE), centre_xy=(3628427.0, 39059.0), heading_deg=0.0, ground_side_m=38.4, size_px=128
    )
    return ViewSpec(**{**base, **kw})


def test_nadir_truth_is_the_centre_and_heading():
    query = render_view(_spec(heading_deg=33.0))
    assert query.true_xy == pytest.approx((3628427.0, 39059.0), abs=1e-6)
    assert query.true_heading_deg == pytest.approx(33.0, abs=1e-6)
    assert query.pixels.shape == (128, 128, 3)


def test_heading_90_is_the_north_up_view_turned():
    north = render_view(_spec()).pixels.astype(float)
    east = render_view(_spec(heading_deg=90.0)).pixels.astype(float)
    # heading 90: image up points east, so the north-up view turned counter-clockwise
    turned = np.rot90(north, 1)
    assert np.abs(east - turned)[4:-4, 4:-4].mean() < 12
    assert np.abs(east - north)[4:-4, 4:-4].mean() > 15


def test_tilt_keeps_truth_heading_and_moves_the_far_side():
    flat = render_view(_spec(heading_deg=10.0))
    tilted = render_view(_spec(heading_deg=10.0, tilt_deg=30.0))
    assert tilted.true_heading_deg == pytest.approx(10.0, abs=0.5)
    assert not np.array_equal(flat.pixels, tilted.pixels)


def test_specs_are_reproducible_and_in_range():
    a = sample_specs(str(SOURCE), 5, 3, size_px=64, side_m=(20, 40), tilt_deg=(0, 30))
    assert a == sample_specs(str(SOURCE), 5, 3, size_px=64, side_m=(20, 40), tilt_deg=(0, 30))
    assert all(20 <= s.ground_side_m <= 40 and 0 <= s.tilt_deg <= 30 for s in a)

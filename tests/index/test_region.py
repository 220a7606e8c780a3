"""Region filtering: only chips intersecting the region, whatever CRS or form the region takes."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from gleam_geo.errors import NoCoverageError, UnknownCRSError
from gleam_geo.index import to_wgs84_geometry
from gleam_geo.index.region import ids_in_region

from .helpers import brute_force, build, same_results, unit_vectors

KAMPALA = slice(0, 36)
NETHERLANDS = slice(36, 72)


@pytest.fixture(scope="module")
def vectors(raster_chips):
    return unit_vectors(len(raster_chips), 20)


@pytest.fixture(scope="module")
def flat(raster_chips, vectors, tmp_path_factory):
    return build(tmp_path_factory.mktemp("region") / "idx", raster_chips, vectors)


@pytest.fixture(scope="module")
def footprints(raster_chips):
    return shapely.from_wkt([chip.wgs84_footprint_wkt for chip in raster_chips])


def projected(geometry, crs):
    """``geometry`` (lon/lat) reprojected into ``crs``."""
    to_crs = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return shapely.transform(geometry, lambda xy: np.column_stack(to_crs.transform(xy[:, 0], xy[:, 1])))


def expected_ids(footprints, region_wgs84):
    return np.flatnonzero(shapely.intersects(footprints, region_wgs84))


def corner_of(footprints, part, fraction=0.4):
    """A lon/lat box over the lower-left ``fraction`` of the chips in ``part``."""
    minx, miny, maxx, maxy = shapely.total_bounds(footprints[part])
    return shapely.box(minx, miny, minx + (maxx - minx) * fraction, miny + (maxy - miny) * fraction)


def assert_region_search(index, vectors, footprints, region, region_crs, region_wgs84):
    allowed = expected_ids(footprints, region_wgs84)
    assert 0 < allowed.size < len(footprints) / 2
    queries = unit_vectors(8, 21)
    k = min(5, allowed.size)
    scores, ids = index.search(queries, k, region=region, region_crs=region_crs)
    assert np.isin(ids, allowed).all()
    expected_scores, expected = brute_force(vectors, queries, k, allowed)
    assert np.array_equal(ids, expected)
    assert np.allclose(scores, expected_scores, atol=1e-5)


def test_polygon_in_web_mercator(flat, vectors, footprints):
    corner = corner_of(footprints, KAMPALA)
    region = projected(corner, "EPSG:3857")
    assert_region_search(flat, vectors, footprints, region, "EPSG:3857", corner)


def test_polygon_in_utm(flat, vectors, footprints):
    corner = corner_of(footprints, NETHERLANDS)
    region = projected(shapely.segmentize(corner, 1e-5), "EPSG:32631")  # UTM 31N
    assert_region_search(flat, vectors, footprints, region, "EPSG:32631", corner)


def test_lonlat_bbox(flat, vectors, footprints):
    corner = corner_of(footprints, KAMPALA, 0.6)
    assert_region_search(flat, vectors, footprints, corner.bounds, None, corner)


def test_geodataframe_in_its_own_crs(flat, vectors, footprints):
    corner = corner_of(footprints, NETHERLANDS, 0.5)
    # two pieces in the Dutch national grid, unioned
    left, right = (shapely.box(*b) for b in _split(corner.bounds))
    frame = gpd.GeoDataFrame(geometry=[left, right], crs="EPSG:4326").to_crs("EPSG:28992")
    assert_region_search(flat, vectors, footprints, frame, None, corner)
    assert_region_search(flat, vectors, footprints, frame.geometry, None, corner)


def _split(bounds):
    minx, miny, maxx, maxy = bounds
    middle = (minx + maxx) / 2
    return (minx, miny, middle, maxy), (middle, miny, maxx, maxy)


def test_region_spanning_both_rasters_and_approximate_indexes(tmp_path, raster_chips, vectors, footprints):
    region = shapely.box(*corner_of(footprints, KAMPALA, 0.5).bounds).union(
        corner_of(footprints, NETHERLANDS, 0.5)
    )
    allowed = expected_ids(footprints, region)
    assert (allowed < 36).any() and (allowed >= 36).any()
    for factory, params in (("HNSW32", {"ef_search": 64}), ("IVF4,Flat", {"nprobe": 4})):
        index = build(tmp_path / factory.replace(",", "_"), raster_chips, vectors, factory=factory)
        _, ids = index.search(vectors[allowed], 3, region=region, **params)
        assert np.isin(ids[ids >= 0], allowed).all()
        assert ids[:, 0].tolist() == allowed.tolist()  # each stored vector is found in the region


def test_region_covering_nothing(flat):
    with pytest.raises(NoCoverageError, match=r"covers none of the 72 chips .* \(which spans lon/lat bbox"):
        flat.search(unit_vectors(1, 22), 3, region=(10.0, 50.0, 10.1, 50.1))
    # inside the overall bbox but between the two rasters
    with pytest.raises(NoCoverageError):
        flat.search(unit_vectors(1, 22), 3, region=(20.0, 10.0, 20.1, 10.1))


def test_region_covering_everything_needs_no_selector(flat, vectors):
    queries = unit_vectors(4, 23)
    everywhere = flat.search(queries, 5, region=(-180, -90, 180, 90))
    assert same_results(everywhere, flat.search(queries, 5))


@settings(max_examples=40, deadline=None)
@given(
    x=st.floats(32.5938, 32.5963),
    y=st.floats(0.3500, 0.3516),
    width=st.floats(0.0, 0.002),
    height=st.floats(0.0, 0.002),
)
def test_ids_in_region_equals_exact_intersection(flat, footprints, x, y, width, height):
    region = shapely.box(x, y, x + width, y + height)
    assert ids_in_region(flat._sidecar, region).tolist() == expected_ids(footprints, region).tolist()


def test_to_wgs84_geometry_forms():
    box = to_wgs84_geometry((4.0, 51.0, 5.0, 52.0))
    assert box.bounds == (4.0, 51.0, 5.0, 52.0)
    mercator = to_wgs84_geometry(shapely.box(0, 0, 111319.49, 111325.14), crs=3857)
    assert mercator.bounds == pytest.approx((0, 0, 1, 1), abs=1e-6)
    series = gpd.GeoSeries([shapely.Point(500000, 0).buffer(100)], crs="EPSG:32636")
    assert to_wgs84_geometry(series).centroid.x == pytest.approx(33.0, abs=1e-6)
    assert to_wgs84_geometry(shapely.box(4, 51, 5, 52)).equals(box)


def test_to_wgs84_geometry_errors():
    with pytest.raises(UnknownCRSError, match="unknown CRS"):
        to_wgs84_geometry(shapely.box(0, 0, 1, 1), crs="EPSG:99999999")
    with pytest.raises(ValueError, match="not lon/lat"):
        to_wgs84_geometry((0, 0, 200, 10))
    with pytest.raises(ValueError, match="min > max"):
        to_wgs84_geometry((5, 0, 4, 1))
    with pytest.raises(ValueError, match="pass crs="):
        to_wgs84_geometry(shapely.box(500000, 0, 500100, 100))
    with pytest.raises(ValueError, match="no CRS"):
        to_wgs84_geometry(gpd.GeoSeries([shapely.box(0, 0, 1, 1)]))
    with pytest.raises(ValueError, match="empty"):
        to_wgs84_geometry(shapely.Polygon())
    with pytest.raises(TypeError, match="cannot use a str"):
        to_wgs84_geometry("Kampala")


def test_exact_intersection_after_bbox_filter(flat, vectors, footprints):
    """A thin diagonal strip: its bbox covers all Kampala chips, the strip itself only some."""
    minx, miny, maxx, maxy = shapely.total_bounds(footprints[KAMPALA])
    strip = shapely.LineString([(minx, miny), (maxx, maxy)]).buffer((maxx - minx) / 100)
    allowed = expected_ids(footprints, strip)
    candidates = flat._sidecar.bbox_candidates(strip.bounds)
    assert 0 < allowed.size < np.count_nonzero(candidates < 36)
    assert ids_in_region(flat._sidecar, strip).tolist() == allowed.tolist()
    _, ids = flat.search(vectors[allowed], 1, region=strip)
    assert ids[:, 0].tolist() == allowed.tolist()

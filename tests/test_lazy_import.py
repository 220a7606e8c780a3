"""`import gleam_geo` must stay light: QGIS imports it without the ML stack."""

import subprocess
import sys

HEAVY = ("torch", "timm", "faiss", "rasterio", "geopandas", "torchvision", "cv2")


def test_import_does_not_load_heavy_modules():
    code = (
        "import sys, gleam_geo; "
        "gleam_geo.GleamGeoError; gleam_geo.__version__; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_lazy_names_resolve():
    import gleam_geo

    assert callable(gleam_geo.localize)
    assert gleam_geo.GeoIndex.__name__ == "GeoIndex"
    assert set(gleam_geo.__all__) >= {"localize", "build_index", "GeoIndex", "GleamGeoError"}

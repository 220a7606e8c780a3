"""The ``gleam_geo`` Processing provider, run through ``processing.run``."""

from __future__ import annotations

import pytest
from gleam_geo_qgis.layers import RESULT_FIELDS
from plugin_test_utils import MAX_ERROR_M, distance_m, is_null
from qgis.core import QgsApplication, QgsProcessing, QgsProcessingException, QgsVectorLayer


@pytest.fixture(scope="module")
def provider(qgis_processing):
    from gleam_geo_qgis.processing import GleamProvider

    registry = QgsApplication.processingRegistry()
    assert registry.providerById("gleam_geo") is None, "a plugin test left its provider registered"
    assert registry.addProvider(GleamProvider())
    yield registry.providerById("gleam_geo")
    registry.removeProvider("gleam_geo")


def test_algorithms_are_registered(provider):
    ids = sorted(algorithm.id() for algorithm in provider.algorithms())
    assert ids == ["gleam_geo:build_index", "gleam_geo:localize"]
    localize = QgsApplication.processingRegistry().algorithmById("gleam_geo:localize")
    names = [parameter.name() for parameter in localize.parameterDefinitions()]
    assert {"IMAGES", "RASTERS", "INDEX", "EXTENT", "MODALITY", "TOP_K", "OUTPUT", "FOOTPRINTS"} <= set(names)


def test_processing_localize_in_an_extent_writes_points_and_footprints(
    provider, kampala_index, query_crop, tmp_path
):
    import processing
    from pyproj import Transformer

    # Search only within 60 m of the truth; the extent is given in web mercator, the raster's CRS.
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(
        query_crop["lon"], query_crop["lat"]
    )
    outputs = processing.run(
        "gleam_geo:localize",
        {
            "IMAGES": [query_crop["path"]],
            "INDEX": kampala_index["path"],
            "EXTENT": f"{x - 60},{x + 60},{y - 60},{y + 60} [EPSG:3857]",
            "TOP_K": 3,
            "QUERY_GSD": 0.3,
            "OUTPUT": str(tmp_path / "points.gpkg"),
            "FOOTPRINTS": str(tmp_path / "footprints.gpkg"),
        },
    )
    assert outputs["COUNT"] == 3
    points = QgsVectorLayer(outputs["OUTPUT"], "points", "ogr")
    footprints = QgsVectorLayer(outputs["FOOTPRINTS"], "footprints", "ogr")
    assert points.isValid() and footprints.isValid()
    assert [field.name for field in RESULT_FIELDS] == [f.name() for f in points.fields()][1:]
    features = sorted(points.getFeatures(), key=lambda feature: feature["rank"])
    assert [feature["rank"] for feature in features] == [1, 2, 3]
    assert footprints.featureCount() == 3
    best = features[0]
    assert best["query_path"] == query_crop["path"] and not is_null(best["created_at"])
    assert best["refine_method"] == "keypoints"
    errors_m = [
        distance_m(
            f.geometry().asPoint().x(), f.geometry().asPoint().y(), query_crop["lon"], query_crop["lat"]
        )
        for f in features
    ]
    assert errors_m[0] < MAX_ERROR_M
    assert max(errors_m) < 60 * 2**0.5 + 20  # every candidate's chip meets the extent
    assert points.crs().authid() == "EPSG:4326"


def test_processing_localize_raises_the_library_message(provider, query_crop, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="no_index_here"):
        processing.run(
            "gleam_geo:localize",
            {"IMAGES": [query_crop["path"]], "INDEX": str(tmp_path / "no_index_here"), "OUTPUT": "memory:"},
        )
    with pytest.raises(QgsProcessingException, match="reference imagery"):
        processing.run("gleam_geo:localize", {"IMAGES": [query_crop["path"]], "OUTPUT": "memory:"})


def _corner_raster(source, path):
    """Write the 192 x 192 px top-left corner of ``source`` (4 chips, away from the query)."""
    import rasterio
    from rasterio.windows import Window

    window = Window(0, 0, 192, 192)
    with rasterio.open(source) as dataset:
        profile = dataset.profile | {
            "width": 192,
            "height": 192,
            "transform": dataset.window_transform(window),
        }
        pixels = dataset.read(window=window)
    for key in ("blockxsize", "blockysize", "tiled"):
        profile.pop(key, None)
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    return path


def test_processing_build_and_update_an_index(provider, kampala, kampala_small, tmp_path):
    import processing

    index_dir = tmp_path / "idx"
    outputs = processing.run(
        "gleam_geo:build_index", {"RASTERS": [str(kampala_small)], "OUTPUT": str(index_dir)}
    )
    assert outputs["CHIPS"] == 12 and (index_dir / "manifest.json").is_file()
    corner = _corner_raster(kampala, tmp_path / "corner.tif")
    outputs = processing.run(
        "gleam_geo:build_index", {"RASTERS": [str(corner)], "OUTPUT": str(index_dir), "UPDATE": True}
    )
    assert outputs["CHIPS"] == 16
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".idx")]


def test_algorithms_describe_themselves_for_the_toolbox_and_modeler(provider):
    registry = QgsApplication.processingRegistry()
    for algorithm_id in ("gleam_geo:build_index", "gleam_geo:localize"):
        algorithm = registry.algorithmById(algorithm_id)
        assert algorithm.group() == "Photo localization" and algorithm.groupId() == "photo_localization"
        assert algorithm.shortDescription() and len(algorithm.shortHelpString()) > 200
        assert algorithm.flags() & algorithm.FlagSupportsBatch
        for parameter in algorithm.parameterDefinitions():
            assert parameter.description(), parameter.name()
            assert parameter.name().upper() == parameter.name()


def _with_defaults(child):
    """Give the parameters without a source their default, as the Modeler's child dialog does."""
    from qgis.core import QgsProcessingModelChildParameterSource

    for parameter in child.algorithm().parameterDefinitions():
        if not parameter.isDestination() and parameter.name() not in child.parameterSources():
            source = QgsProcessingModelChildParameterSource.fromStaticValue(parameter.defaultValue())
            child.addParameterSources(parameter.name(), [source])
    return child


def test_a_model_chains_build_index_into_localize(provider, kampala_small, query_crop, tmp_path):
    """A Graphical Modeler model: the index folder built by one algorithm feeds the other."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterFile,
        QgsProcessingParameterMultipleLayers,
    )
    from qgis.core import (
        QgsProcessingModelChildParameterSource as Source,
    )

    model = QgsProcessingModelAlgorithm("Index and localize", "GLEAM")
    model.addModelParameter(
        QgsProcessingParameterMultipleLayers("rasters", "Rasters", QgsProcessing.TypeRaster),
        QgsProcessingModelParameter("rasters"),
    )
    model.addModelParameter(
        QgsProcessingParameterMultipleLayers("photos", "Photos", QgsProcessing.TypeFile),
        QgsProcessingModelParameter("photos"),
    )
    model.addModelParameter(
        QgsProcessingParameterFile("index_dir", "Index folder", QgsProcessingParameterFile.Folder),
        QgsProcessingModelParameter("index_dir"),
    )
    build = QgsProcessingModelChildAlgorithm("gleam_geo:build_index")
    build.setChildId("build")
    build.addParameterSources("RASTERS", [Source.fromModelParameter("rasters")])
    build.addParameterSources("OUTPUT", [Source.fromModelParameter("index_dir")])
    model.addChildAlgorithm(_with_defaults(build))
    localize = QgsProcessingModelChildAlgorithm("gleam_geo:localize")
    localize.setChildId("localize")
    localize.addParameterSources("IMAGES", [Source.fromModelParameter("photos")])
    localize.addParameterSources("INDEX", [Source.fromChildOutput("build", "OUTPUT")])
    localize.addParameterSources("TOP_K", [Source.fromStaticValue(2)])
    output = QgsProcessingModelOutput("candidates")
    output.setChildOutputName("OUTPUT")
    output.setChildId("localize")
    localize.setModelOutputs({"candidates": output})
    model.addChildAlgorithm(_with_defaults(localize))
    model.updateDestinationParameters()
    valid, problems = model.validate()
    assert valid, problems
    outputs = processing.run(
        model,
        {
            "rasters": [str(kampala_small)],
            "photos": [query_crop["path"]],
            "index_dir": str(tmp_path / "index"),
            "localize:candidates": str(tmp_path / "candidates.gpkg"),
        },
    )
    points = QgsVectorLayer(outputs["localize:candidates"], "candidates", "ogr")
    assert points.isValid() and points.featureCount() == 2
    assert {feature["rank"] for feature in points.getFeatures()} == {1, 2}

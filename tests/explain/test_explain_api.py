"""explain() and localize(explain=True) end to end on a real index, and the CLI."""

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner
from PIL import Image

import gleam_geo
from gleam_geo.cli import main
from gleam_geo.schema import EXPLAIN_COLUMNS, column_names

CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def index(shared_data, tmp_path_factory):
    return gleam_geo.build_index(
        [shared_data / "kampala" / "kampala_z19.tif"], tmp_path_factory.mktemp("idx"), tiling={"overlap": 0.0}
    )


@pytest.fixture(scope="module")
def explained(index, pairs, tmp_path_factory):
    true_query, _, _ = pairs
    figures = tmp_path_factory.mktemp("figures")
    results = gleam_geo.localize(
        true_query.pixels,
        index,
        crs=true_query.crs,
        top_k=4,
        explain=True,
        language="zh",
        explain_backend="evidence",
        explain_top_k=2,
        figure_dir=figures,
    )
    return results


def test_localize_fills_the_explanation_columns(explained):
    names = column_names(EXPLAIN_COLUMNS)
    assert list(explained.columns[-len(names) :]) == names
    top, unexplained = explained.iloc[:2], explained.iloc[2:]
    assert (top["verdict"].astype(bool) == (top["match_prob"] >= 0.5)).all()
    assert bool(top["verdict"].iloc[0]) and top["match_prob"].iloc[0] > 0.8
    assert (top["explanation_model"] == "evidence-v1").all() and (top["language"] == "zh").all()
    assert all(CJK.search(text) for text in top["explanation"])
    for path in top["figure_path"]:
        assert Image.open(path).size[0] > 400
    assert unexplained[names].isna().all().all()


def test_results_with_explanations_are_written_and_exported(explained, tmp_path):
    from gleam_geo.io import write_results
    from gleam_geo.results_geojson import results_to_feature_collection

    written = write_results(explained, tmp_path / "hits.gpkg")
    import geopandas as gpd

    back = gpd.read_file(written)
    assert back["explanation"].iloc[0] == explained["explanation"].iloc[0]
    features = results_to_feature_collection(explained)["features"]
    assert features[0]["properties"]["verdict"] is True
    assert features[-1]["properties"]["explanation"] is None
    json.dumps(features, allow_nan=False)


def test_explain_one_candidate_agrees_with_localize(explained, index, pairs, tmp_path):
    true_query, false_query, _ = pairs
    row = explained.iloc[0]
    same = gleam_geo.explain(true_query.pixels, row, index=index, backend="evidence", figure_dir=tmp_path)
    assert same.verdict is bool(row["verdict"])
    assert same.evidence.retrieval_score == pytest.approx(row["score"], abs=1e-4)
    assert same.evidence.score_margin is not None
    assert same.figure.is_file() and not CJK.search(same.reasoning)
    other = gleam_geo.explain(false_query.pixels, row, index=index, language="zh", backend="evidence")
    assert other.verdict is False and other.reasoning != explained["explanation"].iloc[0]
    with pytest.raises(ValueError, match="pass index="):
        gleam_geo.explain(true_query.pixels, {"chip_id": row["chip_id"]})


def test_cli_explain(index, pairs, explained, tmp_path):
    true_query, _, _ = pairs
    photo = tmp_path / "photo.png"
    Image.fromarray(true_query.pixels).save(photo)
    figure = tmp_path / "out" / "pair.png"
    chip_id = explained["chip_id"].iloc[0]
    runner = CliRunner()
    args = ["explain", str(photo), "--index", str(index.path), "--chip-id", chip_id]
    result = runner.invoke(main, [*args, "--backend", "evidence", "--figure", str(figure), "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["verdict"] is True and payload["explanation_model"] == "evidence-v1"
    assert payload["figure_path"] == str(figure) and figure.is_file()
    bad = runner.invoke(main, ["explain", str(photo), "--index", str(index.path), "--chip-id", "nope"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "chip nope is not in index" in bad.output


def test_package_stays_callable_after_submodule_imports():
    # importing a submodule first binds the package, not the function, as gleam_geo.explain
    code = (
        "import types, gleam_geo.explain.base, gleam_geo; e = gleam_geo.explain; "
        "print(isinstance(e, types.ModuleType), callable(e), 'explain' in gleam_geo.__all__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "True"]

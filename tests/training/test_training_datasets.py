"""Each adapter reads a tiny tree that mirrors its dataset's published layout."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from gleam_geo.models import default_gleam_c_card
from training.gleam_c.datasets import (
    PairDataset,
    RetrievalSet,
    cvact_pairs,
    cvusa_pairs,
    cvusa_retrieval,
    manifest_pairs,
    sues200_pairs,
    sues200_retrieval,
    university1652_pairs,
    university1652_retrieval,
    vigor_pairs,
    vigor_retrieval,
)


def _image(path, value=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)
    return path


def test_university1652_train_pairs_and_test_protocol(tmp_path):
    for building in ("0001", "0002"):
        _image(tmp_path / "train" / "satellite" / building / f"{building}.jpg")
        for i in range(3):
            _image(tmp_path / "train" / "drone" / building / f"image-0{i}.jpeg")
        _image(tmp_path / "train" / "street" / building / "s.jpg")
        _image(tmp_path / "test" / "query_drone" / building / "image-01.jpeg")
    for building in ("0001", "0002", "0999"):  # gallery holds distractor buildings
        _image(tmp_path / "test" / "gallery_satellite" / building / f"{building}.jpg")
    _image(tmp_path / "train" / "drone" / "0003" / "orphan.jpeg")  # no satellite image: skipped

    pairs = university1652_pairs(tmp_path, folders=("drone", "street"))
    assert len(pairs) == 8
    assert {p.view for p in pairs} == {"uav", "ground"}
    assert all(p.reference.endswith(f"satellite/{p.group}/{p.group}.jpg") for p in pairs)

    test = university1652_retrieval(tmp_path)
    assert [q.group for q in test.queries] == ["0001", "0002"]
    assert test.gallery_groups == ["0001", "0002", "0999"]
    assert test.gallery_view == "satellite"


def test_sues200_split_layout(tmp_path):
    for height in (150, 300):
        _image(tmp_path / "Training" / str(height) / "satellite" / "0001" / "0.png")
        _image(tmp_path / "Training" / str(height) / "drone" / "0001" / "1.jpg")
        _image(tmp_path / "Training" / str(height) / "drone" / "0001" / "2.jpg")
    _image(tmp_path / "Testing" / "150" / "query_satellite" / "0050" / "0.png")
    _image(tmp_path / "Testing" / "150" / "gallery_drone" / "0050" / "1.jpg")
    assert len(sues200_pairs(tmp_path, heights=(150, 300))) == 4
    test = sues200_retrieval(tmp_path, 150, query="satellite", gallery="drone")
    assert test.queries[0].view == "satellite" and test.gallery_view == "uav"
    with pytest.raises(FileNotFoundError, match="200"):
        sues200_pairs(tmp_path, heights=(200,))


def _vigor_tree(root):
    sats = {
        "NewYork": ["satellite_40.7_-74.0.png", "satellite_40.8_-74.1.png"],
        "Seattle": ["satellite_47.6_-122.3.png"],
        "SanFrancisco": ["satellite_37.7_-122.4.png", "satellite_37.8_-122.5.png"],
        "Chicago": ["satellite_41.8_-87.6.png"],
    }
    for city, names in sats.items():
        for name in names:
            _image(root / city / "satellite" / name)
        first, *others = names
        semi = others[0] if others else first
        _image(root / city / "panorama" / "p1.jpg")
        line = f"p1.jpg {first} 1.0 2.0 {semi} 3 4 {semi} 5 6 {semi} 7 8\n"
        for split_file in (
            "same_area_balanced_train.txt",
            "same_area_balanced_test.txt",
            "pano_label_balanced.txt",
        ):
            (root / "splits" / city).mkdir(parents=True, exist_ok=True)
            (root / "splits" / city / split_file).write_text(line + "\n")


def test_vigor_same_and_cross_area_splits_with_semi_positives(tmp_path):
    _vigor_tree(tmp_path)
    same = vigor_pairs(tmp_path, "same_area", "train")
    cross_train = vigor_pairs(tmp_path, "cross_area", "train")
    cross_test = vigor_pairs(tmp_path, "cross_area", "test")
    assert len(same) == 4
    assert {p.group.split("/")[0] for p in cross_train} == {"NewYork", "Seattle"}
    assert {p.group.split("/")[0] for p in cross_test} == {"SanFrancisco", "Chicago"}
    ny = same[0]
    assert (ny.lat, ny.lon, ny.view) == (40.7, -74.0, "panorama")
    assert len(ny.semi_positives) == 3 and ny.semi_positives[0].endswith("satellite_40.8_-74.1.png")
    test = vigor_retrieval(tmp_path, "cross_area")
    assert len(test.gallery) == 3
    assert len(vigor_retrieval(tmp_path, "cross_area", split="train").gallery) == 3  # NewYork, Seattle
    with pytest.raises(ValueError, match="mode"):
        vigor_pairs(tmp_path, "other_area")


def test_cvusa_split_csv(tmp_path):
    (tmp_path / "splits").mkdir()
    rows = "bingmap/19/0000001.jpg,streetview/panos/0000001.jpg,annotations/0000001.png\n"
    (tmp_path / "splits" / "train-19zl.csv").write_text(rows)
    (tmp_path / "splits" / "val-19zl.csv").write_text(rows.replace("0000001", "0000044"))
    pair = cvusa_pairs(tmp_path)[0]
    assert pair.query == str(tmp_path / "streetview/panos/0000001.jpg")
    assert pair.reference == str(tmp_path / "bingmap/19/0000001.jpg")
    assert (pair.group, pair.view) == ("0000001", "panorama")
    assert cvusa_retrieval(tmp_path).gallery_groups == ["0000044"]
    assert cvusa_retrieval(tmp_path, "train").gallery_groups == ["0000001"]
    with pytest.raises(ValueError, match="split"):
        cvusa_pairs(tmp_path, "test")


def test_cvact_split_csv_with_coordinates(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "train.csv").write_text("id,lat,lon\n__-DFIFxvZBCn1873qkqXA,-35.2,149.1\nabc,,\n")
    first, second = cvact_pairs(tmp_path)
    assert first.query.endswith("ANU_data_small/streetview/__-DFIFxvZBCn1873qkqXA_grdView.jpg")
    assert first.reference.endswith("ANU_data_small/satview_polish/__-DFIFxvZBCn1873qkqXA_satView_polish.jpg")
    assert (first.lat, first.lon) == (-35.2, 149.1)
    assert second.lat is None
    (tmp_path / "splits" / "bad.csv").write_text("name\nx\n")
    with pytest.raises(ValueError, match="'id'"):
        cvact_pairs(tmp_path, "bad")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_manifest_csv_and_parquet_load_as_tensors(tmp_path, suffix):
    _image(tmp_path / "q" / "a.png", 10)
    _image(tmp_path / "r" / "a.png", 200)
    table = pd.DataFrame(
        {
            "query_path": ["q/a.png", "q/a.png"],
            "reference_path": ["r/a.png", "r/a.png"],
            "view": ["uav", "ground"],
            "lat": [1.5, None],
            "lon": [2.5, None],
            "split": ["train", "test"],
        }
    )
    path = tmp_path / f"pairs{suffix}"
    table.to_parquet(path) if suffix == ".parquet" else table.to_csv(path, index=False)
    records = manifest_pairs(path, split="train")
    assert len(records) == 1 and (records[0].lat, records[0].lon) == (1.5, 2.5)
    dataset = PairDataset(records, default_gleam_c_card("resnet18", 32))
    query, reference, index = dataset[0]
    assert query.shape == reference.shape == (3, 32, 32) and index == 0
    assert query.mean() < reference.mean()  # the dark query and bright reference keep their order
    assert dataset.coordinates().tolist() == [[1.5, 2.5]]
    assert RetrievalSet.from_pairs(manifest_pairs(path)).gallery == [str(tmp_path / "r/a.png")]
    with pytest.raises(ValueError, match="view"):
        bad = tmp_path / "bad.csv"
        table.drop(columns="view").to_csv(bad, index=False)
        manifest_pairs(bad)

"""Chip reads: pixels, bands, no-data skipping, XYZ warps, and the threaded batch iterator."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from gleam_geo.errors import CancelledError, RasterReadError
from gleam_geo.raster import (
    ChipBatch,
    RasterCatalog,
    TilingConfig,
    chip_grid,
    count_chips,
    iter_chip_batches,
    iter_chip_images,
    open_raster,
    read_chip,
)
from gleam_geo.raster.reader import _shares_strip

from .helpers import write_raster


def _window(chip):
    w = chip.window
    return Window(w.col_off, w.row_off, w.width, w.height)


def _reader_threads():
    return [thread for thread in threading.enumerate() if thread.name.startswith("gleam-geo-chips")]


def _assert_no_reader_threads():
    deadline = time.monotonic() + 5
    while _reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _reader_threads() == []


def _to_chw(image):
    return np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32) / 255.0


# --- read_chip ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["netherlands", "naip"])
def test_chip_at_native_gsd_equals_direct_read(sample, name):
    path = sample(name)
    source = open_raster(path)
    config = TilingConfig(gsd_m=source.gsd_m, chip_size_px=96, overlap=0.0)
    chips = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        for chip in chips[:: max(1, len(chips) // 5)]:
            assert (chip.window.width, chip.window.height) == (96, 96)
            image, valid = read_chip(dataset, source, chip)
            direct = dataset.read([1, 2, 3], window=_window(chip))
            assert image.shape == (96, 96, 3) and image.dtype == np.uint8
            assert np.array_equal(image, direct.transpose(1, 2, 0))
            assert valid == 1.0


def test_naip_rgbn_gives_rgb(sample):
    path = sample("naip")
    source = open_raster(path)
    config = TilingConfig(gsd_m=10.0, chip_size_px=32)
    chip = next(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, _ = read_chip(dataset, source, chip)
        nir = dataset.read(4, window=_window(chip), out_shape=(32, 32))
    assert image.shape == (32, 32, 3)
    assert not np.array_equal(image[..., 2], nir)  # the fourth band (NIR) is dropped


def test_downsampled_chip_is_the_block_mean(sample):
    path = sample("netherlands")  # 0.25 m: a 1 m chip pixel is a 4 x 4 block
    source = open_raster(path)
    config = TilingConfig(gsd_m=4 * source.gsd_m, chip_size_px=64)
    chip = list(chip_grid(source, config))[3]
    assert (chip.window.width, chip.window.height) == (256, 256)
    with rasterio.open(path) as dataset:
        image, _ = read_chip(dataset, source, chip)
        full = dataset.read([1, 2, 3], window=_window(chip)).astype(float)
    block_mean = full.reshape(3, 64, 4, 64, 4).mean(axis=(2, 4)).transpose(1, 2, 0)
    assert np.abs(image - block_mean).max() <= 1.0


def test_pix4d_alpha_chips_are_skipped(sample):
    path = sample("pix4d")
    source = open_raster(path)
    config = TilingConfig(gsd_m=source.gsd_m, chip_size_px=64, overlap=0.0, max_nodata_fraction=0.5)
    expected, borderline = set(), set()
    with rasterio.open(path) as dataset:
        alpha = dataset.read(4)
    for chip in chip_grid(source, config):
        w = chip.window
        fraction = (alpha[w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width] > 0).mean()
        (borderline if abs(fraction - 0.5) < 0.02 else expected if fraction >= 0.5 else set()).add(
            chip.chip_id
        )
    yielded = {chip.chip_id for chip, _ in iter_chip_images([source], config)}
    assert len(yielded) < count_chips(source, config)  # some chips are mostly transparent
    assert yielded - borderline == expected


def test_valencia_black_fill_chips_are_skipped(sample):
    path = sample("valencia")  # black fill in the top-left, no no-data value declared
    source = open_raster(path)
    assert not source.has_declared_mask
    config = TilingConfig(gsd_m=source.gsd_m, chip_size_px=256, overlap=0.0, max_nodata_fraction=0.3)
    chips = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        pixels = dataset.read()
    expected = set()
    for chip in chips:
        w = chip.window
        block = pixels[:, w.row_off : w.row_off + w.height, w.col_off : w.col_off + w.width]
        if (block != 0).any(axis=0).mean() >= 0.7:
            expected.add(chip.chip_id)
    yielded = [chip for chip, _ in iter_chip_images([source], config)]
    assert chips[0].chip_id not in expected  # the top-left corner is fill
    assert 0 < len(expected) < len(chips)
    assert {chip.chip_id for chip in yielded} == expected


def test_grey_uint16_is_stretched_and_replicated(tmp_path):
    ramp = np.tile(np.linspace(1000, 5000, 64, dtype=np.uint16), (64, 1))[None]
    path = write_raster(tmp_path / "grey16.tif", ramp)
    source = open_raster(path)
    config = TilingConfig(gsd_m=0.5, chip_size_px=64)
    (chip,) = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chip)
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    # 2nd-98th percentile stretch: the darkest and brightest 2 % saturate, the middle is mid-grey.
    assert image[0, 0, 0] == 0 and image[0, -1, 0] == 255
    assert abs(int(image[0, 32, 0]) - 128) <= 6
    assert np.all(np.diff(image[0, :, 0].astype(int)) >= 0)
    assert valid == 1.0


def test_stretch_ignores_black_fill(tmp_path):
    ramp = np.tile(np.linspace(1000, 5000, 64), (3, 64, 1)).astype(np.uint16)
    ramp[:, :, :16] = 0  # black fill, no no-data value declared
    path = write_raster(tmp_path / "rgb16.tif", ramp)
    source = open_raster(path)
    config = TilingConfig(gsd_m=0.5, chip_size_px=64)
    (chip,) = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chip)
    assert valid == pytest.approx(0.75)
    # The stretch comes from the data (1000-5000), not from the fill: the data spans 0-255.
    assert image[0, 16, 0] <= 3 and image[0, -1, 0] == 255


def test_grey_plus_alpha_uses_the_second_band_as_alpha(tmp_path):
    grey = np.full((64, 64), 120, np.uint8)
    alpha = np.zeros((64, 64), np.uint8)
    alpha[:, 48:] = 255  # a quarter of the raster is opaque
    path = write_raster(tmp_path / "grey_alpha.tif", np.stack([grey, alpha]))
    with rasterio.open(path) as dataset:
        assert dataset.colorinterp[1] != ColorInterp.alpha  # the band is not flagged as alpha
    source = open_raster(path)
    assert source.has_alpha and source.rgb_bands == (1,)
    config = TilingConfig(gsd_m=0.5, chip_size_px=64)
    (chip,) = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chip)
    assert valid == pytest.approx(0.25)
    assert np.all(image == 120)
    assert list(iter_chip_images([source], config)) == []


def test_float_nan_counts_as_nodata(tmp_path):
    data = np.random.default_rng(0).random((3, 32, 32), dtype=np.float32)
    data[:, :, :24] = np.nan
    path = write_raster(tmp_path / "float.tif", data)
    source = open_raster(path)
    config = TilingConfig(gsd_m=0.5, chip_size_px=32)
    (chip,) = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chip)
    assert valid == pytest.approx(0.25)
    assert image.dtype == np.uint8 and image[:, 24:].std() > 10


def test_chip_larger_than_the_raster_pads_with_nodata(sample):
    path = sample("colorado")  # 383 x 232 px, a 448 px chip is centred on it
    source = open_raster(path)
    config = TilingConfig(gsd_m=0.3, chip_size_px=224)
    (chip,) = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        image, valid = read_chip(dataset, source, chip)
    area = (source.width * source.height) / (chip.window.width * chip.window.height)
    assert valid == pytest.approx(area, abs=0.02)
    assert np.all(image[:5] == 0) and np.all(image[:, :5] == 0)  # the padding is black
    assert list(iter_chip_images([source], config)) == []  # 44 % valid: skipped at the default 0.5
    lenient = TilingConfig(gsd_m=0.3, chip_size_px=224, max_nodata_fraction=0.6)
    assert len(list(iter_chip_images([source], lenient))) == 1


def test_xyz_chip_of_a_tile_aligned_raster_equals_its_pixels(sample):
    path = sample("kampala")  # mosaicked from zoom-19 tiles of 256 px
    source = open_raster(path)
    config = TilingConfig(gsd_m=0.3, chip_size_px=256, scheme="xyz", zoom=19)
    chips = list(chip_grid(source, config))
    with rasterio.open(path) as dataset:
        for chip in chips[:2]:
            image, valid = read_chip(dataset, source, chip)
            direct = dataset.read(window=_window(chip)).transpose(1, 2, 0)
            assert valid > 0.99
            assert np.abs(image.astype(int) - direct).mean() < 0.5


def test_xyz_chips_over_alpha_edges_are_skipped(sample):
    source = open_raster(sample("pix4d"))
    config = TilingConfig(gsd_m=0.6, chip_size_px=64, scheme="xyz")
    chips = list(chip_grid(source, config))
    with rasterio.open(source.path) as dataset:
        fractions = {chip.chip_id: read_chip(dataset, source, chip)[1] for chip in chips}
    yielded = {chip.chip_id for chip, _ in iter_chip_images([source], config)}
    assert yielded == {chip_id for chip_id, fraction in fractions.items() if fraction >= 0.5}
    assert 0 < len(yielded) < len(chips)


# --- iter_chip_batches --------------------------------------------------------------------


def test_batches_have_the_right_shapes_and_order(sample):
    catalog = RasterCatalog([open_raster(sample("netherlands")), open_raster(sample("kampala"))])
    config = TilingConfig(gsd_m=1.0, chip_size_px=48)
    images = list(iter_chip_images(catalog, config, num_workers=1))
    batches = list(iter_chip_batches(catalog, config, _to_chw, batch_size=5, num_workers=3))
    assert all(isinstance(batch, ChipBatch) for batch in batches)
    assert [len(batch.chips) for batch in batches[:-1]] == [5] * (len(batches) - 1)
    assert 1 <= len(batches[-1].chips) <= 5
    chips = [chip for batch in batches for chip in batch.chips]
    assert [chip.chip_id for chip in chips] == [chip.chip_id for chip, _ in images]
    assert {chip.crs for chip in chips} == {"EPSG:28992", "EPSG:3857"}
    pixels = np.concatenate([batch.pixels for batch in batches])
    assert pixels.dtype == np.float32 and pixels.shape == (len(images), 3, 48, 48)
    assert np.allclose(pixels, np.stack([_to_chw(image) for _, image in images]))
    _assert_no_reader_threads()


@pytest.mark.parametrize("name", ["kampala", "naip", "pix4d", "valencia"])
def test_strip_reads_give_the_same_chips_as_chip_reads(sample, name):
    path = sample(name)
    source = open_raster(path)
    # At the raster's column spacing: no horizontal resampling, so a grid row is read as strips
    # (kampala's EPSG:3857 pixels are taller than wide on the ground: vertically resampled).
    config = TilingConfig(gsd_m=source.pixel_size_m[0], chip_size_px=48, max_nodata_fraction=0.3)
    chips = list(chip_grid(source, config))
    row = [chip for chip in chips if chip.window.row_off == chips[0].window.row_off]
    assert _shares_strip(source, row)
    with rasterio.open(path) as dataset:
        expected = {}
        for chip in chips:
            image, valid = read_chip(dataset, source, chip)
            if valid >= 0.7:
                expected[chip.chip_id] = image
    got = list(iter_chip_images([source], config, num_workers=2))
    assert [chip.chip_id for chip, _ in got] == list(expected)
    for chip, image in got:
        assert image.flags.c_contiguous
        np.testing.assert_array_equal(image, expected[chip.chip_id])


def test_preprocess_gets_a_read_only_channels_last_view(sample):
    source = open_raster(sample("netherlands"))
    config = TilingConfig(gsd_m=source.pixel_size_m[0], chip_size_px=32)
    seen = []

    def preprocess(image):
        seen.append((image.shape, image.flags.writeable))
        return _to_chw(image)

    batch = next(iter_chip_batches([source], config, preprocess, batch_size=4))
    assert seen[0] == ((32, 32, 3), False)
    assert np.array_equal(batch.pixels[0], _to_chw(next(iter_chip_images([source], config))[1]))


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread CPU priority is Linux only")
@pytest.mark.parametrize("yield_cpu", [False, True])
def test_readers_yield_the_cpu_only_when_asked(sample, yield_cpu):
    source = open_raster(sample("netherlands"))
    config = TilingConfig(gsd_m=source.pixel_size_m[0], chip_size_px=32)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = set()

    def preprocess(image):
        seen.add(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return _to_chw(image)

    list(iter_chip_batches([source], config, preprocess, batch_size=8, num_workers=2, yield_cpu=yield_cpu))
    assert seen == ({19} if yield_cpu else {own})
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own  # the caller is untouched


def test_progress_counts_every_chip_considered(sample):
    source = open_raster(sample("pix4d"))
    config = TilingConfig(gsd_m=0.7, chip_size_px=32)
    calls = []
    batches = list(
        iter_chip_batches([source], config, _to_chw, batch_size=8, progress=lambda *a: calls.append(a))
    )
    total = count_chips(source, config)
    assert calls[0] == ("chipping", 0, total)
    assert calls[-1] == ("chipping", total, total)
    assert [done for _, done, _ in calls] == list(range(total + 1))
    assert sum(len(batch.chips) for batch in batches) < total  # transparent chips were skipped


def test_cancelling_through_progress_stops_the_threads(sample):
    source = open_raster(sample("kampala"))
    config = TilingConfig(gsd_m=0.6, chip_size_px=32)

    def progress(stage, done, total):
        return done < 10

    with pytest.raises(CancelledError, match="chipping"):
        for _ in iter_chip_batches([source], config, _to_chw, batch_size=4, progress=progress):
            pass
    with pytest.raises(CancelledError):
        next(iter_chip_batches([source], config, _to_chw, progress=lambda *_: False))
    _assert_no_reader_threads()


class _PreprocessFailed(Exception):
    pass


def test_preprocess_errors_reach_the_consumer(sample):
    source = open_raster(sample("kampala"))
    config = TilingConfig(gsd_m=0.6, chip_size_px=32)
    calls = []

    def preprocess(image):
        calls.append(1)
        if len(calls) == 7:
            raise _PreprocessFailed("bad chip")
        return _to_chw(image)

    with pytest.raises(_PreprocessFailed, match="bad chip"):
        list(iter_chip_batches([source], config, preprocess, batch_size=4))
    _assert_no_reader_threads()


def test_preprocess_must_return_channels_first(sample):
    source = open_raster(sample("colorado"))
    config = TilingConfig(gsd_m=0.3, chip_size_px=32)
    with pytest.raises(ValueError, match=r"\(3, h, w\)"):
        list(iter_chip_batches([source], config, lambda image: image.astype(np.float32)))


def test_read_errors_in_workers_reach_the_consumer(sample, tmp_path):
    path = tmp_path / "kampala.tif"
    path.write_bytes(sample("kampala").read_bytes())
    source = open_raster(path)
    size = path.stat().st_size
    with open(path, "r+b") as stream:  # damage the file after it was opened and checked
        stream.truncate(size // 2)
    config = TilingConfig(gsd_m=0.6, chip_size_px=64)
    with pytest.raises(RasterReadError, match=r"kampala\.tif"):
        list(iter_chip_batches([source], config, _to_chw))
    _assert_no_reader_threads()


def test_early_close_stops_the_threads_and_reads_stay_bounded(sample):
    source = open_raster(sample("kampala"))
    config = TilingConfig(gsd_m=0.3, chip_size_px=16, overlap=0.0)
    assert count_chips(source, config) > 200
    calls = []

    def preprocess(image):
        calls.append(1)
        return _to_chw(image)

    batches = iter_chip_batches([source], config, preprocess, batch_size=4, num_workers=2, prefetch_batches=2)
    first = next(batches)
    time.sleep(0.3)  # give the workers time to run ahead if they were unbounded
    assert len(first.chips) == 4
    assert len(calls) <= 4 + 2 * 4  # the batch handed out plus the prefetch window
    batches.close()
    _assert_no_reader_threads()

import io

import numpy as np
import pytest
from PIL import Image

from gleam_geo.errors import CorruptImageError, GleamGeoError
from gleam_geo.io import load_image


def _jpeg_bytes(array: np.ndarray, orientation: int | None = None) -> bytes:
    image = Image.fromarray(array)
    buffer = io.BytesIO()
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(buffer, format="JPEG", quality=95, exif=exif)
    return buffer.getvalue()


@pytest.fixture
def gradient() -> np.ndarray:
    """A 40x60 image whose left half is dark and right half bright, so rotations are visible."""
    array = np.zeros((40, 60, 3), np.uint8)
    array[:, 30:] = 220
    return array


def test_all_input_kinds_give_the_same_pixels(tmp_path, gradient):
    path = tmp_path / "q.png"
    Image.fromarray(gradient).save(path)
    from_path = load_image(path)
    assert from_path.path == str(path)
    for source in (str(path), path.read_bytes(), Image.open(path), gradient):
        pixels = load_image(source).pixels
        assert pixels.shape == (40, 60, 3) and pixels.dtype == np.uint8
        np.testing.assert_array_equal(pixels, gradient)


def test_grey_float_and_rgba_arrays_become_rgb_uint8():
    grey = load_image(np.full((5, 7), 0.5, np.float32)).pixels
    assert grey.shape == (5, 7, 3) and grey.dtype == np.uint8 and grey[0, 0, 0] == 127
    rgba = load_image(np.zeros((5, 7, 4), np.uint8)).pixels
    assert rgba.shape == (5, 7, 3)


def test_exif_orientation_is_applied(gradient):
    # Orientation 6: the camera was rotated; the viewer must rotate 90 degrees clockwise.
    pixels = load_image(_jpeg_bytes(gradient, orientation=6)).pixels
    assert pixels.shape == (60, 40, 3)
    assert pixels[:25].mean() < 60 and pixels[35:].mean() > 160  # dark half now on top


def test_exif_gps_is_read_from_a_real_drone_photo(shared_data):
    query = load_image(shared_data / "drone_photos_odm" / "DJI_0061.JPG")
    lon, lat = query.exif_gps
    assert -84.0 < lon < -83.0 and 41.0 < lat < 42.0  # Toledo, Ohio


@pytest.mark.parametrize("data", [b"not an image at all", b""])
def test_garbage_bytes_raise_corrupt_image(data):
    with pytest.raises(CorruptImageError, match="cannot decode"):
        load_image(data)


def test_truncated_jpeg_raises_one_line_error(tmp_path, gradient):
    path = tmp_path / "cut.jpg"
    path.write_bytes(_jpeg_bytes(np.tile(gradient, (10, 10, 1)))[:300])
    with pytest.raises(GleamGeoError) as info:
        load_image(path)
    assert isinstance(info.value, CorruptImageError)
    assert "cut.jpg" in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_wrong_type():
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image("/nonexistent/photo.jpg")
    with pytest.raises(CorruptImageError):
        load_image(12345)  # type: ignore[arg-type]
    with pytest.raises(CorruptImageError, match="shape"):
        load_image(np.zeros((3, 4, 5, 6)))


def test_a_georeferenced_query_gives_its_ground_size(tmp_path, shared_data, gradient):
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(shared_data / "naip_nd/naip_m_4709963_se_14_1_20090818.tif") as dataset:
        window = Window(100, 100, 64, 48)
        profile = dataset.profile | {
            "driver": "GTiff", "width": 64, "height": 48, "transform": dataset.window_transform(window)
        }  # fmt: skip
        pixels = dataset.read(window=window)
    path = tmp_path / "crop.tif"
    with rasterio.open(path, "w", **profile) as out:
        out.write(pixels)
    loaded = load_image(path)
    assert loaded.pixels.shape == (48, 64, 3) and loaded.gsd_m == pytest.approx(5.0, rel=0.01)
    plain = tmp_path / "plain.png"
    Image.fromarray(gradient).save(plain)
    assert load_image(plain).gsd_m is None and load_image(gradient).gsd_m is None

from __future__ import annotations

import pytest
import torch

from gleam_geo.errors import DeviceError, GleamGeoError
from gleam_geo.models.device import autocast, autocast_dtype, default_batch_size, select_device


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def one_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_picks_the_best_available_device():
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert select_device() == select_device(None) == select_device("auto") == expected


def test_auto_without_gpu_is_cpu(no_gpu):
    assert select_device("auto") == "cpu"
    assert select_device(" CPU ") == "cpu"


def test_auto_prefers_cuda(one_gpu):
    assert select_device() == "cuda"


def test_explicit_cuda_without_gpu_raises_a_clear_error(no_gpu):
    with pytest.raises(DeviceError, match="device='cpu'") as info:
        select_device("cuda")
    assert isinstance(info.value, GleamGeoError) and isinstance(info.value, RuntimeError)
    assert "\n" not in str(info.value)
    with pytest.raises(DeviceError):
        select_device("mps")


def test_cuda_index_is_checked(one_gpu):
    assert select_device("cuda:0") == "cuda:0"
    with pytest.raises(DeviceError, match="only 1 CUDA GPU"):
        select_device("cuda:3")


def test_unknown_device_name_is_refused():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        select_device("tpu")


def test_autocast_is_a_no_op_on_cpu():
    assert autocast_dtype("cpu") is None
    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_cuda_autocast_uses_bf16_where_supported(monkeypatch, bf16, dtype):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    assert autocast_dtype("cuda:0") == dtype
    assert autocast_dtype("mps") is None


def test_default_batch_size_scales_with_device_and_image_size():
    assert default_batch_size("cuda", 384) == 256
    assert default_batch_size("cpu", 384) < default_batch_size("mps", 384) < default_batch_size("cuda", 384)
    assert default_batch_size("cpu", 768) < default_batch_size("cpu", 384) <= default_batch_size("cpu", 128)
    assert default_batch_size("cuda", 128) <= 1024
    assert default_batch_size("cpu", 100_000) == 1

"""Where and how encoders run: the one place that picks device, precision and batch size.

Everything else asks this module instead of probing ``torch.cuda`` itself, so a machine
with a GPU uses it by default and an explicit request for a missing device fails loudly
instead of silently running on the CPU.
"""

from __future__ import annotations

import contextlib
import re

import torch

from ..errors import DeviceError

__all__ = ["autocast", "autocast_dtype", "default_batch_size", "select_device"]

_CUDA = re.compile(r"cuda(?::(\d+))?")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def select_device(preference: str | None = "auto") -> str:
    """Resolve a device request to a torch device string.

    Args:
        preference: ``"auto"`` or ``None`` (CUDA, then Apple MPS, then CPU), or an explicit
            ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.

    Returns:
        The device string to hand to torch, e.g. ``"cuda"`` or ``"cpu"``.

    Raises:
        DeviceError: an explicit device that this machine or this torch build lacks.

    """
    request = "auto" if preference is None else preference.strip().lower()
    if request == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    if request == "cpu":
        return "cpu"
    if request == "mps":
        if not _mps_available():
            raise DeviceError("device 'mps' requested but Apple MPS is not available; pass device='cpu'")
        return "mps"
    match = _CUDA.fullmatch(request)
    if match is None:
        raise DeviceError(f"unknown device {preference!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'")
    if not torch.cuda.is_available():
        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise DeviceError(
            f"device {preference!r} requested but no CUDA GPU is usable (torch {torch.__version__} is "
            f"{build}); install a CUDA build of torch (pip install -e .[gpu]) or pass device='cpu'"
        )
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise DeviceError(
            f"device {preference!r} requested but only {torch.cuda.device_count()} CUDA GPU(s) exist; "
            "pick an index below that"
        )
    return request


def autocast_dtype(device: str) -> torch.dtype | None:
    """Reduced precision used for inference on ``device``: bfloat16 on CUDA, else none.

    GPUs without bfloat16 support (before Ampere) get float16 instead.
    """
    if not device.startswith("cuda"):
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: str) -> contextlib.AbstractContextManager[object]:
    """Mixed-precision context for inference on ``device`` (a no-op off CUDA)."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def default_batch_size(device: str, image_px: int) -> int:
    """Images per forward pass for ``image_px``-sized inputs on ``device``.

    Scales with the pixel count from a reference at 384 px: 256 on CUDA, 64 on MPS,
    16 on CPU (where large batches only cost memory), with a cap per device.
    """
    if device.startswith("cuda"):
        at_384, cap = 256, 1024
    elif device == "mps":
        at_384, cap = 64, 256
    else:
        at_384, cap = 16, 64
    scaled = int(at_384 * (384 / max(1, image_px)) ** 2)
    return max(1, min(cap, scaled))

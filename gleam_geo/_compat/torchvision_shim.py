"""Make a mismatched torchvision wheel importable, so that timm can load.

timm imports torchvision for its transforms. PyPI's torchvision wheel is built against
PyPI's default (CUDA) torch; with a CPU-only torch of the same version its C++ extension
does not load, and ``import torchvision`` then fails with
``RuntimeError: operator torchvision::nms does not exist`` because it registers fake
(meta) kernels for ``nms`` and ``qnms`` whether or not the extension loaded.

:func:`import_torchvision` first imports torchvision normally. Only if that fails with
exactly this error does it declare the two operator schemas (no kernels) and import
again. torchvision's Python code (transforms, models) then works; its compiled detection
ops (``torchvision.ops.nms`` and friends) stay unavailable, and gleam_geo does not use
them. Where torch and torchvision match, the first import succeeds and nothing is done.
"""

from __future__ import annotations

import sys
from types import ModuleType

__all__ = ["import_torchvision", "shim_active"]

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the schema registrations alive for the life of the process


def shim_active() -> bool:
    """Whether the shim had to declare torchvision's operator schemas in this process."""
    return _library is not None


def import_torchvision() -> ModuleType:
    """Import torchvision, declaring its missing operator schemas only if the import needs them."""
    global _library
    try:
        import torchvision
    except RuntimeError as exc:
        if "operator torchvision::" not in str(exc) or "does not exist" not in str(exc):
            raise
        import torch.library

        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        _library = torch.library.Library("torchvision", "FRAGMENT")
        for schema in _SCHEMAS.values():
            _library.define(schema)
        import torchvision
    return torchvision

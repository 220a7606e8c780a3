"""geoembed-v3: the offline default encoder, real pretrained weights from the geoembed package.

The PyPI package ``geoembed`` (MIT) ships ``weights/v3.npz``: a CIFAR-style ResNet-18
(3x3 stride-1 stem, no max-pool) trained self-supervised on nadir aerial orthophotos,
followed by a 4x4 average pool and a linear head to 256 dimensions. Its own code runs on
an OpenCL framework; here only the weight file is read and the network is rebuilt from a
timm ResNet-18 so it runs wherever torch does.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..records import VIEWS
from .card import ModelCard
from .checkpoint import load_state_dict_strict, register_architecture
from .gleam_c import create_backbone
from .torch_encoder import TorchEncoder, sha256_file

__all__ = [
    "GEOEMBED_ARCHITECTURE",
    "GEOEMBED_NAME",
    "GeoEmbedNet",
    "geoembed_card",
    "geoembed_network",
    "geoembed_weights_path",
    "load_geoembed",
]

GEOEMBED_NAME = "geoembed-v3"
GEOEMBED_ARCHITECTURE = "geoembed-resnet18"
INPUT_PX = 128
_META_KEYS = ("embed_dim", "base_channels", "pool_size")
# geoembed's layer names -> timm ResNet's, applied in order to the name after "bb.".
_RENAMES = (
    ("stem.0.", "conv1."),
    ("stem.1.", "bn1."),
    (".short.0.", ".downsample.0."),
    (".short.1.", ".downsample.1."),
)


class GeoEmbedNet(nn.Module):
    """ResNet-18 trunk with a 3x3 stride-1 stem, a fixed-grid average pool and a linear head.

    Attributes:
        embed_dim: output length of the linear head.
        pool_size: side of the pooled feature grid fed to the head.

    A 128 px input gives ``(N, 512, 16, 16)`` trunk features, pooled to ``pool_size`` x
    ``pool_size`` cells and flattened channel-major before the head, as geoembed does.

    """

    def __init__(self, embed_dim: int = 256, pool_size: int = 4) -> None:
        """Build the network with random weights (see :func:`geoembed_network` for trained ones)."""
        super().__init__()
        self.embed_dim = embed_dim
        self.pool_size = pool_size
        trunk = create_backbone("resnet18", num_classes=0, global_pool="")
        trunk.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        trunk.maxpool = nn.Identity()
        self.trunk = trunk
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc = nn.Linear(trunk.num_features * pool_size * pool_size, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``(N, 3, 128, 128)`` images in [-1, 1] to ``(N, embed_dim)`` features (not normalised)."""
        return self.fc(self.pool(self.trunk.forward_features(images)).flatten(1))


def geoembed_weights_path() -> Path:
    """Locate ``geoembed/weights/v3.npz`` without importing geoembed (it needs an OpenCL stack).

    Raises:
        CheckpointError: geoembed is not installed, or its weight file is missing.

    """
    spec = importlib.util.find_spec("geoembed")
    if spec is None or not spec.submodule_search_locations:
        raise CheckpointError(
            "the offline default encoder geoembed-v3 needs the geoembed package; "
            "run pip install --no-deps geoembed (or make setup)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v3.npz"
    if not path.is_file():
        raise CheckpointError(
            f"geoembed is installed but {path} is missing; "
            "reinstall it: pip install --force-reinstall --no-deps geoembed"
        )
    return path


def _timm_key(npz_key: str) -> str:
    if npz_key.startswith("fc."):
        return npz_key
    key = npz_key.removeprefix("bb.")
    for old, new in _RENAMES:
        key = key.replace(old, new)
    return "trunk." + key


def geoembed_network(path: str | Path | None = None) -> GeoEmbedNet:
    """Build :class:`GeoEmbedNet` with the weights of a geoembed v3 ``.npz`` file.

    Args:
        path: the weight file; the installed package's ``v3.npz`` by default.

    Raises:
        CheckpointError: the file is missing, or its tensors do not fit the network.

    """
    path = Path(path) if path is not None else geoembed_weights_path()
    with np.load(path, allow_pickle=False) as data:
        meta = {key: int(data[key][0]) for key in _META_KEYS}
        state = {_timm_key(key): torch.from_numpy(data[key]) for key in data.files if key not in _META_KEYS}
    if meta["base_channels"] != 64:
        raise CheckpointError(
            f"{path.name} has base_channels={meta['base_channels']}; "
            "only the 64-channel ResNet-18 of geoembed v3 is supported"
        )
    state["fc.weight"] = state["fc.weight"].T.contiguous()  # stored (in, out); torch wants (out, in)
    network = GeoEmbedNet(embed_dim=meta["embed_dim"], pool_size=meta["pool_size"])
    # BatchNorm step counters are training-only state that geoembed does not store.
    for key, value in network.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
    load_state_dict_strict(network, state, source=path.name, architecture=GEOEMBED_ARCHITECTURE)
    return network.eval()


def geoembed_card(embed_dim: int = 256, pool_size: int = 4) -> ModelCard:
    """Describe geoembed-v3: 128 px inputs for every view, scaled to [-1, 1]."""
    return ModelCard(
        name=GEOEMBED_NAME,
        architecture=GEOEMBED_ARCHITECTURE,
        embed_dim=embed_dim,
        image_size={view: (INPUT_PX, INPUT_PX) for view in VIEWS},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        gsd_m=0.3,  # calibrated for ~38 m ground tiles: 128 px at 0.3 m/px
        chip_size_px=INPUT_PX,
        training_data="geoembed v3: self-supervised on nadir aerial orthophotos (z=20 web-mercator)",
        license="MIT",
        extra={"pool_size": pool_size},
    )


def load_geoembed(*, device: str | None = "auto", batch_size: int | None = None) -> TorchEncoder:
    """Load the geoembed-v3 encoder with its pretrained weights; checksum = SHA-256 of ``v3.npz``.

    Raises:
        CheckpointError: geoembed is not installed (``pip install --no-deps geoembed``).

    """
    path = geoembed_weights_path()
    network = geoembed_network(path)
    card = geoembed_card(network.embed_dim, network.pool_size)
    return TorchEncoder(network, card, device=device, checksum=sha256_file(path), batch_size=batch_size)


register_architecture(
    GEOEMBED_ARCHITECTURE,
    lambda card: GeoEmbedNet(embed_dim=card.embed_dim, pool_size=int(card.extra.get("pool_size", 4))),
)

"""Checkpoints: ``<name>.safetensors`` weights plus a ``<name>.json`` model card.

The card says which network to build, so a checkpoint loads without code changes.
Weights are only ever read as plain tensors: safetensors files, or pickled ``.pth``
state dicts through ``torch.load(weights_only=True)``, never by unpickling code.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from ..errors import CheckpointError, UnknownEncoderError
from ..io.atomic import atomic_write_bytes
from .card import ModelCard
from .gleam_c import GleamCNet, create_backbone, default_gleam_c_card, import_timm
from .torch_encoder import TorchEncoder, sha256_file, state_dict_bytes

__all__ = [
    "NetworkBuilder",
    "build_network",
    "checkpoint_paths",
    "import_sample4geo",
    "load_checkpoint",
    "load_state_dict_strict",
    "register_architecture",
    "save_checkpoint",
]

NetworkBuilder = Callable[[ModelCard], nn.Module]
"""Builds a randomly initialised network from a card; weights are loaded afterwards."""

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_DATA_PARALLEL_PREFIX = "module."
_MAX_CANDIDATES = 40

_BUILDERS: dict[str, NetworkBuilder] = {}


def register_architecture(architecture: str, builder: NetworkBuilder) -> None:
    """Make cards whose ``architecture`` is this name build their network with ``builder``.

    Names that are not registered are taken as timm backbones of a :class:`GleamCNet`.
    """
    _BUILDERS[architecture] = builder


def build_network(card: ModelCard) -> nn.Module:
    """Build the (randomly initialised) network a card describes.

    Raises:
        CheckpointError: the card names neither a registered architecture nor a timm model.

    """
    builder = _BUILDERS.get(card.architecture)
    if builder is not None:
        return builder(card)
    try:
        return GleamCNet(card.architecture, img_size=card.extra.get("img_size"))
    except UnknownEncoderError:
        raise CheckpointError(
            f"card {card.name!r} names architecture {card.architecture!r}, which is neither a timm model "
            f"nor one of {sorted(_BUILDERS)}; fix 'architecture' in the card"
        ) from None


def checkpoint_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return the ``(weights, card)`` paths of a checkpoint given as its .safetensors, .json or stem."""
    stem = Path(path)
    if stem.suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX):
        stem = stem.with_suffix("")
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + CARD_SUFFIX)


def save_checkpoint(network: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> Path:
    """Write ``network``'s weights and ``card`` as a checkpoint, each file atomically.

    Args:
        network: the network; its whole state dict is saved.
        card: the card that rebuilds it (``card.architecture`` must describe ``network``).
        path: the checkpoint's .safetensors path, .json path or stem.

    Returns:
        The path of the .safetensors file. Its SHA-256 is the loaded encoder's checksum.

    """
    weights, card_path = checkpoint_paths(path)
    atomic_write_bytes(weights, state_dict_bytes(network))
    card.save(card_path)
    return weights


def load_checkpoint(
    path: str | os.PathLike[str], *, device: str | None = "auto", batch_size: int | None = None
) -> TorchEncoder:
    """Load a checkpoint written by :func:`save_checkpoint` as a ready encoder.

    Args:
        path: the checkpoint's .safetensors path, .json path or stem.
        device: device request (see :func:`~gleam_geo.models.device.select_device`).
        batch_size: images per forward pass; by default chosen for the device.

    Raises:
        CheckpointError: a missing file, a pickled checkpoint, or weights that do not fit
            the network the card describes.

    """
    if Path(path).suffix in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path} is a pickled torch checkpoint and load_checkpoint reads only .safetensors; "
            "convert it with import_sample4geo(path, architecture=..., out=...)"
        )
    weights, card_path = checkpoint_paths(path)
    if not weights.is_file():
        raise CheckpointError(
            f"checkpoint weights {weights} not found; pass the .safetensors path of a checkpoint"
        )
    card = ModelCard.load(card_path)
    try:
        state = safetensors.torch.load_file(weights)
    except SafetensorError as exc:
        raise CheckpointError(f"{weights} is not a valid safetensors file ({exc}); re-export it") from None
    network = build_network(card)
    load_state_dict_strict(network, state, source=weights.name, architecture=card.architecture)
    return TorchEncoder(network, card, device=device, checksum=sha256_file(weights), batch_size=batch_size)


def import_sample4geo(
    pth_path: str | os.PathLike[str],
    architecture: str,
    img_size: int = 384,
    out: str | os.PathLike[str] | None = None,
    *,
    device: str | None = "auto",
) -> TorchEncoder:
    """Load a Sample4Geo-style ``.pth`` state dict into a GLEAM-C encoder.

    Args:
        pth_path: a ``torch.save``-d state dict (``model.*`` keys and ``logit_scale``,
            optionally with DataParallel's ``module.`` prefix).
        architecture: the timm backbone it was trained with, e.g. ``convnext_base``.
        img_size: the square input side it was trained at.
        out: when given, also write it as a safetensors checkpoint there.
        device: device request for the returned encoder.

    Returns:
        The encoder. Its checksum equals that of the checkpoint ``out`` would hold.

    Raises:
        CheckpointError: an unreadable file, one with pickled objects other than tensors,
            or weights that do not fit ``architecture``.

    """
    pth_path = Path(pth_path)
    if not pth_path.is_file():
        raise CheckpointError(f"Sample4Geo checkpoint {pth_path} not found; check the path")
    try:
        state = torch.load(pth_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{pth_path.name} is not a plain tensor state dict (corrupt, or it holds pickled objects, "
            "which are never unpickled); re-save it with torch.save(model.state_dict(), path)"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"{pth_path.name} holds a {type(state).__name__}, not a state dict of tensors; "
            "re-save it with torch.save(model.state_dict(), path)"
        )
    state = {key.removeprefix(_DATA_PARALLEL_PREFIX): value for key, value in state.items()}
    card = default_gleam_c_card(
        architecture,
        img_size,
        name=f"sample4geo-{pth_path.stem}",
        training_data=f"Sample4Geo checkpoint {pth_path.name}",
    )
    network = build_network(card)
    load_state_dict_strict(network, state, source=pth_path.name, architecture=architecture)
    checksum = sha256_file(save_checkpoint(network, card, out)) if out is not None else None
    return TorchEncoder(network, card, device=device, checksum=checksum)


def load_state_dict_strict(
    network: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, architecture: str
) -> None:
    """Load ``state`` into ``network`` only if keys and shapes match exactly.

    Raises:
        CheckpointError: one line naming the first bad key, the shapes, and the fix; for
            timm backbones it names the architecture the weights do fit when one is found.

    """
    expected = network.state_dict()
    wrong_shape = [k for k, v in expected.items() if k in state and state[k].shape != v.shape]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if wrong_shape:
        key = wrong_shape[0]
        problem = (
            f"{key} is {tuple(state[key].shape)} in the checkpoint but {tuple(expected[key].shape)} "
            f"in the network ({len(wrong_shape)} keys differ)"
        )
    elif missing:
        problem = f"{missing[0]} is missing from the checkpoint ({len(missing)} keys missing)"
    elif unexpected:
        problem = (
            f"{unexpected[0]} is in the checkpoint but not in the network ({len(unexpected)} extra keys)"
        )
    else:
        network.load_state_dict(dict(state), strict=True)
        return
    fits = _matching_timm_architecture(network, state)
    fix = (
        f"the checkpoint was trained for {fits}, the card says {architecture}; set architecture={fits!r}"
        if fits
        else "set the architecture (and image size) the weights were trained with"
    )
    raise CheckpointError(f"{source} does not fit architecture {architecture!r}: {problem}; {fix}")


def _matching_timm_architecture(network: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Find a timm architecture of the same family whose parameters match ``state`` exactly.

    Only for :class:`GleamCNet` networks and families of at most 40 models; candidates
    are built on the meta device, so the search allocates nothing.
    """
    if not isinstance(network, GleamCNet):
        return None
    timm = import_timm()
    shapes = {k.removeprefix("model."): tuple(v.shape) for k, v in state.items() if k.startswith("model.")}
    family = network.architecture.split(".")[0].split("_")[0]
    candidates = timm.list_models(f"{family}*")
    if len(candidates) > _MAX_CANDIDATES:
        return None  # too many to build while reporting an error (e.g. every ViT)
    for candidate in candidates:
        try:
            with torch.device("meta"):
                backbone = create_backbone(candidate, img_size=network.img_size, num_classes=0)
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            continue  # a candidate that cannot be built on the meta device is no answer
        if {k: tuple(v.shape) for k, v in backbone.state_dict().items()} == shapes:
            return candidate
    return None

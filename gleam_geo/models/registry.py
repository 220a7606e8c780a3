"""Encoders by name: registered models, timm backbones and checkpoint paths.

``get_encoder()`` is the one entry point the rest of gleam_geo uses. It never hands out a
network with random weights unless asked to, and it keeps a few loaded encoders per
process, since building one costs seconds and hundreds of megabytes.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from ..errors import CheckpointError, RandomWeightsError, UnknownEncoderError
from .base import Encoder
from .checkpoint import (
    CARD_SUFFIX,
    PICKLE_SUFFIXES,
    WEIGHTS_SUFFIX,
    checkpoint_paths,
    import_sample4geo,
    load_checkpoint,
)
from .device import select_device
from .geoembed import GEOEMBED_NAME, load_geoembed
from .gleam_c import GleamCNet, default_gleam_c_card
from .torch_encoder import TorchEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "TIMM_PREFIX",
    "clear_encoder_cache",
    "get_encoder",
    "list_encoders",
    "register_encoder",
]

DEFAULT_ENCODER = GEOEMBED_NAME
"""The encoder used when none is named: real pretrained weights that need no download."""

TIMM_PREFIX = "timm:"
GLEAM_C_ARCHITECTURE = "convnext_base"
GLEAM_C_IMG_SIZE = 384
_CACHE_SIZE = 4

Factory = TypeVar("Factory", bound=Callable[..., Encoder])

_FACTORIES: dict[str, Callable[..., Encoder]] = {}
_CACHE: dict[tuple[Any, ...], Encoder] = {}
_LOCK = threading.Lock()


def register_encoder(name: str) -> Callable[[Factory], Factory]:
    """Register a factory ``(*, device, allow_random, **kwargs) -> Encoder`` under ``name``.

    Raises:
        ValueError: the name is taken or starts with ``timm:``.

    """
    if name in _FACTORIES or name.startswith(TIMM_PREFIX):
        raise ValueError(f"encoder name {name!r} is already taken; pick another name")

    def decorate(factory: Factory) -> Factory:
        _FACTORIES[name] = factory
        return factory

    return decorate


def list_encoders() -> list[str]:
    """Names of the registered encoders (timm backbones and checkpoint paths also work)."""
    return sorted(_FACTORIES)


def clear_encoder_cache() -> None:
    """Forget the encoders :func:`get_encoder` has loaded, so their memory can be freed."""
    with _LOCK:
        _CACHE.clear()


def get_encoder(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    device: str | None = None,
    allow_random: bool = False,
    **kwargs: Any,
) -> Encoder:
    """Get an encoder by name or checkpoint path, loading it once per process and device.

    Args:
        name_or_path: ``None`` for :data:`DEFAULT_ENCODER`; a registered name (see
            :func:`list_encoders`; ``"gleam-c"`` is ConvNeXt-B at 384 px); ``"timm:<arch>"``
            for any timm backbone as a GLEAM-C network; or a checkpoint path (``.safetensors``,
            its ``.json`` card, or a Sample4Geo ``.pth``, which needs ``architecture=``).
        device: device request; ``None`` picks CUDA, then MPS, then CPU.
        allow_random: allow a network without trained weights (for tests and training).
        **kwargs: passed to the factory, e.g. ``checkpoint=`` for GLEAM-C networks, or
            ``architecture=`` and ``img_size=`` for a ``.pth`` path.

    Raises:
        UnknownEncoderError: a name that is neither registered, nor timm, nor a path.
        RandomWeightsError: a network without trained weights and ``allow_random=False``.
        CheckpointError: a checkpoint that is missing or does not fit its network.
        DeviceError: an explicit device that is not available.

    """
    name = DEFAULT_ENCODER if name_or_path is None else os.fspath(name_or_path)
    resolved = select_device(device)
    key = (_identity(name), resolved, allow_random, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    with _LOCK:
        encoder = _CACHE.get(key)
        if encoder is None:
            encoder = _create(name, device=resolved, allow_random=allow_random, **kwargs)
            _CACHE[key] = encoder
            while len(_CACHE) > _CACHE_SIZE:
                del _CACHE[next(iter(_CACHE))]
    return encoder


def _is_path(name: str) -> bool:
    return (
        Path(name).suffix in (WEIGHTS_SUFFIX, CARD_SUFFIX, *PICKLE_SUFFIXES)
        or checkpoint_paths(name)[0].is_file()
    )


def _identity(name: str) -> tuple[Any, ...]:
    """Cache identity of a name: a path is keyed by its weights file as it is now on disk.

    Atomic rewrites replace the file, so the inode changes even within one mtime tick.
    """
    if name in _FACTORIES or name.startswith(TIMM_PREFIX) or not _is_path(name):
        return (name,)
    path = Path(name).resolve()
    weights = path if path.suffix in PICKLE_SUFFIXES else checkpoint_paths(path)[0]
    if not weights.is_file():
        return (str(weights),)
    stat = weights.stat()
    return (str(weights), stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _create(name: str, *, device: str, allow_random: bool, **kwargs: Any) -> Encoder:
    if name in _FACTORIES:
        return _FACTORIES[name](device=device, allow_random=allow_random, **kwargs)
    if name.startswith(TIMM_PREFIX):
        architecture = name.removeprefix(TIMM_PREFIX)
        return _gleam_c(architecture, label=name, device=device, allow_random=allow_random, **kwargs)
    if _is_path(name):
        return _load_path(name, device=device, **kwargs)
    raise UnknownEncoderError(
        f"unknown encoder {name!r}; use one of {', '.join(list_encoders())}, "
        f"'{TIMM_PREFIX}<timm architecture>', or a checkpoint path (.safetensors, .json, .pth)"
    )


def _load_path(
    path: str | os.PathLike[str],
    *,
    device: str,
    architecture: str | None = None,
    img_size: int = GLEAM_C_IMG_SIZE,
) -> Encoder:
    """Load a checkpoint path; ``architecture`` and ``img_size`` describe a ``.pth`` only."""
    if Path(path).suffix not in PICKLE_SUFFIXES:
        return load_checkpoint(path, device=device)
    if architecture is None:
        raise CheckpointError(
            f"{path} is a Sample4Geo-style state dict without a card; pass architecture= "
            "(e.g. get_encoder(path, architecture='convnext_base'))"
        )
    return import_sample4geo(path, architecture, img_size, device=device)


def _gleam_c(
    architecture: str,
    *,
    label: str,
    device: str,
    allow_random: bool,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int = GLEAM_C_IMG_SIZE,
) -> Encoder:
    """Build a GLEAM-C encoder on ``architecture``: from ``checkpoint``, or seeded random weights.

    ``label`` is the name the caller asked for, used in the error message.
    """
    if checkpoint is not None:
        return _load_path(checkpoint, device=device, architecture=architecture, img_size=img_size)
    if not allow_random:
        raise RandomWeightsError(
            f"encoder {label!r} has no trained weights; pass a checkpoint= or allow_random=True for tests"
        )
    card = default_gleam_c_card(
        architecture,
        img_size,
        name=f"gleam-c-{architecture}-{img_size}-random",
        training_data="none: random initialisation (torch seed 0)",
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        network = GleamCNet(architecture, img_size=img_size)
    return TorchEncoder(network, card, device=device)


@register_encoder(GEOEMBED_NAME)
def _geoembed_v3(*, device: str, allow_random: bool) -> Encoder:
    """geoembed-v3 with its pretrained weights (``allow_random`` is moot: they are never random)."""
    return load_geoembed(device=device)


@register_encoder("gleam-c")
def _gleam_c_convnext(
    *,
    device: str,
    allow_random: bool,
    checkpoint: str | os.PathLike[str] | None = None,
    img_size: int = GLEAM_C_IMG_SIZE,
) -> Encoder:
    """GLEAM-C with the paper's backbone, ConvNeXt-B (``convnext_base.fb_in22k_ft_in1k_384`` in timm)."""
    return _gleam_c(
        GLEAM_C_ARCHITECTURE,
        label="gleam-c",
        device=device,
        allow_random=allow_random,
        checkpoint=checkpoint,
        img_size=img_size,
    )

"""GLEAM-C: one timm image backbone shared by satellite chips and every query view.

The network keeps Sample4Geo's layout (the backbone under ``model.``, plus a learnable
``logit_scale``), so Sample4Geo state dicts load into it unchanged once a DataParallel
``module.`` prefix is removed. Backbones are always created without pretrained weights:
weights come from checkpoints, never from a download at run time.
"""

from __future__ import annotations

import math
from types import ModuleType

import torch
from torch import nn

from .._compat.torchvision_shim import import_torchvision
from ..errors import UnknownEncoderError
from .card import IMAGENET_MEAN, IMAGENET_STD, ModelCard

__all__ = ["GleamCNet", "create_backbone", "default_gleam_c_card", "import_timm"]

INITIAL_LOGIT_SCALE = math.log(1 / 0.07)


def import_timm() -> ModuleType:
    """Import timm, first making torchvision importable (see :mod:`gleam_geo._compat`)."""
    import_torchvision()
    import timm

    return timm


def create_backbone(architecture: str, *, img_size: int | None = None, **kwargs: object) -> nn.Module:
    """Create a timm model with random weights.

    Args:
        architecture: a timm model name, optionally with a pretrained tag
            (``convnext_base.fb_in22k_ft_in1k_384``); the tag only selects metadata.
        img_size: input side for architectures with a fixed token grid (ViTs); those are
            also made to accept other input sizes (panoramas). Ignored by CNNs.
        **kwargs: passed to ``timm.create_model`` (e.g. ``num_classes=0``).

    Raises:
        UnknownEncoderError: ``architecture`` is not a timm model.

    """
    timm = import_timm()
    from timm.models import split_model_name_tag

    base, tag = split_model_name_tag(architecture)
    if not timm.is_model(base) or (tag and architecture not in timm.list_pretrained(architecture)):
        raise UnknownEncoderError(
            f"{architecture!r} is not a timm architecture; see timm.list_models() for valid names"
        )
    if img_size is not None:
        # Only token-grid models take these arguments; try the richest form first.
        for extra in ({"img_size": img_size, "dynamic_img_size": True}, {"img_size": img_size}):
            try:
                return timm.create_model(architecture, pretrained=False, **extra, **kwargs)
            except TypeError:
                continue
    return timm.create_model(architecture, pretrained=False, **kwargs)


class GleamCNet(nn.Module):
    """The GLEAM-C retrieval network: a pooled timm backbone and a contrastive temperature.

    Attributes:
        architecture: the timm name the backbone was created from.
        img_size: the input side the backbone was created for (token-grid models only).
        model: the backbone; ``model(x)`` gives pooled ``(N, num_features)`` features.
        logit_scale: log of the InfoNCE inverse temperature, learned in training.

    """

    def __init__(self, architecture: str = "convnext_base", img_size: int | None = None) -> None:
        """Build the network with random weights (load a checkpoint for trained ones)."""
        super().__init__()
        self.architecture = architecture
        self.img_size = img_size
        self.model = create_backbone(architecture, img_size=img_size, num_classes=0)
        self.logit_scale = nn.Parameter(torch.tensor(INITIAL_LOGIT_SCALE))

    @property
    def num_features(self) -> int:
        """Length of the pooled features (the embedding dimension)."""
        return int(self.model.num_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Map normalised ``(N, 3, h, w)`` images to ``(N, num_features)`` features (not normalised)."""
        return self.model(images)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in the backward pass to train larger batches in less memory."""
        self.model.set_grad_checkpointing(enable)


def default_gleam_c_card(
    architecture: str = "convnext_base",
    img_size: int = 384,
    *,
    name: str | None = None,
    training_data: str = "",
    license: str = "",
) -> ModelCard:
    """Describe a GLEAM-C network in a card: square inputs of ``img_size``, panoramas twice as wide.

    The embedding length is read from the backbone, built on the meta device so nothing
    is allocated. Normalisation follows the architecture's timm metadata (ImageNet for
    ConvNeXt).
    """
    with torch.device("meta"):
        backbone = create_backbone(architecture, img_size=img_size, num_classes=0)
    pretrained_cfg = getattr(backbone, "pretrained_cfg", None) or {}
    sizes = {view: (img_size, img_size) for view in ("satellite", "uav", "street_map", "ground")}
    sizes["panorama"] = (img_size, 2 * img_size)
    return ModelCard(
        name=name or f"gleam-c-{architecture}-{img_size}",
        architecture=architecture,
        embed_dim=int(backbone.num_features),
        image_size=sizes,
        mean=tuple(pretrained_cfg.get("mean", IMAGENET_MEAN)),
        std=tuple(pretrained_cfg.get("std", IMAGENET_STD)),
        gsd_m=0.5,
        chip_size_px=img_size,
        training_data=training_data,
        license=license,
        extra={"img_size": img_size},
    )

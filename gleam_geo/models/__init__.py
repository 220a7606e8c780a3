"""Retrieval encoders: one image encoder shared by satellite chips and every query view.

``get_encoder()`` returns an :class:`Encoder` by name or checkpoint path. The default,
``geoembed-v3``, runs offline on real pretrained weights; ``gleam-c`` (ConvNeXt-B) and
``timm:<arch>`` are GLEAM-C networks that need a trained checkpoint. Importing this
package imports torch; timm loads on the first network built.
"""

from __future__ import annotations

from .base import Encoder
from .card import ModelCard
from .checkpoint import (
    build_network,
    import_sample4geo,
    load_checkpoint,
    register_architecture,
    save_checkpoint,
)
from .device import autocast, default_batch_size, select_device
from .geoembed import GeoEmbedNet, geoembed_card, load_geoembed
from .gleam_c import GleamCNet, default_gleam_c_card
from .loss import InfoNCELoss, gather_features
from .registry import DEFAULT_ENCODER, clear_encoder_cache, get_encoder, list_encoders, register_encoder
from .torch_encoder import TorchEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "GeoEmbedNet",
    "GleamCNet",
    "InfoNCELoss",
    "ModelCard",
    "TorchEncoder",
    "autocast",
    "build_network",
    "clear_encoder_cache",
    "default_batch_size",
    "default_gleam_c_card",
    "gather_features",
    "geoembed_card",
    "get_encoder",
    "import_sample4geo",
    "list_encoders",
    "load_checkpoint",
    "load_geoembed",
    "register_architecture",
    "register_encoder",
    "save_checkpoint",
    "select_device",
]

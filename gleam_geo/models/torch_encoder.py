"""The :class:`~gleam_geo.models.base.Encoder` implementation for any torch network.

The network maps a normalised ``(N, 3, h, w)`` float tensor to ``(N, D)`` features; this
wrapper adds the numpy preprocessing the card describes, device placement, mixed
precision, batching and the L2 normalisation, so every model behaves the same way.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
from ..records import View
from .card import ModelCard
from .device import autocast, default_batch_size, select_device

__all__ = ["TorchEncoder", "sha256_file", "state_dict_bytes", "weights_checksum"]


def state_dict_bytes(network: nn.Module) -> bytes:
    """Serialise ``network``'s state dict as safetensors bytes (keys sorted, tensors on CPU).

    The same bytes are what :func:`~gleam_geo.models.checkpoint.save_checkpoint` writes.
    """
    tensors = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    return safetensors.torch.save(dict(sorted(tensors.items())))


def weights_checksum(network: nn.Module) -> str:
    """SHA-256 of the network's weights; equals the checksum of its saved checkpoint file."""
    return hashlib.sha256(state_dict_bytes(network)).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class TorchEncoder:
    """An encoder around a torch network that maps normalised images to feature vectors.

    Attributes:
        card: the model card (input sizes, normalisation, embedding length).
        model_id: ``card.name``, recorded in indexes built with this encoder.
        checksum: SHA-256 identifying the weights.
        device: the torch device the network runs on.
        network: the wrapped network, in eval mode on ``device`` (channels-last, which
            convolutions run faster in).
        batch_size: most images per forward pass, or ``None`` to choose it per input size
            with :func:`~gleam_geo.models.device.default_batch_size`.

    """

    def __init__(
        self,
        network: nn.Module,
        card: ModelCard,
        *,
        device: str | None = "auto",
        checksum: str | None = None,
        batch_size: int | None = None,
    ) -> None:
        """Wrap ``network``.

        Args:
            network: maps a float ``(N, 3, h, w)`` tensor to ``(N, card.embed_dim)`` features.
            card: how to feed the network and what it returns.
            device: device request, resolved by :func:`~gleam_geo.models.device.select_device`.
            checksum: weights checksum; computed from the state dict when not given.
            batch_size: images per forward pass; by default chosen for the device and the
                size of each batch's images.

        """
        self.card = card
        self.model_id = card.name
        self.checksum = checksum if checksum is not None else weights_checksum(network)
        self.device = select_device(device)
        self.network = network.to(self.device, memory_format=torch.channels_last).eval()
        self.batch_size = batch_size
        mean = np.asarray(card.mean, dtype=np.float32).reshape(-1, 1)
        std = np.asarray(card.std, dtype=np.float32).reshape(-1, 1)
        levels = np.arange(256, dtype=np.float32)
        # ((x / 255 - mean) / std) for every uint8 level and channel, computed as it was per pixel.
        self._lut = np.ascontiguousarray(
            np.broadcast_to((levels / np.float32(255.0) - mean) / std, (3, 256)), dtype=np.float32
        )

    @property
    def embed_dim(self) -> int:
        """Length of the embedding vectors."""
        return self.card.embed_dim

    def __repr__(self) -> str:
        return f"TorchEncoder({self.model_id!r}, dim={self.embed_dim}, device={self.device!r})"

    def images_per_pass(self, height: int, width: int) -> int:
        """Images of ``height`` x ``width`` pixels that one forward pass takes."""
        if self.batch_size is not None:
            return self.batch_size
        return default_batch_size(self.device, round((height * width) ** 0.5))

    def preprocess(self, image: np.ndarray, view: View) -> np.ndarray:
        """Resize an RGB uint8 ``(H, W, 3)`` image to the view's input size and normalise it.

        Pure numpy/OpenCV, so reader threads can call it while the network runs. Shrinking
        uses area averaging (no aliasing), enlarging uses bilinear interpolation. The
        normalisation ``(x / 255 - mean) / std`` is a per-channel lookup table applied to
        each colour plane, written straight into the channels-first result; a
        channels-last view of planes (as :func:`~gleam_geo.raster.iter_chip_batches` passes)
        is read without any copy.

        Returns:
            A float32 ``(3, h, w)`` array with ``(h, w) = card.input_size(view)``.

        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}; "
                "convert it with gleam_geo.io.load_image"
            )
        height, width = self.card.input_size(view)
        if image.shape[:2] != (height, width):
            shrinking = height * width < image.shape[0] * image.shape[1]
            image = cv2.resize(
                np.ascontiguousarray(image),
                (width, height),
                interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
            )
        planes = image.transpose(2, 0, 1)
        if planes.strides[2] != planes.itemsize:  # interleaved pixels: split into planes first
            planes = cv2.split(np.ascontiguousarray(image))
        out = np.empty((3, height, width), dtype=np.float32)
        for channel, plane in enumerate(planes):
            cv2.LUT(plane, self._lut[channel], dst=out[channel])
        return out

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed a preprocessed float32 ``(N, 3, h, w)`` batch into ``(N, D)`` unit vectors.

        Runs :meth:`images_per_pass` images at a time under inference mode and the device's mixed
        precision; the normalisation is done in float32.
        """
        batch = np.asarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, h, w) batch, got shape {batch.shape}; use preprocess()")
        out = np.empty((batch.shape[0], self.embed_dim), dtype=np.float32)
        step = self.images_per_pass(batch.shape[2], batch.shape[3])
        with torch.inference_mode():
            for start in range(0, batch.shape[0], step):
                piece = torch.from_numpy(np.ascontiguousarray(batch[start : start + step]))
                with autocast(self.device):
                    features = self.network(piece.to(self.device, memory_format=torch.channels_last))
                if features.ndim != 2 or features.shape[1] != self.embed_dim:
                    shape = tuple(features.shape)
                    raise CheckpointError(
                        f"network {self.card.architecture} returns features of shape {shape}, "
                        f"card {self.card.name} says {self.embed_dim}-d; fix embed_dim in the card"
                    )
                unit = F.normalize(features.float(), dim=1)
                out[start : start + piece.shape[0]] = unit.cpu().numpy()
        return out

    def embed_images(self, images: Sequence[np.ndarray], view: View) -> np.ndarray:
        """Preprocess and embed RGB uint8 images of one view; returns ``(N, D)`` unit vectors."""
        step = self.images_per_pass(*self.card.input_size(view))
        parts = [
            self.embed_batch(np.stack([self.preprocess(image, view) for image in images[i : i + step]]))
            for i in range(0, len(images), step)
        ]
        if not parts:
            return np.empty((0, self.embed_dim), dtype=np.float32)
        return np.concatenate(parts)

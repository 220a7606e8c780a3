"""Model cards: the metadata that travels with every encoder checkpoint.

A checkpoint is ``<name>.safetensors`` plus ``<name>.json`` (this card). The card says
how to build the network and how to feed it, so a checkpoint loads without code changes.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..records import VIEWS, View

__all__ = ["ModelCard", "CARD_FORMAT_VERSION"]

CARD_FORMAT_VERSION = 1

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _default_sizes() -> dict[View, tuple[int, int]]:
    sizes: dict[View, tuple[int, int]] = {view: (384, 384) for view in VIEWS}
    sizes["panorama"] = (384, 768)
    return sizes


@dataclass
class ModelCard:
    """What an encoder is and how to feed it.

    Attributes:
        name: model id, recorded in every index built with it.
        architecture: timm model name (or a registered builder name) of the backbone.
        embed_dim: length of the L2-normalised embedding.
        image_size: input (height, width) per view, in pixels.
        mean: per-channel normalisation mean, for RGB in [0, 1].
        std: per-channel normalisation std.
        gsd_m: ground sampling distance the reference chips should have, in metres/pixel.
        chip_size_px: reference chip size the tiler should cut, in pixels.
        training_data: free text naming what the weights were trained on.
        license: licence of the weights.
        extra: builder-specific options (e.g. head type).
    """

    name: str
    architecture: str
    embed_dim: int
    image_size: dict[View, tuple[int, int]] = field(default_factory=_default_sizes)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    gsd_m: float = 0.3
    chip_size_px: int = 384
    training_data: str = ""
    license: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = CARD_FORMAT_VERSION

    def input_size(self, view: View) -> tuple[int, int]:
        """Input (height, width) for ``view``; unknown views fall back to satellite."""
        return tuple(self.image_size.get(view, self.image_size["satellite"]))  # type: ignore[return-value]

    def to_json(self) -> str:
        """Serialise to pretty JSON."""
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "model card") -> ModelCard:
        """Build a card from parsed JSON, with a clear error for missing or unknown fields."""
        missing = {"name", "architecture", "embed_dim"} - data.keys()
        if missing:
            raise CheckpointError(
                f"{source} lacks {', '.join(sorted(missing))}; write the card with ModelCard.save()"
            )
        if int(data.get("format_version", 1)) > CARD_FORMAT_VERSION:
            raise CheckpointError(
                f"{source} has format_version {data['format_version']}, newer than this gleam_geo "
                f"understands ({CARD_FORMAT_VERSION}); upgrade gleam_geo"
            )
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        if "image_size" in kwargs:
            kwargs["image_size"] = {v: tuple(s) for v, s in kwargs["image_size"].items()}
        for key in ("mean", "std"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        """Read a card from a JSON file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(
                f"model card {path} not found; a checkpoint needs its .json card beside the .safetensors"
            ) from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"model card {path} is not valid JSON ({exc.msg}); re-export it") from None
        return cls.from_dict(data, source=str(path))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the card atomically."""
        from ..io.atomic import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n")

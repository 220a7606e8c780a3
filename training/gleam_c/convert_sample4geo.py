"""Convert a Sample4Geo ``.pth`` state dict into a gleam_geo checkpoint.

``python -m training.gleam_c.convert_sample4geo WEIGHTS.pth --architecture convnext_base --out DIR/name``
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from gleam_geo.models import import_sample4geo
from gleam_geo.models.checkpoint import checkpoint_paths

__all__ = ["main"]

logger = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: write ``<out>.safetensors`` and ``<out>.json``; return the weights path."""
    parser = argparse.ArgumentParser(
        prog="python -m training.gleam_c.convert_sample4geo", description=__doc__
    )
    parser.add_argument("weights", help="Sample4Geo state dict (.pth), DataParallel prefix allowed")
    parser.add_argument("--architecture", required=True, help="timm backbone it was trained with")
    parser.add_argument("--img-size", type=int, default=384, help="square input side it was trained at")
    parser.add_argument("--out", required=True, help="checkpoint stem, .safetensors or .json path")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    encoder = import_sample4geo(args.weights, args.architecture, args.img_size, out=args.out, device="cpu")
    weights, _ = checkpoint_paths(args.out)
    logger.info("wrote %s (%s, sha256 %s)", weights, encoder.model_id, encoder.checksum)
    return weights


if __name__ == "__main__":
    main()

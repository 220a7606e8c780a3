"""Retrieval evaluation: Recall@k, Recall@1%, AP (University-1652 protocol) and hit rate (VIGOR).

``python -m training.gleam_c.evaluate --checkpoint CKPT --source SOURCE.yaml --out DIR``
embeds a test set with the library's encoder and writes ``metrics.json`` and ``metrics.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml

from gleam_geo.models import GleamCNet, TorchEncoder, default_gleam_c_card, load_checkpoint

from .datasets.base import RetrievalSet
from .datasets.specs import build_retrieval
from .params import parse_overrides

__all__ = ["average_precision", "embed_retrieval", "evaluate", "main", "retrieval_metrics", "write_metrics"]

logger = logging.getLogger(__name__)

_CHUNK = 256


def average_precision(positive_ranks: np.ndarray) -> float:
    """AP of one query from the 0-based ranks of its positives (University-1652's trapezoid rule)."""
    ranks = np.sort(positive_ranks)
    if len(ranks) == 0:
        return 0.0
    hits = np.arange(1, len(ranks) + 1)
    precision = hits / (ranks + 1)
    previous = np.where(ranks > 0, (hits - 1) / np.maximum(ranks, 1), 1.0)
    return float(np.sum((previous + precision) / 2) / len(ranks))


def retrieval_metrics(
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    positives: Sequence[np.ndarray],
    semi_positives: Sequence[np.ndarray] | None = None,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, float]:
    """Rank the gallery for every query by cosine similarity and score the ranking.

    Args:
        query_vectors: ``(Q, D)`` unit vectors.
        gallery_vectors: ``(G, D)`` unit vectors.
        positives: per query, the gallery indices that are correct.
        semi_positives: per query, further indices that count for ``hit_rate`` (VIGOR).
        ks: the k of each ``R@k``.

    Returns:
        ``R@k`` for each k, ``R@1%`` and ``AP`` in percent, ``hit_rate`` in percent when
        semi-positives are given, and the counts ``queries`` and ``gallery``.

    """
    one_percent = max(1, math.ceil(len(gallery_vectors) / 100))
    first_hit = np.empty(len(query_vectors), dtype=np.int64)
    top1 = np.empty(len(query_vectors), dtype=np.int64)
    aps = np.empty(len(query_vectors))
    gallery = torch.from_numpy(np.ascontiguousarray(gallery_vectors, dtype=np.float32))
    for start in range(0, len(query_vectors), _CHUNK):
        scores = torch.from_numpy(
            np.ascontiguousarray(query_vectors[start : start + _CHUNK], dtype=np.float32)
        )
        order = (scores @ gallery.T).argsort(dim=1, descending=True).numpy()
        for row, ranking in enumerate(order):
            index = start + row
            rank_of = np.empty(len(ranking), dtype=np.int64)
            rank_of[ranking] = np.arange(len(ranking))
            ranks = rank_of[np.asarray(positives[index], dtype=np.int64)]
            first_hit[index] = ranks.min() if len(ranks) else len(ranking)
            top1[index] = ranking[0]
            aps[index] = average_precision(ranks)
    metrics = {f"R@{k}": float(np.mean(first_hit < k) * 100) for k in ks}
    metrics["R@1%"] = float(np.mean(first_hit < one_percent) * 100)
    metrics["AP"] = float(aps.mean() * 100)
    if semi_positives is not None:
        hits = [top1[i] in set(positives[i]) | set(semi_positives[i]) for i in range(len(top1))]
        metrics["hit_rate"] = float(np.mean(hits) * 100)
    metrics["queries"] = len(query_vectors)
    metrics["gallery"] = len(gallery_vectors)
    return metrics


def embed_retrieval(encoder: TorchEncoder, test_set: RetrievalSet) -> tuple[np.ndarray, np.ndarray]:
    """Embed a test set's queries (each with its own view) and gallery with ``encoder``."""
    queries = np.empty((len(test_set.queries), encoder.embed_dim), dtype=np.float32)
    views = np.asarray([record.view for record in test_set.queries])
    for view in np.unique(views):
        indices = np.flatnonzero(views == view)
        for start in range(0, len(indices), _CHUNK):
            chunk = indices[start : start + _CHUNK]
            queries[chunk] = encoder.embed_images([test_set.query_image(int(i)) for i in chunk], str(view))
    gallery = np.concatenate(
        [
            encoder.embed_images(
                [test_set.gallery_image(j) for j in range(start, min(start + _CHUNK, len(test_set.gallery)))],
                test_set.gallery_view,
            )
            for start in range(0, len(test_set.gallery), _CHUNK)
        ]
    )
    return queries, gallery


def evaluate(encoder: TorchEncoder, test_set: RetrievalSet) -> dict[str, float]:
    """Embed ``test_set`` and return its :func:`retrieval_metrics` (hit rate when it has semi-positives)."""
    queries, gallery = embed_retrieval(encoder, test_set)
    by_group: dict[str, list[int]] = {}
    for index, group in enumerate(test_set.gallery_groups):
        by_group.setdefault(group, []).append(index)
    by_key = {key: index for index, key in enumerate(test_set.gallery)}
    positives = [np.asarray(by_group.get(record.group, []), dtype=np.int64) for record in test_set.queries]
    has_semi = any(record.semi_positives for record in test_set.queries)
    semi = (
        [np.asarray([by_key[k] for k in record.semi_positives if k in by_key]) for record in test_set.queries]
        if has_semi
        else None
    )
    return retrieval_metrics(queries, gallery, positives, semi)


def write_metrics(metrics: dict[str, float], out_dir: str | Path, title: str) -> tuple[Path, Path]:
    """Write ``metrics.json`` and a one-table ``metrics.md`` into ``out_dir``; return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps({"title": title, **metrics}, indent=2) + "\n")
    header = "| " + " | ".join(metrics) + " |"
    rule = "|" + "---|" * len(metrics)
    values = (
        "| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in metrics.values()) + " |"
    )
    md_path.write_text(f"# {title}\n\n{header}\n{rule}\n{values}\n")
    return json_path, md_path


def _encoder(args: argparse.Namespace) -> TorchEncoder:
    if args.checkpoint:
        return load_checkpoint(args.checkpoint, device=args.device)
    torch.manual_seed(args.seed)
    card = default_gleam_c_card(args.untrained, args.img_size, name=f"untrained-{args.untrained}")
    return TorchEncoder(GleamCNet(args.untrained, args.img_size), card, device=args.device)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Command line: evaluate a checkpoint (or a randomly initialised baseline) on a test source."""
    parser = argparse.ArgumentParser(prog="python -m training.gleam_c.evaluate", description=__doc__)
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="gleam_geo checkpoint (.safetensors, .json or stem)")
    model.add_argument("--untrained", metavar="ARCH", help="baseline: a randomly initialised timm backbone")
    parser.add_argument("--img-size", type=int, default=384, help="input side of the --untrained baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --untrained baseline's weights")
    parser.add_argument("--source", required=True, help="YAML file with one test source mapping")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override source keys")
    parser.add_argument("--out", required=True, help="folder for metrics.json and metrics.md")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    spec = {**(yaml.safe_load(Path(args.source).read_text()) or {}), **parse_overrides(args.set)}
    encoder = _encoder(args)
    metrics = evaluate(encoder, build_retrieval(spec, encoder.card))
    paths = write_metrics(metrics, args.out, f"{encoder.model_id} on {spec['type']}")
    logger.info("%s -> %s", json.dumps(metrics), ", ".join(map(str, paths)))
    return metrics


if __name__ == "__main__":
    main()

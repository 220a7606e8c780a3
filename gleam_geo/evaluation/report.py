"""The accuracy report: a markdown table per suite, an error CDF and worked examples as PNGs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..refine import Refinement
from .metrics import QueryOutcome, summarize
from .queries import Query

__all__ = ["draw_example", "plot_error_cdf", "write_report"]

_COLUMNS = (
    ("R@1", "R@1", "{:.0%}"),
    ("R@5", "R@5", "{:.0%}"),
    ("R@10", "R@10", "{:.0%}"),
    ("median_error_m", "median err (m)", "{:.2f}"),
    ("p90_error_m", "p90 err (m)", "{:.2f}"),
    ("median_heading_error_deg", "heading err (deg)", "{:.1f}"),
    ("failure_rate", "failures", "{:.0%}"),
    ("seconds_per_query", "s/query", "{:.2f}"),
    ("ece", "ECE", "{:.3f}"),
    ("brier", "Brier", "{:.3f}"),
    ("radius_coverage", "radius coverage", "{:.0%}"),
    ("out_of_index_prob", "median match_prob (not in index)", "{:.3f}"),
    ("out_of_index_max_prob", "max match_prob (not in index)", "{:.3f}"),
)


def _cell(summary: Mapping[str, float], key: str, fmt: str) -> str:
    value = summary.get(key, math.nan)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def plot_error_cdf(results: Mapping[str, Sequence[QueryOutcome]], path: Path) -> None:
    """Cumulative distribution of the top-1 position error, one line per suite."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for name, outcomes in results.items():
        errors = np.sort([o.error_m for o in outcomes if o.in_index])
        if len(errors):
            axes.step(errors, np.arange(1, len(errors) + 1) / len(errors), where="post", label=name)
    axes.set_xscale("log")
    axes.set_xlabel("top-1 position error (m)")
    axes.set_ylabel("fraction of queries")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def draw_example(query: Query, refinement: Refinement, path: Path) -> bool:
    """Draw the query beside its reference patch with the inlier matches; False if nothing to draw."""
    if refinement.patch is None or refinement.verification is None:
        return False
    left, right = query.pixels, refinement.patch.pixels
    height = max(left.shape[0], right.shape[0])
    canvas = np.zeros((height, left.shape[1] + right.shape[1], 3), np.uint8)
    canvas[: left.shape[0], : left.shape[1]] = left
    canvas[: right.shape[0], left.shape[1] :] = right
    v = refinement.verification
    for (qx, qy), (rx, ry) in zip(v.query_points[:200], v.reference_points[:200], strict=True):
        start, end = (round(qx), round(qy)), (round(rx) + left.shape[1], round(ry))
        cv2.line(canvas, start, end, (0, 255, 0), 1, cv2.LINE_AA)
    text = f"inliers {refinement.inliers}  p={refinement.match_prob:.2f}"
    cv2.putText(canvas, text, (5, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), canvas[:, :, ::-1])
    return True


def write_report(
    results: Mapping[str, Sequence[QueryOutcome]],
    examples: Mapping[str, Sequence[tuple[Query, Refinement]]],
    out_dir: str | Path,
    *,
    header: str = "",
    extra: Mapping[str, Mapping[str, float]] | None = None,
    reliability: Sequence[tuple[float, float, int, float, float]] = (),
) -> Path:
    """Write ``report.md``, ``accuracy_error_cdf.png`` and ``accuracy_example_*.png`` to ``out_dir``.

    Args:
        results: outcomes per suite.
        examples: (query, refinement) pairs per suite to draw.
        out_dir: output folder.
        header: a line under the title.
        extra: more summary values per suite (``ece``, ``brier``, ``radius_coverage``).
        reliability: rows of :func:`~gleam_geo.evaluation.metrics.reliability_table`, over
            every suite's candidates.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Accuracy report", "", header, ""] if header else ["# Accuracy report", ""]
    lines.append("| suite | queries | " + " | ".join(title for _, title, _ in _COLUMNS) + " |")
    lines.append("|---" * (len(_COLUMNS) + 2) + "|")
    for name, outcomes in results.items():
        summary = {**summarize(outcomes), **(extra or {}).get(name, {})}
        count = len(outcomes)
        cells = [_cell(summary, key, fmt) for key, _, fmt in _COLUMNS]
        lines.append(f"| {name} | {count} | " + " | ".join(cells) + " |")
    if reliability:
        lines += ["", "Reliability of match_prob (all suites' refined candidates):", ""]
        lines += ["| match_prob bin | candidates | mean match_prob | fraction right |", "|---|---|---|---|"]
        lines += [f"| {lo:.1f}-{hi:.1f} | {n} | {p:.3f} | {f:.3f} |" for lo, hi, n, p, f in reliability]
    plot_error_cdf(results, out / "accuracy_error_cdf.png")
    lines += ["", "![error CDF](accuracy_error_cdf.png)", ""]
    for name, pairs in examples.items():
        for i, (query, refinement) in enumerate(pairs[:1]):
            path = out / f"accuracy_example_{name}_{i}.png"
            if draw_example(query, refinement, path):
                lines += [f"![{name} example]({path.name})", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return report

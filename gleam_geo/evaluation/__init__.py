"""Accuracy harness: synthetic query views from real rasters, suites, metrics and reports."""

from .harness import SUITES, Suite, evaluate, fit_from_outcomes, open_suite_index, run_suite
from .metrics import QueryOutcome, expected_calibration_error, summarize
from .queries import Query, ViewSpec, render_view, sample_specs
from .report import draw_example, plot_error_cdf, write_report

__all__ = [
    "SUITES",
    "Query",
    "QueryOutcome",
    "Suite",
    "ViewSpec",
    "draw_example",
    "evaluate",
    "expected_calibration_error",
    "fit_from_outcomes",
    "open_suite_index",
    "plot_error_cdf",
    "render_view",
    "run_suite",
    "sample_specs",
    "summarize",
    "write_report",
]

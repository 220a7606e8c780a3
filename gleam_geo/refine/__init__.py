"""Coarse-to-fine refinement: local feature matching, geometric verification, calibration."""

from .calibration import Calibration, fit_calibration, load_calibration
from .geometry import Projection, Verification, estimate_homography, project_query
from .matchers import Features, LocalMatcher, Matches, SiftMatcher
from .patch import ReferencePatch, read_patch
from .refiner import Refinement, Refiner
from .retrieval import rotated_views, search_rotations

__all__ = [
    "Calibration",
    "Features",
    "LocalMatcher",
    "Matches",
    "Projection",
    "ReferencePatch",
    "Refinement",
    "Refiner",
    "SiftMatcher",
    "Verification",
    "estimate_homography",
    "fit_calibration",
    "load_calibration",
    "project_query",
    "read_patch",
    "rotated_views",
    "search_rotations",
]

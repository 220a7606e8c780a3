"""Shared helpers for the benchmarks: timing, memory sampling, sample data, reporting.

The benchmark scripts run as plain files (``python benchmarks/run_all.py``); importing
this module first puts the repository root on ``sys.path`` when gleam_geo is not installed.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if importlib.util.find_spec("gleam_geo") is None:
    sys.path.insert(0, str(ROOT))

DATA_DIR = Path(os.environ.get("GLEAM_GEO_DATA", "/work/shared/data"))
"""The sample rasters (read-only); override with ``$GLEAM_GEO_DATA``."""

MIB = 1024 * 1024


def data_file(relative: str) -> Path:
    """Path of a sample raster, e.g. ``data_file("oam_tcd/manila_10cm.tif")``."""
    path = DATA_DIR / relative
    if not path.is_file():
        raise FileNotFoundError(f"sample raster {path} is missing; point GLEAM_GEO_DATA at the sample data")
    return path


def warm_file_cache(paths: Sequence[Path]) -> None:
    """Read every file once so the first timed pass does not pay for disk reads."""
    for path in paths:
        with open(path, "rb") as stream:
            while stream.read(1 << 22):
                pass


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run ``fn`` once; return ``(seconds, result)``."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc), so RSS peaks start clean."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its reaped children (e.g. DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class MemoryPeak:
    """Peak resident memory seen while sampling, in MiB.

    ``total`` is this process plus all its children (e.g. DataLoader workers). Forked
    children share copy-on-write pages with the parent and RSS counts them in each, so
    ``total`` is an upper bound on the real footprint.
    """

    baseline: float = 0.0
    process: float = 0.0
    children: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "baseline_mib": round(self.baseline, 1),
            "peak_process_mib": round(self.process, 1),
            "peak_children_mib": round(self.children, 1),
            "peak_total_mib": round(self.total, 1),
        }


@contextlib.contextmanager
def sample_memory(interval_s: float = 0.05) -> Iterator[MemoryPeak]:
    """Sample RSS of this process and its children in a background thread until the block exits."""
    process = psutil.Process()
    peak = MemoryPeak(baseline=process.memory_info().rss / MIB)
    stop = threading.Event()

    def sample() -> None:
        own = process.memory_info().rss / MIB
        children = 0.0
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss / MIB
        peak.process = max(peak.process, own)
        peak.children = max(peak.children, children)
        peak.total = max(peak.total, own + children)

    def loop() -> None:
        while not stop.wait(interval_s):
            sample()

    thread = threading.Thread(target=loop, name="bench-memory", daemon=True)
    sample()
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        sample()


@dataclass
class Row:
    """One line of the printed summary table."""

    section: str
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass
class Report:
    """Collects summary rows and the detailed results of every benchmark."""

    rows: list[Row] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, name: str, value: float, unit: str, note: str = "") -> None:
        self.rows.append(Row(section, name, value, unit, note))

    def table(self) -> str:
        """The rows as a fixed-width text table."""
        width = max([len(f"{row.section} / {row.name}") for row in self.rows] + [10])
        lines = []
        for row in self.rows:
            label = f"{row.section} / {row.name}"
            value = f"{row.value:,.3f}" if abs(row.value) < 100 else f"{row.value:,.1f}"
            lines.append(f"{label:<{width}}  {value:>12} {row.unit:<10} {row.note}".rstrip())
        return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    """CPU, memory, library versions and load, recorded with every result file."""
    import faiss
    import numpy
    import rasterio
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 1024**3, 1),
        "load_average_1_5_15": [round(v, 2) for v in os.getloadavg()],
        "numpy": numpy.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "faiss": faiss.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }
    with contextlib.suppress(Exception):
        info["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    with contextlib.suppress(Exception):
        from torchgeo_path import import_torchgeo

        info["torchgeo"] = import_torchgeo().__version__
    return info


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` as indented JSON, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")


def round_floats(value: Any, digits: int = 4) -> Any:
    """Round every float in nested dicts and lists (for readable JSON)."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {key: round_floats(item, digits) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(item, digits) for item in value]
    return value

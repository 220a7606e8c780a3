"""The gleam_geo worker: the library behind a line-delimited JSON protocol.

Hosts that must not load the ML stack into their own process (QGIS above all) start
``<python> -m gleam_geo.worker`` in the environment where gleam_geo is installed and talk
to it through its stdin and stdout, one JSON object per line (UTF-8).

Protocol (version 1):

* On start the worker writes ``{"id": null, "event": "ready", "protocol": 1, "gleam_geo": "x.y.z"}``.
* Requests: ``{"id": <str|int>, "method": <str>, "params": {...}}``. Requests run one at a
  time, in order; ``cancel`` is handled at once, even while another request runs.
* Events for a request carry its ``id``:

  - ``{"id", "event": "progress", "stage": str, "done": int, "total": int|null}``;
  - ``{"id", "event": "result", "result": {...}}``, the last event of a request that worked;
  - ``{"id", "event": "error", "error_type": str, "message": str}``, the last event of one
    that did not. ``message`` is one line (the library's own message: cause, then fix);
    ``error_type`` the exception's class name (``CancelledError`` when cancelled,
    ``ProtocolError`` for a request the worker cannot read, then with ``id`` null when it
    has none). The worker keeps running after an error.

* Methods (params in brackets, ``?`` optional):

  - ``ping`` () -> ``{"pong": true, "protocol", "gleam_geo", "pid"}``
  - ``environment`` () -> python, executable, gleam_geo, torch, cuda, device, gpu, faiss,
    encoders, ``ok`` and ``problems`` (why the ML stack is not usable, when it is not)
  - ``build_index`` (rasters, out_dir, encoder?, tiling?, factory?, overwrite?, device?)
    -> index summary. The index is built in ``.<name>.partial`` beside ``out_dir`` and
    moved into place only when complete, so a cancelled or killed build leaves no index.
  - ``add_to_index`` (index, rasters, encoder?) -> index summary plus ``added``;
    works on a copy that replaces the index only when complete.
  - ``index_info`` (index) -> index summary: ``GeoIndex.info()`` plus ``path`` and ``chips``
  - ``localize`` (images, index? | rasters?, region?, modality?, top_k?, encoder?, device?,
    refine?, query_gsd_m?, explain?, language?, explain_backend?, figure_dir?, chip_dir?,
    chip_size_px?)
    -> ``{"results": FeatureCollection,
    "failed": [{"image", "error_type", "message"}], "notes": [...], "created_at"}``.
    ``region`` is null (everything) or ``{"wkt": str, "crs": str}``. Features are in
    EPSG:4326 with the :mod:`gleam_geo.schema` columns as properties, ``footprint`` as a
    GeoJSON geometry and, with ``chip_dir``, ``chip_image_path`` (a PNG of the matched chip).
    ``refine``, ``query_gsd_m`` (the photos' metres per pixel, when known), ``explain``
    (true, false or null for the library default), ``language``, ``explain_backend`` and
    ``figure_dir`` reach ``localize()`` only if it takes them; asking
    for one it lacks adds a line to ``notes``. The explainer's endpoint and API key come from
    the worker's environment (``GLEAM_GEO_LLM_*``), never from requests.
  - ``cancel`` (id) -> ``{"cancelled": bool}``: stops request ``id`` at its next progress
    step, which then ends with a ``CancelledError`` error event.
  - ``shutdown`` () -> ``{"bye": true}``; the worker finishes the requests queued before it
    and exits. It does the same at the end of its input. When stdout breaks (the host is
    gone), the running request is cancelled and the worker exits.

Stdout carries protocol lines only: the worker points file descriptor 1 and ``sys.stdout``
at stderr before anything else runs, so prints and warnings from the libraries it loads
(and from C code) end up on stderr. torch, faiss and rasterio load on the first request
that needs them.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import platform
import queue
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from ._version import __version__
from .errors import CancelledError, GleamGeoError

__all__ = ["PROTOCOL_VERSION", "ProtocolError", "Worker", "main", "staging_dir"]

PROTOCOL_VERSION = 1

log = logging.getLogger(__name__)

# At most this many progress events per second per request (first and last always go out).
_PROGRESS_PER_S = 10.0
_END = object()

ProgressFn = Callable[[str, int, int | None], bool]
"""The progress callback the worker hands to the library (see :mod:`gleam_geo.progress`)."""


class ProtocolError(GleamGeoError, ValueError):
    """A request the worker cannot read: bad JSON, a missing field or an unknown method."""


def staging_dir(target: str | os.PathLike[str]) -> Path:
    """Return where an index bound for ``target`` is written until it is complete."""
    target = Path(target)
    return target.parent / f".{target.name}.partial"


def one_line(exc: BaseException) -> str:
    """Return the exception's message on one line (its class name when it has no message)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@dataclass
class Request:
    """A request being served: its id, method, params and its cancel flag."""

    id: Any
    method: str
    params: dict[str, Any]
    cancelled: threading.Event = field(default_factory=threading.Event)


class Output:
    """Writes protocol lines to the real stdout, one whole line at a time, from any thread."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self.host_gone = threading.Event()
        """Set once a write fails: nobody reads the results any more, so work should stop."""

    def send(self, message: dict[str, Any]) -> None:
        """Write ``message`` as one JSON line and flush it."""
        from .results_geojson import json_safe

        line = json.dumps(json_safe(message), allow_nan=False, ensure_ascii=False)
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the host went away; nothing left to tell it
                self.host_gone.set()


class Worker:
    """Serves requests: reads them on a thread, runs them one by one on the caller's thread."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self._queue: queue.Queue[Any] = queue.Queue()
        self._active: dict[Any, Request] = {}
        self._lock = threading.Lock()
        self._handlers: dict[str, Callable[[Request], dict[str, Any]]] = {
            "ping": self.ping,
            "environment": self.environment,
            "build_index": self.build_index,
            "add_to_index": self.add_to_index,
            "index_info": self.index_info,
            "localize": self.localize,
        }

    # -- serving --------------------------------------------------------------------

    def serve(self, lines: Iterable[str]) -> int:
        """Answer requests from ``lines`` until a ``shutdown`` request or the end of input."""
        self.output.send(
            {"id": None, "event": "ready", "protocol": PROTOCOL_VERSION, "gleam_geo": __version__}
        )
        reader = threading.Thread(target=self._read, args=(lines,), name="gleam-worker-reader", daemon=True)
        reader.start()
        while True:
            request = self._queue.get()
            if request is _END or self.output.host_gone.is_set():
                return 0
            try:
                self._run(request)
            finally:
                with self._lock:
                    self._active.pop(request.id, None)

    def _read(self, lines: Iterable[str]) -> None:
        """Parse requests; handle ``cancel`` and ``shutdown`` at once, queue the rest."""
        for line in lines:
            if not line.strip():
                continue
            try:
                request = self._parse(line)
            except ProtocolError as exc:
                self.output.send(
                    {
                        "id": getattr(exc, "request_id", None),
                        "event": "error",
                        "error_type": "ProtocolError",
                        "message": one_line(exc),
                    }
                )
                continue
            if request.method == "cancel":
                self._cancel(request)
            elif request.method == "shutdown":
                self.output.send({"id": request.id, "event": "result", "result": {"bye": True}})
                break
            else:
                with self._lock:
                    self._active[request.id] = request
                self._queue.put(request)
        # End of input or shutdown: finish what is queued, then stop.
        self._queue.put(_END)

    def _parse(self, line: str) -> Request:
        try:
            message = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"request is not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(message, dict):
            raise ProtocolError("request must be a JSON object with id, method and params")
        request_id = message.get("id")
        method = message.get("method")
        params = message.get("params") or {}
        error = None
        if not isinstance(method, str):
            error = 'request has no method; send {"id": ..., "method": ..., "params": {...}}'
        elif method not in self._handlers and method not in ("cancel", "shutdown"):
            known = ", ".join(sorted([*self._handlers, "cancel", "shutdown"]))
            error = f"unknown method {method!r}; use one of {known}"
        elif not isinstance(params, dict):
            error = "params must be a JSON object"
        if error is not None:
            exc = ProtocolError(error)
            exc.request_id = request_id  # type: ignore[attr-defined]
            raise exc
        return Request(request_id, method, params)

    def _cancel(self, request: Request) -> None:
        target = request.params.get("id")
        with self._lock:
            running = self._active.get(target)
        if running is not None:
            running.cancelled.set()
        self.output.send({"id": request.id, "event": "result", "result": {"cancelled": running is not None}})

    def _run(self, request: Request) -> None:
        try:
            if request.cancelled.is_set():
                raise CancelledError(f"{request.method} was cancelled before it started")
            result = self._handlers[request.method](request)
        except GleamGeoError as exc:
            self._error(request, exc)
        except (
            OSError,
            ValueError,
            TypeError,
            KeyError,
            LookupError,
            ImportError,
            RuntimeError,
            MemoryError,
            ArithmeticError,
            AttributeError,
            AssertionError,
        ) as exc:  # a failing request must not take the worker down; the traceback goes to stderr
            log.debug("request %s failed", request.id, exc_info=True)
            traceback.print_exc(file=sys.stderr)
            self._error(request, exc)
        else:
            self.output.send({"id": request.id, "event": "result", "result": result})

    def _error(self, request: Request, exc: BaseException) -> None:
        self.output.send(
            {"id": request.id, "event": "error", "error_type": type(exc).__name__, "message": one_line(exc)}
        )

    def progress(self, request: Request) -> ProgressFn:
        """Return a library progress callback that reports ``request``'s progress and cancel flag."""
        last: dict[str, float] = {}

        def callback(stage: str, done: int, total: int | None) -> bool:
            now = time.monotonic()
            final = total is not None and done >= total
            if final or done == 0 or now - last.get(stage, 0.0) >= 1.0 / _PROGRESS_PER_S:
                last[stage] = now
                self.output.send(
                    {
                        "id": request.id,
                        "event": "progress",
                        "stage": stage,
                        "done": int(done),
                        "total": None if total is None else int(total),
                    }
                )
            return not (request.cancelled.is_set() or self.output.host_gone.is_set())

        return callback

    # -- methods --------------------------------------------------------------------

    def ping(self, request: Request) -> dict[str, Any]:
        """Answer at once: the worker is alive."""
        return {"pong": True, "protocol": PROTOCOL_VERSION, "gleam_geo": __version__, "pid": os.getpid()}

    def environment(self, request: Request) -> dict[str, Any]:
        """Describe the Python, torch, device and faiss this worker runs with."""
        info: dict[str, Any] = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
            "gleam_geo": __version__,
            "protocol": PROTOCOL_VERSION,
            "torch": None,
            "cuda": None,
            "device": None,
            "gpu": None,
            "faiss": None,
            "encoders": [],
        }
        problems: list[str] = []
        try:
            import torch

            info["torch"] = torch.__version__
            info["cuda"] = torch.version.cuda
            from .models.device import select_device

            info["device"] = select_device("auto")
            if info["device"].startswith("cuda"):
                info["gpu"] = torch.cuda.get_device_name(0)
        except ImportError as exc:
            problems.append(f"torch is not usable: {one_line(exc)}")
        try:
            import faiss

            info["faiss"] = getattr(faiss, "__version__", "unknown")
        except ImportError as exc:
            problems.append(f"faiss is not usable: {one_line(exc)}")
        try:
            from .models import list_encoders

            info["encoders"] = list_encoders()
            import gleam_geo.api  # noqa: F401  (the full library must import)
        except (ImportError, GleamGeoError) as exc:
            problems.append(f"gleam_geo cannot load its models or index: {one_line(exc)}")
        info["ok"] = not problems
        info["problems"] = problems
        return info

    def build_index(self, request: Request) -> dict[str, Any]:
        """Build an index in a staging folder and move it into place when it is complete."""
        from .api import build_index
        from .index import GeoIndex
        from .raster import RasterCatalog

        params = request.params
        rasters = _paths(params, "rasters")
        out_dir = Path(_required(params, "out_dir"))
        overwrite = bool(params.get("overwrite", False))
        if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
            raise FileExistsError(
                f"{out_dir} already exists and is not empty; pass overwrite=true or choose another folder"
            )
        catalog = RasterCatalog.from_paths(rasters)  # unreadable rasters fail before the model loads
        staging = _fresh(staging_dir(out_dir))
        try:
            geo_index = build_index(
                catalog,
                staging,
                encoder=params.get("encoder"),
                tiling=params.get("tiling"),
                factory=params.get("factory") or "Flat",
                overwrite=True,
                device=params.get("device"),
                progress=self.progress(request),
            )
            geo_index.close()  # release its (memory-mapped) files before the folder moves
            _replace_dir(staging, out_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return _index_summary(GeoIndex.open(out_dir))

    def add_to_index(self, request: Request) -> dict[str, Any]:
        """Add rasters to a copy of an index; the copy replaces the index when complete."""
        from .api import add_to_index
        from .index import GeoIndex
        from .raster import RasterCatalog

        params = request.params
        index_dir = Path(_required(params, "index"))
        current = GeoIndex.open(index_dir)
        before = len(current)
        current.close()
        catalog = RasterCatalog.from_paths(_paths(params, "rasters"))
        staging = _fresh(staging_dir(index_dir))
        try:
            shutil.copytree(index_dir, staging)
            geo_index = add_to_index(
                GeoIndex.open(staging), catalog, params.get("encoder"), progress=self.progress(request)
            )
            after = len(geo_index)
            geo_index.close()
            if after != before:
                _replace_dir(staging, index_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        summary = _index_summary(GeoIndex.open(index_dir))
        summary["added"] = summary["chips"] - before
        return summary

    def index_info(self, request: Request) -> dict[str, Any]:
        """Describe an index."""
        from .index import GeoIndex

        return _index_summary(GeoIndex.open(_required(request.params, "index")))

    def localize(self, request: Request) -> dict[str, Any]:
        """Localize many images against one index or set of rasters."""
        return localize_batch(request.params, self.progress(request))


def _required(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value in (None, "", []):
        raise ProtocolError(f"params.{name} is required")
    return value


def _paths(params: dict[str, Any], name: str) -> list[str]:
    value = _required(params, name)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise ProtocolError(f"params.{name} must be a path or a list of paths")
    return items


def _fresh(path: Path) -> Path:
    """Remove whatever a killed earlier run left at ``path``; return ``path``."""
    shutil.rmtree(path, ignore_errors=True)
    return path


def _replace_dir(source: Path, target: Path) -> None:
    """Move ``source`` to ``target``, replacing it; the old ``target`` goes only once the new is in place."""
    backup = target.parent / f".{target.name}.old"
    shutil.rmtree(backup, ignore_errors=True)
    if target.exists():
        os.replace(target, backup)
    try:
        os.replace(source, target)
    except OSError:
        if backup.exists():
            os.replace(backup, target)
        raise
    shutil.rmtree(backup, ignore_errors=True)


def _index_summary(geo_index: Any) -> dict[str, Any]:
    summary = dict(geo_index.info())
    summary["path"] = str(Path(geo_index.path).resolve()) if hasattr(geo_index, "path") else None
    summary["chips"] = len(geo_index)
    return summary


def utc_now() -> str:
    """Return the current UTC time, ISO 8601 with seconds."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def accepted_options(
    function: Callable[..., Any], options: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """Split requested ``options`` into those ``function`` accepts and notes about the rest.

    ``None`` means "the library's default" and is dropped. An option ``function`` does not
    take is dropped too, with a note when it was asked for (truthy).
    """
    parameters = inspect.signature(function).parameters
    accepted: dict[str, Any] = {}
    notes: list[str] = []
    for name, value in options.items():
        if value is None:
            continue
        if name in parameters:
            accepted[name] = value
        elif value:
            notes.append(f"{name} was requested but gleam_geo {__version__} does not offer it yet; ignored")
    return accepted, notes


def localize_batch(params: dict[str, Any], progress: ProgressFn) -> dict[str, Any]:
    """Serve a ``localize`` request: every image against one index or set of rasters.

    Images that cannot be read are reported in ``failed`` and the others go on; any other
    error (a missing index, a cancel) ends the whole request. When no image can be read,
    the first image's error is raised.
    """
    images = _paths(params, "images")
    if not params.get("index") and not params.get("rasters"):
        raise ProtocolError("localize needs params.index (an index folder) or params.rasters (raster paths)")
    top_k = int(params.get("top_k") or 10)
    region, crs = _region(params.get("region"))

    from .api import localize
    from .io import load_image
    from .results_geojson import chip_png, results_to_feature_collection

    options = ("refine", "query_gsd_m", "explain", "language", "explain_backend", "figure_dir")
    requested = {name: params.get(name) for name in options}
    options, notes = accepted_options(localize, requested)
    geo_index, encoder = _search_index(params, progress)
    chip_dir = Path(params["chip_dir"]) if params.get("chip_dir") else None
    chip_size_px = int(params.get("chip_size_px") or 256)
    features: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    first_error: BaseException | None = None
    created_at = utc_now()
    written: list[Path] = []
    try:
        for number, image in enumerate(images):
            if progress("localize", number, len(images)) is False:
                raise CancelledError("localize was cancelled; run it again to resume from the start")
            try:
                load_image(image)
            except (GleamGeoError, OSError, ValueError) as exc:
                failed.append({"image": image, "error_type": type(exc).__name__, "message": one_line(exc)})
                first_error = first_error or exc
                continue
            results = localize(
                image,
                region,
                index=geo_index,
                modality=params.get("modality") or "auto",
                top_k=top_k,
                encoder=encoder,
                crs=crs,
                device=params.get("device"),
                progress=progress,
                **options,
            )
            extra: dict[str, list[Any]] = {}
            if chip_dir is not None:
                rows = (row for _, row in results.iterrows())
                extra["chip_image_path"] = [
                    chip_png(row, results.crs, chip_dir, chip_size_px, written) for row in rows
                ]
            features.extend(results_to_feature_collection(results, extra)["features"])
        progress("localize", len(images), len(images))
    except BaseException:
        for path in written:  # a request that did not finish leaves no chip images behind
            path.unlink(missing_ok=True)
        raise
    if first_error is not None and len(failed) == len(images):
        raise first_error
    return {
        "results": {"type": "FeatureCollection", "features": features},
        "failed": failed,
        "notes": notes,
        "created_at": created_at,
    }


def _region(spec: Any) -> tuple[Any, str | None]:
    """Parse a ``{"wkt", "crs"}`` region into a shapely geometry and its CRS (``None``: everywhere)."""
    if spec is None:
        return None, None
    if not isinstance(spec, dict) or not spec.get("wkt"):
        raise ProtocolError('params.region must be null or {"wkt": ..., "crs": ...}')
    import shapely

    try:
        geometry = shapely.from_wkt(spec["wkt"])
    except shapely.errors.GEOSException as exc:
        raise ProtocolError(f"params.region.wkt is not valid WKT: {one_line(exc)}") from None
    return geometry, spec.get("crs") or "EPSG:4326"


def _search_index(params: dict[str, Any], progress: ProgressFn) -> tuple[Any, Any]:
    """Open the GeoIndex to search (once for all images); return it and the encoder to use."""
    from .index import GeoIndex

    if params.get("index"):
        return GeoIndex.open(params["index"]), params.get("encoder")
    from .api import cached_index
    from .models import get_encoder

    encoder = get_encoder(params.get("encoder"), device=params.get("device"))
    geo_index = cached_index(_paths(params, "rasters"), encoder, progress=progress)
    return geo_index, encoder


def _claim_stdout() -> TextIO:
    """Keep the real stdout for protocol lines and send everything else written there to stderr."""
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)  # C code and subprocesses writing to fd 1 now reach stderr
    sys.stdout = sys.stderr
    return os.fdopen(protocol_fd, "w", encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> int:
    """Run the worker on this process's stdin and stdout."""
    del argv
    protocol_out = _claim_stdout()
    logging.basicConfig(level=os.environ.get("GLEAM_GEO_LOG_LEVEL", "WARNING"), stream=sys.stderr)
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115
    worker = Worker(Output(protocol_out))
    return worker.serve(stdin)


if __name__ == "__main__":
    sys.exit(main())

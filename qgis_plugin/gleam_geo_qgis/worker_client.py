"""Client side of the gleam_geo worker protocol (see ``gleam_geo/worker.py``).

The plugin never imports torch, faiss or gleam_geo itself: it starts
``<python> -m gleam_geo.worker`` in the environment where gleam_geo is installed and
exchanges one JSON object per line with it. This module is plain Python (no QGIS), so it
runs inside a QgsTask, a Processing algorithm or a test alike.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "PROTOCOL_VERSION",
    "WorkerCancelled",
    "WorkerClient",
    "WorkerError",
    "WorkerRequestError",
    "WorkerPool",
    "SHARED_WORKERS",
    "WorkerStartError",
    "clean_staging",
    "redact",
    "run_request",
    "staging_dir",
    "worker_env",
]

PROTOCOL_VERSION = 1
"""The protocol version this client speaks."""

ProgressHandler = Callable[[str, int, "int | None"], None]

_EOF = object()
_SECRET = re.compile(r"(?i)(api[_-]?key|token|secret|password|authorization)(\s*[=:]\s*|\s+)(\S+)")
_MISSING_MODULE = re.compile(r"No module named '?[\w.]+'?")
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_BEARER = re.compile(r"(?i)\bbearer\s+\S+")


class WorkerError(RuntimeError):
    """Root of the errors the worker client raises; ``str()`` is a one-line message."""


class WorkerStartError(WorkerError):
    """The worker could not be started, or it stopped before it answered."""


class WorkerCancelled(WorkerError):
    """The request was cancelled; the worker was stopped."""


class WorkerRequestError(WorkerError):
    """The worker answered a request with an error event.

    Attributes:
        error_type: the library's exception class name (e.g. ``RasterReadError``).
        message: the library's one-line message.

    """

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


def redact(text: str) -> str:
    """Hide anything that looks like an API key or token in ``text`` before it is logged."""
    text = _BEARER.sub("Bearer ***", _SK_KEY.sub("sk-***", text))
    return _SECRET.sub(lambda match: f"{match.group(1)}{match.group(2)}***", text)


def worker_env(extra_pythonpath: str | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment for a worker: this one, minus the host's Python settings.

    QGIS sets ``PYTHONPATH``/``PYTHONHOME`` for its own interpreter; another Python
    started with them would load QGIS's packages (or fail). ``extra_pythonpath`` (a
    gleam_geo source checkout, for development) becomes the only ``PYTHONPATH`` entry;
    ``extra`` adds variables (the explainer's endpoint and key, which stay in memory).
    """
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    if extra_pythonpath:
        env["PYTHONPATH"] = extra_pythonpath
    env.update(extra or {})
    return env


class WorkerClient:
    """One worker process and the requests sent to it, one at a time.

    Use it as a context manager; leaving the block stops the process::

        with WorkerClient("/path/to/venv/bin/python") as client:
            info = client.call("environment")

    Args:
        python: the interpreter that has gleam_geo installed.
        pythonpath: a folder to put on the worker's ``PYTHONPATH`` (a source checkout).
        startup_timeout_s: how long to wait for the worker's ``ready`` line.
        cancel_grace_s: how long a cancelled request may take to stop before the process is killed.
        on_stderr: called with each (redacted) line the worker writes to stderr.
        env: variables to add to the worker's environment (see :func:`worker_env`).

    """

    def __init__(
        self,
        python: str,
        *,
        pythonpath: str | None = None,
        env: Mapping[str, str] | None = None,
        startup_timeout_s: float = 120.0,
        cancel_grace_s: float = 3.0,
        on_stderr: Callable[[str], None] | None = None,
    ) -> None:
        self.python = python
        self.pythonpath = pythonpath
        self.env = dict(env or {})
        self.startup_timeout_s = startup_timeout_s
        self.cancel_grace_s = cancel_grace_s
        self.on_stderr = on_stderr
        self.ready: dict[str, Any] = {}
        self._process: subprocess.Popen[str] | None = None
        self._events: queue.Queue[Any] = queue.Queue()
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=50)
        self._ids = itertools.count(1)
        self._threads: list[threading.Thread] = []

    # -- lifetime -------------------------------------------------------------------

    def __enter__(self) -> WorkerClient:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pid(self) -> int | None:
        """The worker's process id, once started."""
        return None if self._process is None else self._process.pid

    def is_running(self) -> bool:
        """Whether the worker process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> dict[str, Any]:
        """Start the worker and wait for its ``ready`` line; return that line.

        Raises:
            WorkerStartError: the Python does not exist, cannot run gleam_geo, or speaks
                another protocol version.

        """
        if self._process is not None:
            return self.ready
        python = Path(self.python).expanduser()
        if not self.python or not python.is_file():
            raise WorkerStartError(
                f"worker Python not found: {self.python or '(not set)'}; set the Python of an environment "
                "with gleam-geo installed in GLEAM settings"
            )
        try:
            self._process = subprocess.Popen(
                [str(python), "-m", "gleam_geo.worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                bufsize=1,
                cwd=tempfile.gettempdir(),  # never pick up a gleam_geo folder from the cwd
                env=worker_env(self.pythonpath, self.env),
                creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0),  # no console window on Windows
            )
        except OSError as exc:
            raise WorkerStartError(
                f"cannot start worker Python {self.python}: {exc.strerror or exc}"
            ) from None
        self._spawn(self._read_stdout, self._process.stdout)
        self._spawn(self._read_stderr, self._process.stderr)
        message = self._next_event(time.monotonic() + self.startup_timeout_s)
        if message is None:
            self.kill()
            raise WorkerStartError(f"worker did not start within {self.startup_timeout_s:.0f} s")
        if message is _EOF or message.get("event") != "ready":
            raise WorkerStartError(self._death_message())
        if message.get("protocol") != PROTOCOL_VERSION:
            self.kill()
            raise WorkerStartError(
                f"worker speaks protocol {message.get('protocol')}, this plugin speaks {PROTOCOL_VERSION}; "
                "install matching versions of gleam-geo and the plugin"
            )
        self.ready = message
        return message

    def close(self, timeout_s: float = 5.0) -> None:
        """Ask the worker to exit (end of input) and make sure it does."""
        process = self._process
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
        self._join_threads()

    def kill(self) -> None:
        """Stop the worker process at once."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # a process that ignores SIGKILL
            process.wait(timeout=10)
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass

    # -- requests -------------------------------------------------------------------

    def call(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        on_progress: ProgressHandler | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """Send one request and wait for its result, reporting progress on the way.

        Args:
            method: a protocol method (``ping``, ``environment``, ``localize``, ...).
            params: its parameters (JSON-serialisable).
            on_progress: called with ``(stage, done, total)`` for each progress event.
            is_cancelled: polled while waiting; once it returns True the request is
                cancelled, and the process is killed if it does not stop in time.
            timeout_s: give up (and kill the worker) after this many seconds.

        Returns:
            The request's ``result``.

        Raises:
            WorkerRequestError: the worker answered with an error event.
            WorkerCancelled: the request was cancelled.
            WorkerStartError: the worker died or timed out.

        """
        self.start()
        request_id = next(self._ids)
        self._send({"id": request_id, "method": method, "params": dict(params or {})})
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        cancel_deadline: float | None = None
        while True:
            if cancel_deadline is None and is_cancelled is not None and is_cancelled():
                cancel_deadline = time.monotonic() + self.cancel_grace_s
                self._send({"id": f"cancel-{request_id}", "method": "cancel", "params": {"id": request_id}})
            now = time.monotonic()
            if cancel_deadline is not None and now > cancel_deadline:
                self.kill()
                clean_staging(method, params)
                raise WorkerCancelled(f"{method} was cancelled")
            if deadline is not None and now > deadline:
                self.kill()
                clean_staging(method, params)
                raise WorkerStartError(f"worker did not answer {method} within {timeout_s:.0f} s")
            message = self._next_event(now + 0.1)
            if message is None:
                continue
            if message is _EOF:
                death = self._death_message()
                clean_staging(method, params)
                if cancel_deadline is not None:
                    raise WorkerCancelled(f"{method} was cancelled")
                raise WorkerStartError(death)
            if message.get("id") != request_id:
                continue
            event = message.get("event")
            if event == "progress" and on_progress is not None:
                on_progress(
                    str(message.get("stage", "")), int(message.get("done") or 0), message.get("total")
                )
            elif event == "result":
                return message.get("result")
            elif event == "error":
                error_type = str(message.get("error_type") or "WorkerError")
                text = str(message.get("message") or error_type)
                if error_type == "CancelledError" or cancel_deadline is not None:
                    raise WorkerCancelled(text)
                raise WorkerRequestError(error_type, text)

    # -- plumbing -------------------------------------------------------------------

    def _send(self, message: dict[str, Any]) -> None:
        process = self._process
        if process is None or process.stdin is None:
            raise WorkerStartError("worker is not running")
        try:
            process.stdin.write(json.dumps(message) + "\n")
            process.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the reader sees the end of output and reports why the worker died

    def _next_event(self, until: float) -> Any:
        try:
            return self._events.get(timeout=max(0.0, until - time.monotonic()))
        except queue.Empty:
            return None

    def _spawn(self, target: Callable[[IO[str]], None], stream: IO[str] | None) -> None:
        thread = threading.Thread(target=target, args=(stream,), daemon=True, name="gleam-worker-client")
        thread.start()
        self._threads.append(thread)

    def _join_threads(self) -> None:
        for thread in self._threads:
            thread.join(timeout=2)
        self._threads.clear()

    def _read_stdout(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        try:
            for line in stream:
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    self._stderr_tail.append(f"(not a protocol line on stdout) {line.rstrip()}")
                    continue
                if isinstance(message, dict):
                    self._events.put(message)
        except (OSError, ValueError):
            pass
        finally:
            self._events.put(_EOF)

    def _read_stderr(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        try:
            for line in stream:
                text = redact(line.rstrip())
                self._stderr_tail.append(text)
                if self.on_stderr is not None and text:
                    self.on_stderr(text)
        except (OSError, ValueError):
            pass

    def _death_message(self) -> str:
        """Explain why the worker stopped, from its exit code and last stderr line."""
        process = self._process
        code = None
        if process is not None:
            try:
                code = process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._join_threads()
        lines = [line for line in self._stderr_tail if line.strip()]
        last = lines[-1] if lines else "no output"
        missing = _MISSING_MODULE.search(last)
        if missing is not None:
            return (
                f"the worker Python {self.python} cannot run gleam_geo ({missing.group(0)}); "
                "install gleam-geo into that environment or choose another Python in GLEAM settings"
            )
        return f"worker stopped (exit code {code}): {last}"


class WorkerPool:
    """Keeps one worker process alive between requests, so each run skips the start-up.

    :meth:`lease` hands out the kept worker, starting it on first use and again when it
    died or was asked for with another Python. A request that was cancelled, timed out or
    lost its worker ends the kept process (the next lease starts a fresh one); one that
    failed with an error event keeps it. While the kept worker is leased, other leases get
    a private worker that stops when they end, so requests never queue behind each other.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._client: WorkerClient | None = None
        self._leased = False

    @property
    def pid(self) -> int | None:
        """The kept worker's process id, when one is running."""
        client = self._client
        return client.pid if client is not None and client.is_running() else None

    @contextlib.contextmanager
    def lease(
        self,
        python: str,
        pythonpath: str | None = None,
        env: Mapping[str, str] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> Iterator[WorkerClient]:
        """Yield a started worker for ``python`` (``pythonpath``, ``env``) for one or more requests.

        Raises:
            WorkerStartError: the worker cannot be started (see :meth:`WorkerClient.start`).

        """
        with self._lock:
            shared = not self._leased
            client = self._client if shared else None
            wanted = (python, pythonpath, dict(env or {}))
            if client is not None and (
                not client.is_running() or (client.python, client.pythonpath, client.env) != wanted
            ):
                client.close()
                client = None
            if client is None:
                client = WorkerClient(python, pythonpath=pythonpath, env=env)
            if shared:
                self._client, self._leased = client, True
        client.on_stderr = on_stderr
        keep = False
        try:
            client.start()
            yield client
            keep = shared
        except WorkerRequestError:
            keep = shared
            raise
        finally:
            client.on_stderr = None
            if not keep:
                client.close()
            if shared:
                with self._lock:
                    self._leased = False
                    if not keep:
                        self._client = None

    def close(self) -> None:
        """Stop the kept worker at once if it is working, else let it exit; the next lease starts one."""
        with self._lock:
            client, self._client = self._client, None
            leased = self._leased
        if client is not None and leased:
            client.kill()
        elif client is not None:
            client.close()


SHARED_WORKERS = WorkerPool()
"""The worker pool of the plugin's tasks and Processing algorithms; closed when the plugin unloads."""


def staging_dir(target: str | os.PathLike[str]) -> Path:
    """Return where the worker writes an index bound for ``target`` until it is complete.

    Part of the protocol (see ``gleam_geo.worker.staging_dir``): ``.<name>.partial``
    beside the target, and ``.<name>.old`` for the index it replaces while it swaps.
    """
    target = Path(target)
    return target.parent / f".{target.name}.partial"


def clean_staging(method: str, params: Mapping[str, Any] | None) -> None:
    """Remove what a killed ``build_index``/``add_to_index`` left; restore an index it was replacing.

    Call only once the worker process is gone.
    """
    target = (params or {}).get("out_dir" if method == "build_index" else "index")
    if method not in ("build_index", "add_to_index") or not isinstance(target, str) or not target:
        return
    target_path = Path(target)
    shutil.rmtree(staging_dir(target_path), ignore_errors=True)
    backup = target_path.parent / f".{target_path.name}.old"
    if backup.is_dir():
        if target_path.exists():
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.replace(backup, target_path)


def run_request(
    python: str,
    method: str,
    params: Mapping[str, Any] | None = None,
    *,
    pythonpath: str | None = None,
    on_progress: ProgressHandler | None = None,
    is_cancelled: Callable[[], bool] | None = None,
    on_stderr: Callable[[str], None] | None = None,
    on_start: Callable[[WorkerClient], None] | None = None,
) -> Any:
    """Start a worker, run one request on it and stop it; return the request's result.

    ``on_start`` receives the client once its process runs (to watch its pid in tests).
    """
    with WorkerClient(python, pythonpath=pythonpath, on_stderr=on_stderr) as client:
        if on_start is not None:
            on_start(client)
        return client.call(method, params, on_progress=on_progress, is_cancelled=is_cancelled)

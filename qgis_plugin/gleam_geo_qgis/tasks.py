"""QgsTask around one worker request: runs in the background, reports progress, cancels.

``run()`` (a worker thread) leases the kept worker process (starting it if needed), sends
the request and forwards its progress to the task's progress bar; ``cancel()`` makes the
client send ``cancel`` and, if the worker does not stop within a few seconds, kill it. A
cancelled request always ends the worker process; the next task starts a new one.
``finished()`` runs on the main thread and emits ``completed`` with a
:mod:`task_results` object.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from qgis.core import Qgis, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .settings import WorkerSpec
from .task_results import TaskCancelled, TaskFailed, TaskOutcome, TaskSuccess
from .worker_client import (
    SHARED_WORKERS,
    WorkerCancelled,
    WorkerClient,
    WorkerError,
    WorkerPool,
    WorkerRequestError,
)

__all__ = ["LOG_TAG", "WorkerTask"]

LOG_TAG = "GLEAM"


class WorkerTask(QgsTask):
    """Run one worker request as a cancellable background task.

    Args:
        description: shown in the QGIS task manager.
        worker: how to start the worker.
        method: the protocol method.
        params: its params.
        request: what the caller wants back with the outcome (e.g. the dock's parameters).
        pool: the pool whose kept worker runs the request; ``None`` for a worker of its own
            that stops with the task (e.g. to check a Python that is not saved yet).

    """

    completed = pyqtSignal(object)
    """Emitted on the main thread with a TaskSuccess, TaskFailed or TaskCancelled."""

    stage_changed = pyqtSignal(str)
    """Emitted (from the task's thread) with a short description of the current stage."""

    def __init__(
        self,
        description: str,
        worker: WorkerSpec,
        method: str,
        params: dict[str, Any],
        request: Any = None,
        pool: WorkerPool | None = SHARED_WORKERS,
    ) -> None:
        super().__init__(description, QgsTask.CanCancel)
        self.worker = worker
        self.method = method
        self.params = params
        self.request = request
        self.pool = pool
        self.outcome: TaskOutcome | None = None
        self.worker_pid: int | None = None
        self._stage = ""
        self._started = 0.0

    def run(self) -> bool:
        """Run the request (called on a worker thread by the task manager)."""
        self._started = time.monotonic()
        try:
            with self._client() as client:
                self.worker_pid = client.pid
                result = client.call(
                    self.method, self.params, on_progress=self._on_progress, is_cancelled=self.isCanceled
                )
        except WorkerCancelled:
            self.outcome = TaskCancelled(self.method, self.request)
            return False
        except WorkerRequestError as exc:
            self.outcome = TaskFailed(self.method, exc.message, exc.error_type, self.request)
            return False
        except WorkerError as exc:
            self.outcome = TaskFailed(self.method, str(exc), type(exc).__name__, self.request)
            return False
        self.outcome = TaskSuccess(self.method, result, self.request, time.monotonic() - self._started)
        return True

    def finished(self, result: bool) -> None:
        """Emit the outcome (called on the main thread when run() returns)."""
        outcome = self.outcome
        if outcome is None:  # cancelled before run() started
            outcome = TaskCancelled(self.method, self.request)
        elif not result and isinstance(outcome, TaskSuccess):  # pragma: no cover - defensive
            outcome = TaskFailed(self.method, "the task stopped without a result", request=self.request)
        self.outcome = outcome
        self.completed.emit(outcome)

    @contextlib.contextmanager
    def _client(self) -> Iterator[WorkerClient]:
        python, pythonpath, env = self.worker.python, self.worker.pythonpath, self.worker.env
        if self.pool is not None:
            with self.pool.lease(python, pythonpath, env, on_stderr=self._log_stderr) as client:
                yield client
        else:
            with WorkerClient(python, pythonpath=pythonpath, env=env, on_stderr=self._log_stderr) as client:
                yield client

    def _on_progress(self, stage: str, done: int, total: int | None) -> None:
        if stage != self._stage:
            self._stage = stage
            self.stage_changed.emit(stage)
        if total:
            self.setProgress(max(0.0, min(100.0, 100.0 * done / total)))

    def _log_stderr(self, line: str) -> None:
        QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info, notifyUser=False)

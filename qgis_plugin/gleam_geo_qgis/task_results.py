"""How a background task ended: success, failure or cancellation, as typed objects.

Tasks hand one of these to their ``completed`` signal on the main thread, and the plugin
handles each kind in one place (add layers, show the error, say it was cancelled).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Union

__all__ = ["TaskCancelled", "TaskFailed", "TaskOutcome", "TaskSuccess"]


@dataclass(frozen=True)
class TaskSuccess:
    """The worker answered: ``result`` is its result object; ``request`` what the task asked for."""

    method: str
    result: Any
    request: Any = None
    elapsed_s: float = 0.0


@dataclass(frozen=True)
class TaskFailed:
    """The work failed; ``message`` is the one-line cause (and fix) to show the user."""

    method: str
    message: str
    error_type: str = "WorkerError"
    request: Any = None
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TaskCancelled:
    """The user cancelled the work; the worker was stopped and nothing was written."""

    method: str
    request: Any = None


# Union, not |: QGIS 3.22 on Windows runs Python 3.9, where | fails at run time.
TaskOutcome = Union[TaskSuccess, TaskFailed, TaskCancelled]  # noqa: UP007

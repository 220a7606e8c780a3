"""One progress type for all long-running work.

Library functions take ``progress: ProgressCallback | None``. The CLI turns it into a
tqdm bar, the worker into JSON events and the QGIS plugin into a QgsTask progress value.
Cancellation rides on the same callback: it returns ``False`` to ask the work to stop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from .errors import CancelledError

__all__ = ["ProgressCallback", "Progress", "tqdm_progress"]


class ProgressCallback(Protocol):
    """Called with the stage name, units done and units total (``None`` when unknown).

    Returning ``False`` cancels the work; any other value (including ``None``) goes on.
    """

    def __call__(self, stage: str, done: int, total: int | None) -> bool | None:
        """Report ``done`` of ``total`` units of ``stage``; return ``False`` to cancel."""


class Progress:
    """Reports progress of one stage and raises :class:`CancelledError` when asked to stop."""

    def __init__(self, callback: ProgressCallback | None, stage: str, total: int | None) -> None:
        self.callback = callback
        self.stage = stage
        self.total = total
        self.done = 0
        self._emit()

    def advance(self, n: int = 1) -> None:
        """Mark ``n`` more units as done."""
        self.done += n
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None and self.callback(self.stage, self.done, self.total) is False:
            raise CancelledError(f"{self.stage} was cancelled; run it again to resume from the start")


def tqdm_progress(disable: bool = False) -> tuple[ProgressCallback, Callable[[], None]]:
    """Return a callback that draws one tqdm bar per stage, and a function that closes them."""
    from tqdm.auto import tqdm

    bars: dict[str, tqdm] = {}

    def callback(stage: str, done: int, total: int | None) -> bool:
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = tqdm(total=total, desc=stage, unit="it", disable=disable, leave=True)
        if total is not None and bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()
        return True

    def close() -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()

    return callback, close

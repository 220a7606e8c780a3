"""GLEAM settings: which Python runs the worker, where results go, and a check that it works.

"Check environment" asks the worker for its ``environment`` in a background task and
shows the Python, gleam_geo, torch and faiss versions and the device it would use.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..settings import PluginSettings, WorkerSpec, resolve_worker
from ..task_results import TaskCancelled, TaskFailed, TaskOutcome, TaskSuccess
from ..tasks import WorkerTask

__all__ = ["SettingsDialog", "describe_environment"]

DEVICES = ("", "cpu", "cuda")


def describe_environment(info: dict[str, Any]) -> str:
    """Render an ``environment`` result as a short HTML report."""
    device = info.get("device") or "unknown"
    if info.get("gpu"):
        device = f"{device} ({info['gpu']})"
    rows = [
        ("Status", "works" if info.get("ok") else "not usable"),
        ("Python", f"{info.get('python')} ({info.get('executable')})"),
        ("gleam_geo", info.get("gleam_geo")),
        ("torch", info.get("torch") or "missing"),
        ("Device", device),
        ("faiss", info.get("faiss") or "missing"),
        ("Encoders", ", ".join(info.get("encoders") or []) or "none"),
    ]
    body = "".join(
        f"<tr><td><b>{html.escape(k)}</b></td><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in info.get("problems") or [])
    return f"<table>{body}</table>" + (f"<ul>{problems}</ul>" if problems else "")


class SettingsDialog(QDialog):
    """Edit :class:`PluginSettings` and check the worker environment."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("GLEAM settings")
        self.setMinimumWidth(520)
        self.settings = PluginSettings.load()
        self.task: WorkerTask | None = None
        self.python = QgsFileWidget(self)
        self.python.setStorageMode(QgsFileWidget.GetFile)
        self.python.setFilePath(self.settings.python)
        self.python.lineEdit().setPlaceholderText(resolve_worker(PluginSettings()).python or "not found")
        self.results = QgsFileWidget(self)
        self.results.setStorageMode(QgsFileWidget.SaveFile)
        self.results.setFilter("GeoPackage (*.gpkg)")
        self.results.setFilePath(self.settings.results_gpkg)
        self.results.lineEdit().setPlaceholderText("gleam_localizations.gpkg in the project folder")
        self.device = QComboBox(self)
        for value in DEVICES:
            self.device.addItem(value or "automatic", value)
        self.device.setCurrentIndex(max(0, self.device.findData(self.settings.device)))
        self.check_button = QPushButton("Check environment", self)
        self.report = QTextBrowser(self)
        self.report.setMinimumHeight(170)
        self.report.setHtml("<i>Press Check environment to ask the worker what it runs with.</i>")
        form = QFormLayout()
        form.addRow("Worker Python", self.python)
        form.addRow(QLabel("<small>An environment with gleam-geo installed; empty = automatic.</small>"))
        form.addRow("Results GeoPackage", self.results)
        form.addRow("Device", self.device)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, parent=self)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.check_button)
        layout.addWidget(self.report)
        layout.addWidget(buttons)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.check_button.clicked.connect(self.check_environment)

    def edited_settings(self) -> PluginSettings:
        """Return the settings as currently entered."""
        return PluginSettings(
            python=self.python.filePath().strip(),
            results_gpkg=self.results.filePath().strip(),
            device=self.device.currentData() or "",
        )

    def worker(self) -> WorkerSpec:
        """Return the worker the entered settings select."""
        return resolve_worker(self.edited_settings())

    def environment_task(self) -> WorkerTask:
        """Create (not start) the task that asks the worker for its environment."""
        task = WorkerTask("GLEAM: check worker environment", self.worker(), "environment", {})
        task.completed.connect(self.show_outcome)
        return task

    def check_environment(self) -> None:
        """Ask the worker for its environment in the background."""
        self.check_button.setEnabled(False)
        self.report.setHtml(f"<i>Starting {html.escape(self.worker().python or 'the worker')}…</i>")
        self.task = self.environment_task()
        QgsApplication.taskManager().addTask(self.task)

    def show_outcome(self, outcome: TaskOutcome) -> None:
        """Show what the environment check found."""
        self.check_button.setEnabled(True)
        self.task = None
        if isinstance(outcome, TaskSuccess):
            self.report.setHtml(describe_environment(outcome.result))
        elif isinstance(outcome, TaskFailed):
            self.report.setHtml(f"<b>Status</b>: not usable<br>{html.escape(outcome.message)}")
        elif isinstance(outcome, TaskCancelled):
            self.report.setHtml("<i>Check cancelled.</i>")

    def accept(self) -> None:
        """Save the settings and close."""
        self.settings = self.edited_settings()
        self.settings.save()
        super().accept()

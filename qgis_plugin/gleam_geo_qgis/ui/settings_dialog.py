"""GLEAM settings: the worker Python, where results go, how matches are explained, a check.

"Check environment" asks the worker for its ``environment`` in a background task and
shows the Python, gleam_geo, torch and faiss versions and the device it would use. The
``openai`` explainer's API key is never typed here: it comes from a QGIS authentication
configuration (chosen here, stored encrypted by QGIS) or from the environment.
"""

from __future__ import annotations

import html
from typing import Any

from qgis.core import QgsApplication
from qgis.gui import QgsAuthConfigSelect, QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QLineEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..parameters import EXPLAIN_BACKENDS, LANGUAGES
from ..settings import PluginSettings, WorkerSpec, api_key_source, resolve_worker
from ..task_results import TaskCancelled, TaskFailed, TaskOutcome, TaskSuccess
from ..tasks import WorkerTask

__all__ = ["SettingsDialog", "describe_environment"]

DEVICES = ("", "cpu", "cuda")
BACKEND_NAMES = {
    "evidence": "evidence (offline, from the measured match)",
    "openai": "openai (an OpenAI-compatible endpoint)",
}
LANGUAGE_NAMES = {"en": "English", "zh": "Chinese"}


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
        explanations = self._explanations_box()
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
        layout.addWidget(explanations)
        layout.addWidget(self.check_button)
        layout.addWidget(self.report)
        layout.addWidget(buttons)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.check_button.clicked.connect(self.check_environment)

    def _explanations_box(self) -> QGroupBox:
        settings = self.settings.with_defaults()
        box = QGroupBox("Explanations", self)
        form = QFormLayout(box)
        self.explain_backend = QComboBox(box)
        for backend in EXPLAIN_BACKENDS:
            self.explain_backend.addItem(BACKEND_NAMES.get(backend, backend), backend)
        self.explain_backend.setCurrentIndex(max(0, self.explain_backend.findData(settings.explain_backend)))
        self.language = QComboBox(box)
        for code in LANGUAGES:
            self.language.addItem(LANGUAGE_NAMES.get(code, code), code)
        self.language.setCurrentIndex(max(0, self.language.findData(settings.language)))
        self.llm_base_url = QLineEdit(settings.llm_base_url, box)
        self.llm_base_url.setPlaceholderText("https://api.openai.com/v1 or http://localhost:8000/v1")
        self.llm_model = QLineEdit(settings.llm_model, box)
        self.llm_model.setPlaceholderText("e.g. gpt-4o-mini")
        self.llm_auth = QgsAuthConfigSelect(box)
        self.llm_auth.setConfigId(settings.llm_authcfg)
        self.key_source = QLabel(box)
        self.key_source.setWordWrap(True)
        form.addRow("Explainer", self.explain_backend)
        form.addRow("Language", self.language)
        form.addRow("Base URL", self.llm_base_url)
        form.addRow("Model", self.llm_model)
        form.addRow("API key", self.llm_auth)
        form.addRow(self.key_source)
        self.explain_backend.currentIndexChanged.connect(self._update_explainer)
        self.llm_auth.selectedConfigIdChanged.connect(self._update_explainer)
        self._update_explainer()
        return box

    def _update_explainer(self, *_args: object) -> None:
        endpoint = self.explain_backend.currentData() == "openai"
        for widget in (self.llm_base_url, self.llm_model, self.llm_auth):
            widget.setEnabled(endpoint)
        source = api_key_source(self.edited_settings()) if endpoint else "not needed"
        self.key_source.setText(
            f"<small>API key: {html.escape(source)}. Store it in a QGIS authentication configuration "
            "(Basic: the key as password) or set GLEAM_GEO_LLM_API_KEY before starting QGIS.</small>"
        )

    def edited_settings(self) -> PluginSettings:
        """Return the settings as currently entered."""
        return PluginSettings(
            python=self.python.filePath().strip(),
            results_gpkg=self.results.filePath().strip(),
            device=self.device.currentData() or "",
            explain_backend=self.explain_backend.currentData(),
            language=self.language.currentData(),
            llm_base_url=self.llm_base_url.text().strip(),
            llm_model=self.llm_model.text().strip(),
            llm_authcfg=self.llm_auth.configId(),
        )

    def worker(self) -> WorkerSpec:
        """Return the worker the entered settings select."""
        return resolve_worker(self.edited_settings())

    def environment_task(self) -> WorkerTask:
        """Create (not start) the task that asks the worker for its environment."""
        # A worker of its own: the check starts the entered Python afresh, saved or not.
        task = WorkerTask("GLEAM: check worker environment", self.worker(), "environment", {}, pool=None)
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

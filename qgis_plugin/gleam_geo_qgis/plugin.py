"""The plugin class: menu and toolbar actions, the dock, the Processing provider, and tasks.

The dock emits parameters; this class turns them into :class:`~.tasks.WorkerTask` objects
on the QGIS task manager and hands their outcomes to :class:`~.outcomes.OutcomeHandler`
on the main thread. Nothing here imports torch, faiss or gleam_geo.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .outcomes import LocalizeRequest, OutcomeHandler
from .parameters import IndexParameters, LocalizeParameters
from .settings import PluginSettings, resolve_worker, results_gpkg_path
from .task_results import TaskOutcome, TaskSuccess
from .tasks import WorkerTask
from .worker_client import SHARED_WORKERS

__all__ = ["GleamGeoPlugin"]

MENU = "&GLEAM"
ICON_PATH = Path(__file__).parent / "icon.svg"


class GleamGeoPlugin:
    """The GLEAM geo-localization plugin.

    Args:
        iface: the QGIS interface; ``None`` under ``qgis_process``, which only calls
            :meth:`initProcessing`.

    """

    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.dock: Any = None
        self.provider: Any = None
        self.inspect_tool: Any = None
        self.outcomes: OutcomeHandler | None = None
        self.actions: list[QAction] = []
        self.running: WorkerTask | None = None
        self.last_outcome: TaskOutcome | None = None

    # -- QGIS plugin interface ----------------------------------------------------------

    def initProcessing(self) -> None:
        """Register the ``gleam_geo`` Processing provider."""
        if self.provider is None:
            from .processing.provider import GleamProvider

            provider = GleamProvider()
            # On failure (a provider with this id exists) the registry deletes the object.
            if QgsApplication.processingRegistry().addProvider(provider):
                self.provider = provider

    def initGui(self) -> None:
        """Create the actions, the menu entries and the toolbar button."""
        self.initProcessing()
        self.outcomes = OutcomeHandler(self.iface.messageBar(), self.iface.mapCanvas())
        icon = QIcon(str(ICON_PATH))
        window = self.iface.mainWindow()
        panel = QAction(icon, "GLEAM localization panel", window)
        panel.setCheckable(True)
        panel.triggered.connect(self.toggle_dock)
        inspect = QAction(icon, "Inspect a GLEAM result", window)
        inspect.setCheckable(True)
        inspect.triggered.connect(self.start_inspecting)
        settings = QAction("GLEAM settings…", window)
        settings.triggered.connect(self.open_settings)
        self.actions = [panel, inspect, settings]
        for action in self.actions:
            self.iface.addPluginToMenu(MENU, action)
        self.iface.addToolBarIcon(panel)

    def unload(self) -> None:
        """Remove everything initGui and initProcessing added; cancel running work, stop the worker."""
        if self.running is not None:
            self.running.cancel()
        SHARED_WORKERS.close()
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        if self.actions:
            self.iface.removeToolBarIcon(self.actions[0])
        self.actions = []
        if self.dock is not None:
            self.dock.cleanup()
            self.iface.removeDockWidget(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.inspect_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self.inspect_tool)
            self.inspect_tool = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None

    # -- actions ---------------------------------------------------------------------

    def show_dock(self) -> Any:
        """Create the dock on first use and show it; return it."""
        if self.dock is None:
            from .ui.dock import GleamDock

            self.dock = GleamDock(self.iface.mapCanvas(), self.iface.mainWindow())
            self.dock.localize_requested.connect(self.start_localize)
            self.dock.index_requested.connect(self.start_index)
            self.dock.cancel_requested.connect(self.cancel)
            self.dock.invalid_input.connect(self._warn)
            self.dock.visibilityChanged.connect(
                lambda visible: self.actions and self.actions[0].setChecked(visible)
            )
            self.dock.show_explainer(PluginSettings.load().with_defaults().explain_backend)
            self.iface.addDockWidget(Qt.RightDockWidgetArea, self.dock)
        self.dock.show()
        return self.dock

    def toggle_dock(self, visible: bool = True) -> None:
        """Show or hide the dock."""
        if visible:
            self.show_dock()
        elif self.dock is not None:
            self.dock.hide()

    def open_settings(self) -> None:
        """Open GLEAM settings."""
        from .ui.settings_dialog import SettingsDialog

        SettingsDialog(self.iface.mainWindow()).exec_()
        if self.dock is not None:
            self.dock.show_explainer(PluginSettings.load().with_defaults().explain_backend)

    def start_inspecting(self) -> None:
        """Activate the map tool that opens a clicked result's form."""
        from .ui.inspect_tool import InspectResultTool

        if self.inspect_tool is None:
            self.inspect_tool = InspectResultTool(self.iface.mapCanvas(), self.iface)
            if len(self.actions) > 1:
                self.inspect_tool.setAction(self.actions[1])
        self.iface.mapCanvas().setMapTool(self.inspect_tool)

    # -- tasks -----------------------------------------------------------------------

    def start_localize(self, parameters: LocalizeParameters) -> WorkerTask | None:
        """Queue a localization task for the dock's parameters, explained as GLEAM settings say."""
        settings = PluginSettings.load().with_defaults()
        parameters = replace(parameters, language=settings.language, explain_backend=settings.explain_backend)
        request = LocalizeRequest(parameters, results_gpkg_path(settings))
        params = parameters.to_params(
            chip_dir=str(request.chip_dir), device=settings.device, figure_dir=str(request.figure_dir)
        )
        worker = resolve_worker(settings, explain=parameters.explain)
        count = len(parameters.images)
        return self._start(
            WorkerTask(f"GLEAM: localize {count} photo(s)", worker, "localize", params, request)
        )

    def start_index(self, parameters: IndexParameters) -> WorkerTask | None:
        """Queue an index build or update task for the dock's parameters."""
        settings = PluginSettings.load()
        verb = "update" if parameters.update else "build"
        return self._start(
            WorkerTask(
                f"GLEAM: {verb} index {Path(parameters.index_dir).name}",
                resolve_worker(settings),
                parameters.method,
                parameters.to_params(device=settings.device),
                parameters,
            )
        )

    def cancel(self) -> None:
        """Cancel the running task."""
        if self.running is not None:
            self.running.cancel()

    def _start(self, task: WorkerTask) -> WorkerTask | None:
        if self.running is not None:
            self._warn("GLEAM is still working on the previous request; cancel it or wait")
            return None
        self.running = task
        task.completed.connect(self._completed)
        if self.dock is not None:
            task.progressChanged.connect(self.dock.set_progress)
            task.stage_changed.connect(self.dock.set_status)
            self.dock.set_running(True, task.description())
        QgsApplication.taskManager().addTask(task)
        return task

    def _completed(self, outcome: TaskOutcome) -> None:
        self.running = None
        self.last_outcome = outcome
        if self.dock is not None:
            self.dock.set_running(False, type(outcome).__name__.replace("Task", ""))
        if self.outcomes is not None:
            self.outcomes.handle(outcome)
        if (
            self.dock is not None
            and isinstance(outcome, TaskSuccess)
            and isinstance(outcome.request, IndexParameters)
        ):
            self.dock.index_dir.setFilePath(
                str((outcome.result or {}).get("path") or outcome.request.index_dir)
            )
            self.dock.use_index.setChecked(True)

    def _warn(self, message: str) -> None:
        self.iface.messageBar().pushMessage("GLEAM", message, Qgis.Warning, 6)

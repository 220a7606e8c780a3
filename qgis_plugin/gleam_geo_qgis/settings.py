"""Plugin settings: kept in the user profile (QgsSettings), never in project files.

The worker Python is, in order: the one set in GLEAM settings, ``$GLEAM_GEO_PYTHON``, or
the ``.venv`` of the gleam-geo checkout the plugin lives in (for development installs,
where the plugin folder is linked into the QGIS profile).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from qgis.core import QgsProject, QgsSettings

__all__ = [
    "PluginSettings",
    "WorkerSpec",
    "default_python",
    "plugin_checkout",
    "resolve_worker",
    "results_gpkg_path",
]

KEY_PREFIX = "gleam_geo_qgis"
RESULTS_FILE = "gleam_localizations.gpkg"


@dataclass
class PluginSettings:
    """What the user can set in GLEAM settings.

    Attributes:
        python: the worker's Python interpreter; empty for automatic.
        results_gpkg: the GeoPackage results go to; empty for one in the project folder.
        device: ``cpu``, ``cuda`` or empty for automatic.

    """

    python: str = ""
    results_gpkg: str = ""
    device: str = ""

    @classmethod
    def load(cls) -> PluginSettings:
        """Read the settings from the user profile."""
        store = QgsSettings()
        values = {item.name: str(store.value(f"{KEY_PREFIX}/{item.name}", "") or "") for item in fields(cls)}
        return cls(**values)

    def save(self) -> None:
        """Write the settings to the user profile."""
        store = QgsSettings()
        for item in fields(self):
            store.setValue(f"{KEY_PREFIX}/{item.name}", getattr(self, item.name))


@dataclass(frozen=True)
class WorkerSpec:
    """How to start the worker: the interpreter and an optional source folder for PYTHONPATH."""

    python: str
    pythonpath: str | None = None


def plugin_checkout() -> Path | None:
    """Return the gleam-geo source checkout this plugin lives in, if it lives in one."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "gleam_geo" / "__init__.py").is_file() else None


def _venv_python(root: Path) -> Path:
    if sys.platform == "win32":
        return root / ".venv" / "Scripts" / "python.exe"
    return root / ".venv" / "bin" / "python"


def default_python() -> str | None:
    """Return the checkout's ``.venv`` Python when the plugin runs from a checkout that has one."""
    root = plugin_checkout()
    if root is None:
        return None
    python = _venv_python(root)
    return str(python) if python.is_file() else None


def resolve_worker(settings: PluginSettings | None = None) -> WorkerSpec:
    """Pick the worker Python (see the module docstring); empty when none is known."""
    settings = settings or PluginSettings.load()
    python = (
        settings.python.strip() or os.environ.get("GLEAM_GEO_PYTHON", "").strip() or default_python() or ""
    )
    root = plugin_checkout()
    pythonpath = None
    if root is not None and python and os.path.abspath(python) == os.path.abspath(_venv_python(root)):
        pythonpath = str(root)  # the checkout's venv runs the checkout's library
    return WorkerSpec(python, pythonpath)


def results_gpkg_path(settings: PluginSettings | None = None, project: QgsProject | None = None) -> Path:
    """Return the GeoPackage results go to: the setting, else one in the project folder.

    An unsaved project has no folder; results then go to the QGIS user profile folder.
    """
    settings = settings or PluginSettings.load()
    if settings.results_gpkg.strip():
        return Path(settings.results_gpkg.strip()).expanduser()
    project = project or QgsProject.instance()
    home = project.homePath()
    if home:
        return Path(home) / RESULTS_FILE
    from qgis.core import QgsApplication

    return Path(QgsApplication.qgisSettingsDirPath()) / "gleam_geo" / RESULTS_FILE

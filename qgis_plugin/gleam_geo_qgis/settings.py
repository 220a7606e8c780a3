"""Plugin settings: kept in the user profile (QgsSettings), never in project files.

The worker Python is, in order: the one set in GLEAM settings, ``$GLEAM_GEO_PYTHON``, or
the ``.venv`` of the gleam-geo checkout the plugin lives in (for development installs,
where the plugin folder is linked into the QGIS profile).

Explanations use the backend chosen here. The ``openai`` backend (any OpenAI-compatible
endpoint) gets its base URL and model from these settings and its API key from a QGIS
authentication configuration (the settings keep only its id) or, without one, from
``GLEAM_GEO_LLM_API_KEY`` in the environment QGIS was started with. The key reaches the
worker through its environment only; it is never written to settings, projects or logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsProject, QgsSettings

__all__ = [
    "LLM_KEY_VARIABLE",
    "PluginSettings",
    "WorkerSpec",
    "api_key_source",
    "default_python",
    "explainer_env",
    "plugin_checkout",
    "resolve_worker",
    "results_gpkg_path",
]

KEY_PREFIX = "gleam_geo_qgis"
RESULTS_FILE = "gleam_localizations.gpkg"
LLM_KEY_VARIABLE = "GLEAM_GEO_LLM_API_KEY"
"""The environment variable the library reads the endpoint's API key from."""


@dataclass
class PluginSettings:
    """What the user can set in GLEAM settings.

    Attributes:
        python: the worker's Python interpreter; empty for automatic.
        results_gpkg: the GeoPackage results go to; empty for one in the project folder.
        device: ``cpu``, ``cuda`` or empty for automatic.
        explain_backend: ``evidence`` or ``openai`` (see :data:`~.parameters.EXPLAIN_BACKENDS`);
            empty for ``evidence``.
        language: the explanations' language, ``en`` or ``zh``; empty for ``en``.
        llm_base_url: the ``openai`` backend's base URL (the part before ``/chat/completions``).
        llm_model: the ``openai`` backend's model name.
        llm_authcfg: id of the QGIS authentication configuration that holds the API key
            (its password or token); empty to use the environment.

    """

    python: str = ""
    results_gpkg: str = ""
    device: str = ""
    explain_backend: str = ""
    language: str = ""
    llm_base_url: str = ""
    llm_model: str = ""
    llm_authcfg: str = ""

    @classmethod
    def load(cls) -> PluginSettings:
        """Read the settings from the user profile."""
        store = QgsSettings()
        values = {item.name: str(store.value(f"{KEY_PREFIX}/{item.name}", "") or "") for item in fields(cls)}
        return cls(**values)

    def with_defaults(self) -> PluginSettings:
        """Return a copy with the defaults filled in where a setting is empty."""
        return replace(
            self, explain_backend=self.explain_backend or "evidence", language=self.language or "en"
        )

    def save(self) -> None:
        """Write the settings to the user profile."""
        store = QgsSettings()
        for item in fields(self):
            store.setValue(f"{KEY_PREFIX}/{item.name}", getattr(self, item.name))


@dataclass(frozen=True)
class WorkerSpec:
    """How to start the worker: its interpreter, PYTHONPATH and extra environment.

    ``env`` is left out of ``repr`` because it may hold an API key.
    """

    python: str
    pythonpath: str | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False)


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


def _auth_key(authcfg: str) -> str:
    """Return the API key (password or token) of QGIS authentication configuration ``authcfg``."""
    config = QgsAuthMethodConfig()
    if not authcfg or not QgsApplication.authManager().loadAuthenticationConfig(authcfg, config, True):
        return ""
    return config.config("password") or config.config("token") or ""


def api_key_source(settings: PluginSettings) -> str:
    """Say where the ``openai`` backend's API key comes from, without revealing it."""
    if settings.llm_authcfg:
        return f"QGIS authentication configuration {settings.llm_authcfg}"
    if os.environ.get(LLM_KEY_VARIABLE, "").strip():
        return f"{LLM_KEY_VARIABLE} in the environment"
    return "none (fine for local servers without keys)"


def explainer_env(settings: PluginSettings) -> dict[str, str]:
    """Return the worker environment for the ``openai`` explainer; empty for other backends."""
    if settings.explain_backend != "openai":
        return {}
    env = {
        "GLEAM_GEO_LLM_BASE_URL": settings.llm_base_url.strip(),
        "GLEAM_GEO_LLM_MODEL": settings.llm_model.strip(),
        LLM_KEY_VARIABLE: _auth_key(settings.llm_authcfg),
    }
    return {name: value for name, value in env.items() if value}


def resolve_worker(settings: PluginSettings | None = None, explain: bool = False) -> WorkerSpec:
    """Pick the worker Python (see the module docstring); empty when none is known.

    With ``explain`` the worker also gets the explainer's environment (:func:`explainer_env`).
    """
    settings = settings or PluginSettings.load()
    python = (
        settings.python.strip() or os.environ.get("GLEAM_GEO_PYTHON", "").strip() or default_python() or ""
    )
    root = plugin_checkout()
    pythonpath = None
    if root is not None and python and os.path.abspath(python) == os.path.abspath(_venv_python(root)):
        pythonpath = str(root)  # the checkout's venv runs the checkout's library
    return WorkerSpec(python, pythonpath, explainer_env(settings) if explain else {})


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
    return Path(QgsApplication.qgisSettingsDirPath()) / "gleam_geo" / RESULTS_FILE

"""The ``gleam_geo`` Processing provider: index building and batch localization."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .build_index_algorithm import BuildIndexAlgorithm
from .common import gleam_icon
from .localize_algorithm import LocalizeAlgorithm

__all__ = ["PROVIDER_ID", "GleamProvider"]

PROVIDER_ID = "gleam_geo"


class GleamProvider(QgsProcessingProvider):
    """Provides ``gleam_geo:build_index`` and ``gleam_geo:localize``."""

    def id(self) -> str:
        """Return the provider id used in algorithm ids."""
        return PROVIDER_ID

    def name(self) -> str:
        """Return the provider name shown in the toolbox."""
        return "GLEAM geo-localization"

    def icon(self) -> QIcon:
        """Return the provider icon."""
        return gleam_icon()

    def loadAlgorithms(self) -> None:
        """Register the algorithms."""
        self.addAlgorithm(BuildIndexAlgorithm())
        self.addAlgorithm(LocalizeAlgorithm())

"""The GLEAM dock panel: pick reference imagery and photos, set options, press Localize.

The dock only collects inputs. It builds :mod:`parameters` objects and emits them; the
plugin class runs the work and reports back through :meth:`GleamDock.set_running`,
:meth:`GleamDock.set_progress` and the message bar. The panel never blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from qgis.core import (
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsDockWidget, QgsFileWidget, QgsMapCanvas, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QDragEnterEvent, QDropEvent
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..parameters import MODALITIES, IndexParameters, LocalizeParameters, ParameterError, Region

__all__ = ["IMAGE_SUFFIXES", "REGION_CANVAS", "REGION_POLYGONS", "REGION_WHOLE", "GleamDock", "raster_path"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
REGION_WHOLE, REGION_CANVAS, REGION_POLYGONS = "whole", "canvas", "polygons"
_LAYER_ID = Qt.UserRole
_PATH = Qt.UserRole + 1


def raster_path(layer: QgsRasterLayer) -> str | None:
    """Return the file behind a raster layer, or ``None`` for layers that are not local files."""
    if layer.providerType() != "gdal":
        return None
    path = layer.source().split("|", 1)[0]
    return path if Path(path).is_file() else None


class GleamDock(QgsDockWidget):
    """The GLEAM localization panel.

    Signals:
        localize_requested(LocalizeParameters): the user pressed Localize.
        index_requested(IndexParameters): the user pressed Build index or Update index.
        cancel_requested(): the user pressed Cancel.
        invalid_input(str): an input is missing; the message says which.
    """

    localize_requested = pyqtSignal(object)
    index_requested = pyqtSignal(object)
    cancel_requested = pyqtSignal()
    invalid_input = pyqtSignal(str)

    def __init__(self, canvas: QgsMapCanvas, parent: QWidget | None = None) -> None:
        super().__init__("GLEAM localization", parent)
        self.setObjectName("GleamGeoDock")
        self.canvas = canvas
        self.setAcceptDrops(True)
        body = QWidget(self)
        layout = QVBoxLayout(body)
        layout.addWidget(self._reference_box())
        layout.addWidget(self._photos_box())
        layout.addWidget(self._options_box())
        layout.addLayout(self._run_row())
        layout.addStretch(1)
        self.setWidget(body)
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh_rasters)
        project.layersRemoved.connect(self.refresh_rasters)
        self.refresh_rasters()
        self._update_enabled()

    # -- building the panel ----------------------------------------------------------

    def _reference_box(self) -> QGroupBox:
        box = QGroupBox("Reference imagery", self)
        layout = QVBoxLayout(box)
        self.use_rasters = QRadioButton("Search the ticked raster layers", box)
        self.use_index = QRadioButton("Search an index folder", box)
        self.use_rasters.setChecked(True)
        self._reference_group = QButtonGroup(box)
        self._reference_group.addButton(self.use_rasters)
        self._reference_group.addButton(self.use_index)
        self.raster_list = QListWidget(box)
        self.raster_list.setMaximumHeight(110)
        self.index_dir = QgsFileWidget(box)
        self.index_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.index_dir.setDialogTitle("GLEAM index folder")
        self.build_button = QPushButton("Build index", box)
        self.build_button.setToolTip("Index the ticked rasters into the index folder (replaces it)")
        self.update_button = QPushButton("Update index", box)
        self.update_button.setToolTip("Add the ticked rasters to the index folder")
        buttons = QHBoxLayout()
        buttons.addWidget(self.build_button)
        buttons.addWidget(self.update_button)
        layout.addWidget(self.use_rasters)
        layout.addWidget(self.raster_list)
        layout.addWidget(self.use_index)
        layout.addWidget(self.index_dir)
        layout.addLayout(buttons)
        self.build_button.clicked.connect(lambda: self._request_index(update=False))
        self.update_button.clicked.connect(lambda: self._request_index(update=True))
        return box

    def _photos_box(self) -> QGroupBox:
        box = QGroupBox("Query photos (drop files here)", self)
        layout = QVBoxLayout(box)
        self.image_list = QListWidget(box)
        self.image_list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.image_list.setMaximumHeight(120)
        self.add_images_button = QPushButton("Add photos…", box)
        self.remove_images_button = QPushButton("Remove", box)
        self.clear_images_button = QPushButton("Clear", box)
        buttons = QHBoxLayout()
        for button in (self.add_images_button, self.remove_images_button, self.clear_images_button):
            buttons.addWidget(button)
        layout.addWidget(self.image_list)
        layout.addLayout(buttons)
        self.add_images_button.clicked.connect(self._pick_images)
        self.remove_images_button.clicked.connect(self._remove_selected_images)
        self.clear_images_button.clicked.connect(self.image_list.clear)
        return box

    def _options_box(self) -> QGroupBox:
        box = QGroupBox("Options", self)
        form = QFormLayout(box)
        self.modality = QComboBox(box)
        self.modality.addItems(MODALITIES)
        self.region_mode = QComboBox(box)
        self.region_mode.addItem("Whole reference imagery", REGION_WHOLE)
        self.region_mode.addItem("Map canvas extent", REGION_CANVAS)
        self.region_mode.addItem("Selected polygons of a layer", REGION_POLYGONS)
        self.region_layer = QgsMapLayerComboBox(box)
        self.region_layer.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.top_k = QSpinBox(box)
        self.top_k.setRange(1, 1000)
        self.top_k.setValue(10)
        self.refine = QCheckBox("Refine (heading, error radius, match probability)", box)
        self.refine.setChecked(True)
        self.query_gsd = QDoubleSpinBox(box)
        self.query_gsd.setRange(0.0, 1000.0)
        self.query_gsd.setDecimals(3)
        self.query_gsd.setSuffix(" m/px")
        self.query_gsd.setSpecialValueText("unknown")
        self.query_gsd.setToolTip(
            "Ground size of one photo pixel, when known (e.g. from flight height and camera). "
            "Lets refinement find imagery of another date by its layout of roads and field edges."
        )
        self.explain = QCheckBox(box)
        self.show_explainer("evidence")
        self.footprints = QCheckBox("Add a footprints layer", box)
        self.footprints.setChecked(True)
        form.addRow("Modality", self.modality)
        form.addRow("Region", self.region_mode)
        form.addRow("Polygons", self.region_layer)
        form.addRow("Top-K", self.top_k)
        form.addRow(self.refine)
        form.addRow("Photo ground size", self.query_gsd)
        form.addRow(self.explain)
        form.addRow(self.footprints)
        self.region_mode.currentIndexChanged.connect(self._update_enabled)
        self.refine.toggled.connect(self.query_gsd.setEnabled)  # only refinement uses it
        return box

    def _run_row(self) -> QVBoxLayout:
        layout = QVBoxLayout()
        buttons = QHBoxLayout()
        self.localize_button = QPushButton("Localize", self)
        self.localize_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setEnabled(False)
        buttons.addWidget(self.localize_button)
        buttons.addWidget(self.cancel_button)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.status = QLabel("Ready", self)
        self.status.setWordWrap(True)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.localize_button.clicked.connect(self._request_localize)
        self.cancel_button.clicked.connect(self.cancel_requested.emit)
        return layout

    def show_explainer(self, backend: str) -> None:
        """Name the explainer backend (chosen in GLEAM settings) beside the explain checkbox."""
        self.explain.setText(f"Explain the best matches ({backend})")
        self.explain.setToolTip(
            "Adds a verdict, an explanation and a figure (photo beside chip) to the top candidates; "
            "choose the explainer and language in GLEAM settings"
        )

    def _update_enabled(self) -> None:
        self.region_layer.setEnabled(self.region_mode.currentData() == REGION_POLYGONS)

    def cleanup(self) -> None:
        """Stop listening to the project (called when the plugin unloads)."""
        project = QgsProject.instance()
        project.layersAdded.disconnect(self.refresh_rasters)
        project.layersRemoved.disconnect(self.refresh_rasters)

    # -- inputs ----------------------------------------------------------------------

    def refresh_rasters(self, *_args: object) -> None:
        """List the project's file-backed raster layers, keeping the ticks of those still there."""
        ticked = set(self._ticked_layer_ids())
        first_fill = self.raster_list.count() == 0
        self.raster_list.clear()
        for layer in QgsProject.instance().mapLayers().values():
            if not isinstance(layer, QgsRasterLayer) or raster_path(layer) is None:
                continue
            item = QListWidgetItem(layer.name(), self.raster_list)
            item.setData(_LAYER_ID, layer.id())
            item.setToolTip(raster_path(layer) or "")
            item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
            checked = layer.id() in ticked or (first_fill and not ticked)
            item.setCheckState(Qt.Checked if checked else Qt.Unchecked)

    def _ticked_layer_ids(self) -> list[str]:
        items = (self.raster_list.item(row) for row in range(self.raster_list.count()))
        return [item.data(_LAYER_ID) for item in items if item.checkState() == Qt.Checked]

    def ticked_rasters(self) -> tuple[str, ...]:
        """Return the files of the ticked raster layers."""
        paths = []
        for layer_id in self._ticked_layer_ids():
            layer = QgsProject.instance().mapLayer(layer_id)
            path = raster_path(layer) if isinstance(layer, QgsRasterLayer) else None
            if path:
                paths.append(path)
        return tuple(paths)

    def images(self) -> tuple[str, ...]:
        """Return the query photo paths, in list order."""
        return tuple(self.image_list.item(row).data(_PATH) for row in range(self.image_list.count()))

    def add_images(self, paths: Iterable[str]) -> int:
        """Add image files (others and duplicates are skipped); return how many were added."""
        present = set(self.images())
        added = 0
        for path in paths:
            if Path(path).suffix.lower() in IMAGE_SUFFIXES and Path(path).is_file() and path not in present:
                item = QListWidgetItem(Path(path).name, self.image_list)
                item.setData(_PATH, path)
                item.setToolTip(path)
                present.add(path)
                added += 1
        return added

    def _pick_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Query photos", "", "Images (" + " ".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES) + ")"
        )
        self.add_images(paths)

    def _remove_selected_images(self) -> None:
        for item in self.image_list.selectedItems():
            self.image_list.takeItem(self.image_list.row(item))

    def region(self) -> Region | None:
        """Return the search region from the region setting (``None``: the whole reference)."""
        mode = self.region_mode.currentData()
        if mode == REGION_CANVAS:
            crs = self.canvas.mapSettings().destinationCrs()
            return Region(QgsGeometry.fromRect(self.canvas.extent()).asWkt(), crs.authid() or crs.toWkt())
        if mode == REGION_POLYGONS:
            layer = self.region_layer.currentLayer()
            if not isinstance(layer, QgsVectorLayer):
                raise ParameterError("choose the polygon layer whose selected polygons bound the search")
            geometries = [feature.geometry() for feature in layer.selectedFeatures() if feature.hasGeometry()]
            if not geometries:
                raise ParameterError(f"select one or more polygons in layer {layer.name()!r} first")
            crs = layer.crs()
            return Region(QgsGeometry.unaryUnion(geometries).asWkt(), crs.authid() or crs.toWkt())
        return None

    def localize_parameters(self) -> LocalizeParameters:
        """Build the Localize parameters from the panel.

        Raises:
            ParameterError: something needed is missing.

        """
        use_index = self.use_index.isChecked()
        return LocalizeParameters(
            images=self.images(),
            rasters=() if use_index else self.ticked_rasters(),
            index_dir=self.index_dir.filePath() if use_index else "",
            region=self.region(),
            modality=self.modality.currentText(),
            top_k=self.top_k.value(),
            refine=self.refine.isChecked(),
            query_gsd_m=self.query_gsd.value(),
            explain=self.explain.isChecked(),
            footprints=self.footprints.isChecked(),
        )

    def index_parameters(self, update: bool) -> IndexParameters:
        """Build the Build/Update index parameters from the panel.

        Raises:
            ParameterError: something needed is missing.

        """
        return IndexParameters(
            rasters=self.ticked_rasters(), index_dir=self.index_dir.filePath(), update=update
        )

    def _request_localize(self) -> None:
        try:
            parameters = self.localize_parameters()
        except ParameterError as exc:
            self.invalid_input.emit(str(exc))
            return
        self.localize_requested.emit(parameters)

    def _request_index(self, update: bool) -> None:
        try:
            parameters = self.index_parameters(update)
        except ParameterError as exc:
            self.invalid_input.emit(str(exc))
            return
        self.index_requested.emit(parameters)

    # -- feedback from the plugin ------------------------------------------------------

    def set_running(self, running: bool, text: str = "") -> None:
        """Switch between idle and running: buttons, progress bar and status line."""
        for button in (self.localize_button, self.build_button, self.update_button):
            button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setValue(0)
        self.status.setText(text or ("Running…" if running else "Ready"))

    def set_progress(self, percent: float) -> None:
        """Show the running task's progress."""
        self.progress.setValue(int(percent))

    def set_status(self, text: str) -> None:
        """Show a short status line."""
        self.status.setText(text)

    # -- drag and drop -------------------------------------------------------------------

    def _dropped_images(self, event: QDragEnterEvent | QDropEvent) -> list[str]:
        if not event.mimeData().hasUrls():
            return []
        paths = (url.toLocalFile() for url in event.mimeData().urls() if url.isLocalFile())
        return [path for path in paths if Path(path).suffix.lower() in IMAGE_SUFFIXES]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        """Accept drags that carry image files."""
        if self._dropped_images(event):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        """Add dropped image files to the query photos."""
        added = self.add_images(self._dropped_images(event))
        if added:
            event.acceptProposedAction()
            self.set_status(f"Added {added} photo(s)")

"""The notebooks run end to end (executed here, in a temporary folder)."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("GLEAM_GEO_DATA", str(shared_data))
    monkeypatch.setenv("GLEAM_GEO_CACHE", str(tmp_path / "cache"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # the map cell rendered an interactive folium map
    assert any("folium" in str(o.get("data", {}).get("text/html", "")) for o in outputs)

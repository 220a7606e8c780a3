# gleam-geo developer commands. `make demo` and `make test` set up what they need first.
VENV := .venv
PY := $(VENV)/bin/python
export QT_QPA_PLATFORM ?= offscreen

.PHONY: setup demo test lint plugin bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	$(PY) -m gleam_geo.cli demo --out demo_output

test: setup
	$(PY) -m pytest -q -m "not slow"

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m pip install -q -c constraints.txt -e ".[cpu,bench]"
	$(PY) benchmarks/run_all.py

plugin:
	python3 scripts/build_plugin.py dist/gleam_geo_qgis.zip

clean:
	rm -rf demo_output build dist *.egg-info .pytest_cache

"""The worker protocol, spoken line by line to ``python -m gleam_geo.worker``."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from plugin_test_utils import MAX_ERROR_M, REPO, distance_m


class RawWorker:
    """A worker process driven by hand: write request lines, read event lines."""

    def __init__(self, spec) -> None:
        from gleam_geo_qgis.worker_client import worker_env

        self.process = subprocess.Popen(
            [spec.python, "-m", "gleam_geo.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=tempfile.gettempdir(),
            env=worker_env(spec.pythonpath),
        )
        self.lines: list[str] = []

    def send_line(self, line: str) -> None:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def send(self, request_id, method: str, params: dict | None = None) -> None:
        self.send_line(json.dumps({"id": request_id, "method": method, "params": params or {}}))

    def read(self) -> dict:
        line = self.process.stdout.readline()
        assert line, f"worker closed stdout; stderr: {self.process.stderr.read()[-2000:]}"
        self.lines.append(line)
        return json.loads(line)

    def until_final(self, request_id) -> tuple[dict, list[dict]]:
        """Read events of ``request_id`` up to its result or error; return it and the progress events."""
        progress = []
        while True:
            event = self.read()
            if event.get("id") != request_id:
                continue
            if event["event"] == "progress":
                progress.append(event)
            else:
                return event, progress

    def close(self) -> int:
        self.process.stdin.close()
        rest = self.process.stdout.read()
        self.lines.extend(line + "\n" for line in rest.splitlines())
        return self.process.wait(timeout=30)


@pytest.fixture
def raw_worker(worker_spec):
    worker = RawWorker(worker_spec)
    ready = worker.read()
    assert ready["event"] == "ready" and ready["protocol"] == 1
    yield worker
    if worker.process.poll() is None:
        worker.process.kill()
        worker.process.wait()


def test_ping_and_environment(raw_worker):
    raw_worker.send(1, "ping")
    pong, _ = raw_worker.until_final(1)
    assert pong["event"] == "result" and pong["result"]["pong"] is True
    assert pong["result"]["pid"] == raw_worker.process.pid
    raw_worker.send("env", "environment")
    event, _ = raw_worker.until_final("env")
    info = event["result"]
    import faiss
    import torch

    assert info["python"] == ".".join(map(str, sys.version_info[:3]))
    assert info["torch"] == torch.__version__
    assert info["faiss"] == faiss.__version__
    assert info["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["ok"] is True, info["problems"]
    assert raw_worker.close() == 0
    for line in raw_worker.lines:  # stdout carries protocol lines only
        assert isinstance(json.loads(line), dict)


def test_malformed_requests_get_error_events_and_the_worker_goes_on(raw_worker):
    raw_worker.send_line("{this is not json")
    event = raw_worker.read()
    assert event == {
        "id": None,
        "event": "error",
        "error_type": "ProtocolError",
        "message": event["message"],
    }
    assert "not valid JSON" in event["message"]
    raw_worker.send(7, "no_such_method")
    event, _ = raw_worker.until_final(7)
    assert event["error_type"] == "ProtocolError" and "unknown method 'no_such_method'" in event["message"]
    raw_worker.send(8, "localize", {"index": "/somewhere"})
    event, _ = raw_worker.until_final(8)
    assert event["error_type"] == "ProtocolError" and "params.images" in event["message"]
    raw_worker.send(9, "ping")
    event, _ = raw_worker.until_final(9)
    assert event["event"] == "result"


def test_missing_raster_is_an_error_event_with_the_library_message(raw_worker, query_crop, tmp_path):
    missing = tmp_path / "no_such_raster.tif"
    raw_worker.send(3, "build_index", {"rasters": [str(missing)], "out_dir": str(tmp_path / "index")})
    event, _ = raw_worker.until_final(3)
    assert event["event"] == "error"
    assert event["error_type"] in ("RasterReadError", "FileNotFoundError")
    assert "no_such_raster.tif" in event["message"] and "\n" not in event["message"]
    assert not (tmp_path / "index").exists() and not (tmp_path / ".index.partial").exists()
    raw_worker.send(4, "localize", {"images": [query_crop["path"]], "rasters": [str(missing)]})
    event, _ = raw_worker.until_final(4)
    assert event["event"] == "error" and "no_such_raster.tif" in event["message"]
    raw_worker.send(5, "index_info", {"index": str(tmp_path)})
    event, _ = raw_worker.until_final(5)
    assert event["event"] == "error" and event["error_type"] not in ("ProtocolError", "")


def test_localize_many_images_finds_the_crop(raw_worker, kampala_index, query_crop, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    chips = tmp_path / "chips"
    raw_worker.send(
        "loc",
        "localize",
        {
            "images": [str(broken), query_crop["path"]],
            "index": kampala_index["path"],
            "top_k": 3,
            "refine": True,
            "query_gsd_m": 0.3,  # the crop keeps kampala_z19's own pixels
            "chip_dir": str(chips),
        },
    )
    event, progress = raw_worker.until_final("loc")
    assert event["event"] == "result", event
    result = event["result"]
    assert [p["done"] for p in progress if p["stage"] == "localize"][-1] == 2
    assert [failure["image"] for failure in result["failed"]] == [str(broken)]
    assert result["failed"][0]["error_type"] == "CorruptImageError"
    features = result["results"]["features"]
    assert [feature["properties"]["rank"] for feature in features] == [1, 2, 3]
    best = features[0]
    lon, lat = best["geometry"]["coordinates"]
    error_m = distance_m(lon, lat, query_crop["lon"], query_crop["lat"])
    assert error_m < MAX_ERROR_M, f"best candidate {error_m:.0f} m from the truth: {features}"
    assert best["properties"]["query_path"] == query_crop["path"]
    assert best["properties"]["footprint"]["type"] == "Polygon"
    assert Path(best["properties"]["chip_image_path"]).is_file()
    from gleam_geo.api import localize

    offers_refine = "refine" in inspect.signature(localize).parameters
    assert any("refine" in note for note in result["notes"]) is not offers_refine
    assert not any("query_gsd_m" in note for note in result["notes"])  # reached localize()
    assert best["properties"]["refine_method"] == "keypoints"  # the crop matches the index's own date


def test_stdout_noise_goes_to_stderr(worker_spec):
    """Anything printed (by Python or C code) after the worker claims stdout goes to stderr."""
    code = (
        "import os, sys; from gleam_geo import worker; out = worker._claim_stdout(); "
        "print('python noise'); sys.stdout.flush(); os.write(1, b'c noise\\n'); "
        "worker.Output(out).send({'id': 1, 'event': 'result', 'result': {}})"
    )
    from gleam_geo_qgis.worker_client import worker_env

    result = subprocess.run(
        [worker_spec.python, "-c", code],
        capture_output=True,
        text=True,
        env=worker_env(worker_spec.pythonpath or str(REPO)),
        cwd=tempfile.gettempdir(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"id": 1, "event": "result", "result": {}}']
    assert "python noise" in result.stderr and "c noise" in result.stderr

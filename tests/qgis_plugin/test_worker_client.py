"""The plugin's worker client: starting, failing clearly, cancelling, redacting."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time

import pytest
from gleam_geo_qgis.worker_client import (
    WorkerCancelled,
    WorkerClient,
    WorkerPool,
    WorkerRequestError,
    WorkerStartError,
    redact,
)
from plugin_test_utils import process_alive


def test_call_returns_results_and_close_stops_the_process(worker_spec):
    client = WorkerClient(worker_spec.python, pythonpath=worker_spec.pythonpath)
    with client:
        assert client.ready["protocol"] == 1
        assert client.call("ping")["pid"] == client.pid
        with pytest.raises(WorkerRequestError) as error:
            client.call("index_info", {"index": "/nonexistent/gleam_index"})
        assert error.value.error_type != "ProtocolError"
        assert "/nonexistent/gleam_index" in error.value.message
        assert client.call("ping")["pong"] is True  # still serving after an error
        pid = client.pid
    assert not client.is_running()
    assert not process_alive(pid)


def test_missing_python_gives_a_clear_message(tmp_path):
    with pytest.raises(WorkerStartError, match=r"worker Python not found: .*nope.*GLEAM settings"):
        WorkerClient(str(tmp_path / "nope" / "python")).start()


def test_python_without_gleam_geo_gives_a_clear_message(tmp_path):
    # A Python that cannot see gleam_geo whatever the environment: isolated mode, no site-packages.
    wrapper = tmp_path / "python"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/python3 -I -S "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    client = WorkerClient(str(wrapper))
    with pytest.raises(WorkerStartError) as error:
        client.start()
    message = str(error.value)
    assert "cannot run gleam_geo" in message and "No module named" in message
    assert "install gleam-geo" in message and "\n" not in message
    assert not client.is_running()


def test_cancel_stops_a_request_and_the_worker(worker_spec, kampala, tmp_path):
    cancel = threading.Event()
    stages: list[str] = []

    def on_progress(stage, done, total):
        stages.append(stage)
        if done > 0:
            cancel.set()

    client = WorkerClient(worker_spec.python, pythonpath=worker_spec.pythonpath, cancel_grace_s=5)
    out = tmp_path / "index"
    with client, pytest.raises(WorkerCancelled):
        client.call(
            "build_index",
            {"rasters": [str(kampala)], "out_dir": str(out)},
            on_progress=on_progress,
            is_cancelled=cancel.is_set,
        )
    assert stages, "no progress before the cancel"
    deadline = time.monotonic() + 5
    while client.is_running() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not client.is_running()
    assert not out.exists() and not (tmp_path / ".index.partial").exists()


def test_redact_hides_keys():
    text = redact("calling with api_key=abc123 and Authorization: Bearer-x sk-ABCDEFGHIJKLMNOP")
    assert "abc123" not in text and "ABCDEFGHIJKLMNOP" not in text
    assert redact("ordinary progress line") == "ordinary progress line"


def test_clean_staging_removes_partial_builds_and_restores_a_replaced_index(tmp_path):
    from gleam_geo_qgis.worker_client import clean_staging, staging_dir

    from gleam_geo.worker import staging_dir as worker_staging_dir

    target = tmp_path / "idx"
    assert staging_dir(target) == worker_staging_dir(target)  # both sides agree on the name
    staging_dir(target).mkdir()
    (tmp_path / ".idx.old").mkdir()
    (tmp_path / ".idx.old" / "manifest.json").write_text("{}")
    clean_staging("add_to_index", {"index": str(target)})
    assert not staging_dir(target).exists()
    assert (target / "manifest.json").is_file() and not (tmp_path / ".idx.old").exists()
    staging_dir(target).mkdir()
    clean_staging("localize", {"index": str(target)})  # other methods write no index
    assert staging_dir(target).exists()


def _wait_dead(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not process_alive(pid)


def test_pool_keeps_one_worker_and_replaces_it_when_needed(worker_spec, tmp_path):
    python, pythonpath = worker_spec.python, worker_spec.pythonpath
    pool = WorkerPool()
    with pool.lease(python, pythonpath) as client:
        kept = client.call("ping")["pid"]
    with pool.lease(python, pythonpath) as client:
        assert client.call("ping")["pid"] == kept  # reused, not restarted
    with pool.lease(python, pythonpath) as busy, pool.lease(python, pythonpath) as other:
        assert busy.pid == kept and other.pid != kept  # no queueing behind a running request
        private = other.pid
    assert _wait_dead(private) and pool.pid == kept
    with pytest.raises(WorkerRequestError), pool.lease(python, pythonpath) as client:
        client.call("index_info", {"index": "/nonexistent/gleam_index"})
    assert pool.pid == kept  # an error answer keeps the worker
    os.kill(kept, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pool.pid is not None and time.monotonic() < deadline:  # pool.pid polls (and reaps) it
        time.sleep(0.05)
    assert pool.pid is None
    with pool.lease(python, pythonpath) as client:
        restarted = client.call("ping")["pid"]
    assert restarted != kept
    wrapper = tmp_path / "python"  # another Python setting, same interpreter
    wrapper.write_text(f'#!/bin/sh\nexec {python} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    with pool.lease(str(wrapper), pythonpath) as client:
        switched = client.call("ping")["pid"]
    assert switched != restarted and _wait_dead(restarted)
    pool.close()
    assert pool.pid is None and _wait_dead(switched)

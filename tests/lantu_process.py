"""Starting and stopping a real ``lantu serve`` for tests (used by conftest's ``lantu_serve`` fixture and by
tests that run several instances). Imported as a top-level module: pytest puts tests/ on sys.path, and the
name ``tests`` is taken by a package in site-packages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests


@contextmanager
def serve_process(home: Path, settings_file: Path, port: int, log: Path, timeout_s: float = 90
                  ) -> Iterator[tuple[str, subprocess.Popen]]:
    """``lantu serve`` (gunicorn, 2 workers) on 127.0.0.1:``port`` until the block ends; yields ``(url,
    process)`` once ``/healthz`` answers 200. The log is appended to (a restarted server keeps one log)."""
    env = {k: v for k, v in os.environ.items() if k not in ("LANTU_DATABASE_URL", "LANTU_PUBLIC_URL", "LANTU_BIND")}
    env.update(LANTU_HOME=str(home), LANTU_SETTINGS=str(settings_file))
    with open(log, "ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "lantu.server.cli", "serve", "--bind",
                                    f"127.0.0.1:{port}", "--workers", "2"], env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(f"lantu serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lantu serve not healthy within {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield url, process
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL to the whole process group after 20 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

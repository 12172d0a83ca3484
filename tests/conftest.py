"""Session fixtures: one throwaway PostGIS cluster (initdb in a temp dir, free port), the small demo
county loaded once, torn down at the end. Tests that need a running server start it themselves."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from lantu.config.registry import Registry, load_registry
from lantu.config.settings import Settings, load_settings
from lantu.providers.cluster import Cluster
from lantu.providers.database import prepare
from lantu.providers.pool import Pool

SHARED = Path(__file__).resolve().parents[2] / "shared"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def port_factory():
    """A callable returning a free loopback port (modules cannot import conftest: a `tests` package from
    site-packages would shadow it)."""
    return free_port


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "blueprint-layers.csv").exists():
        pytest.fail(f"../shared (the platform's layer list and conformance data) not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="session")
def lantu_home():
    # Under /tmp (world-traversable) so the `postgres` user can own the cluster when tests run as root.
    home = Path(tempfile.mkdtemp(prefix="lantu-test-", dir="/tmp"))
    os.chmod(home, 0o755)
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(lantu_home: Path) -> Settings:
    return load_settings(overrides={"home": str(lantu_home), "pg_port": free_port()}, environ={})


@pytest.fixture(scope="session")
def cluster(settings: Settings):
    cluster = Cluster.from_settings(settings)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pool(settings: Settings, registry: Registry, cluster: Cluster) -> Pool:
    pool = prepare(settings, registry)
    yield pool
    pool.close()


@pytest.fixture(scope="session")
def small_demo(pool: Pool, registry: Registry, settings: Settings) -> dict:
    """The small demo county, loaded once into the throwaway cluster (summary of ``load_demo``)."""
    from lantu.demo.load import load_demo

    return load_demo(pool, registry, settings, scale="small")


@contextmanager
def _lantu_serve(settings: Settings, port: int, work: Path):
    """Run ``lantu serve`` (gunicorn, 2 workers) over the session database until the block ends; yields
    ``(url, log path, process)`` once ``/healthz`` answers 200."""
    settings_file = work / "settings.yaml"
    settings_file.write_text(f"pg_port: {settings.pg_port}\npublic_url: http://127.0.0.1:{port}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LANTU_DATABASE_URL", "LANTU_PUBLIC_URL", "LANTU_BIND")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(settings_file))
    log = work / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lantu.server.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                pytest.fail(f"lantu serve exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"lantu serve not healthy within 60 s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield url, log, process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def lantu_serve(settings: Settings, port_factory, tmp_path_factory):
    """``with lantu_serve("name") as (url, log, process):`` — a real server on a free loopback port."""
    def start(name: str):
        return _lantu_serve(settings, port_factory(), tmp_path_factory.mktemp(name))
    return start

"""Session fixtures: one throwaway PostGIS cluster (initdb in a temp dir, free port), the small demo
county loaded once, torn down at the end. Tests that need a running server start it themselves."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

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

"""Session fixtures: one throwaway PostGIS cluster (initdb in a temp dir, free port), the small demo
county loaded once, torn down at the end. Tests that need a running server start it themselves."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
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


@pytest.fixture(scope="session")
def anonymous_may(registry):
    """``anonymous_may(action)``: the vector layers the shipped access policy lets an anonymous caller
    discover / view / download (or ``list``: both) — what client tests without credentials must see."""
    from lantu.config.policy import ANONYMOUS, load_policy

    policy = load_policy(registry)

    def may(action: str) -> set[str]:
        # "list": what /collections lists — feature collections the caller may discover and download
        actions = ("discover", "download") if action == "list" else (action,)
        return {layer.id for layer in registry.vector_layers()
                if all(policy.allows(ANONYMOUS, layer.id, a) for a in actions)}
    return may


@contextmanager
def _lantu_serve(settings: Settings, port: int, work: Path, extra_settings: str = ""):
    """Run ``lantu serve`` (gunicorn, 2 workers) over the session database until the block ends; yields
    ``(url, log path, process)`` once ``/healthz`` answers 200. ``extra_settings``: more YAML lines."""
    from lantu_process import serve_process

    settings_file = work / "settings.yaml"
    settings_file.write_text(f"pg_port: {settings.pg_port}\npublic_url: http://127.0.0.1:{port}\n{extra_settings}")
    log = work / "serve.log"
    with serve_process(settings.home, settings_file, port, log, timeout_s=60) as (url, process):
        yield url, log, process


@pytest.fixture(scope="session")
def lantu_serve(settings: Settings, port_factory, tmp_path_factory):
    """``with lantu_serve("name") as (url, log, process):`` — a real server on a free loopback port."""
    def start(name: str, extra_settings: str = ""):
        return _lantu_serve(settings, port_factory(), tmp_path_factory.mktemp(name), extra_settings)
    return start


CLIENTS = Path(__file__).resolve().parent / "clients"
VENV_ROOT = Path(os.environ.get("LANTU_TEST_VENVS") or "/var/tmp/lantu-test-venvs")


@pytest.fixture(scope="session")
def announce(pytestconfig):
    """``announce(message)``: a line on the terminal even while output is captured."""
    def say(message: str) -> None:
        reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
        capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
        if reporter is None or capture is None:
            print(f"[clients] {message}", file=sys.stderr)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"[clients] {message}", yellow=True)
    return say


@pytest.fixture(scope="session")
def side_venv(announce):
    """``side_venv(name)``: the python of a venv with ``tests/clients/<name>-requirements.txt`` installed, for
    clients whose pins clash with Lantu's (design brief §11). Made on first use and cached by the hash of the
    requirements and of the interpreter; creation is serialised by a lock file and marked complete only at
    the end, so parallel runs and interrupted builds are safe."""
    def make(name: str) -> Path:
        requirements = CLIENTS / f"{name}-requirements.txt"
        digest = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
        target = VENV_ROOT / f"{name}-{digest}"
        python = target / "bin" / "python"
        if (target / ".complete").exists():
            return python
        VENV_ROOT.mkdir(parents=True, exist_ok=True)
        with open(VENV_ROOT / f".{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (target / ".complete").exists():  # made by a parallel run while we waited
                return python
            announce(f"FIRST RUN: creating side venv {target} from {requirements.name} (cached afterwards)")
            started = time.monotonic()
            shutil.rmtree(target, ignore_errors=True)  # an interrupted build has no .complete marker
            subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
            pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  "-r", str(requirements)], capture_output=True, text=True, timeout=900)
            if pip.returncode != 0:
                shutil.rmtree(target, ignore_errors=True)
                pytest.fail(f"pip could not build the {name} side venv:\n{pip.stdout[-3000:]}\n{pip.stderr[-3000:]}")
            (target / ".complete").write_text(requirements.read_text())
            announce(f"side venv {target.name} ready in {time.monotonic() - started:.0f} s")
        return python
    return make

"""The embedded database CLI, the served application and recovery after PostgreSQL restarts.

These use a cluster of their own (not the session one) because they stop and kill it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from lantu.config.settings import load_settings
from lantu.providers.cluster import Cluster
from lantu.providers.migrate import available
from lantu.providers.pool import get_pool
from lantu.server.app import create_app
from lantu.server.cli import main


@pytest.fixture(scope="module")
def own_env(tmp_path_factory, port_factory):
    home = tmp_path_factory.mktemp("own", numbered=True)
    os.chmod(home, 0o755)
    for parent in home.parents:  # the postgres user must traverse to it (pytest's tmp root is 0700)
        if str(parent).startswith("/tmp/pytest-of-"):
            os.chmod(parent, 0o755)
    settings_file = home / "settings.yaml"
    settings_file.write_text(f"pg_port: {port_factory()}\npool_ping_after_s: 0.5\n")
    env = {"LANTU_HOME": str(home), "LANTU_SETTINGS": str(settings_file)}
    yield env
    Cluster.from_settings(load_settings(environ=env)).stop()


def _run(env, *args):
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.output


def test_db_stop_start_keeps_data(own_env):
    code, out = _run(own_env, "db", "start")
    assert code == 0, out
    settings = load_settings(environ=own_env)
    with get_pool(settings).connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM blueprint.key_projects")
        cur.execute("INSERT INTO blueprint.key_projects (bsm, ysdm, xzqdm, xzqmc, xmmc, geom) VALUES "
                    "('430121000000000001', '9900000010', '430121', '长沙县', '黄花机场扩建', "
                    "ST_SetSRID(ST_MakePoint(113.22, 28.19), 4490))")
    assert _run(own_env, "db", "stop") == (0, "database stopped\n")
    code, out = _run(own_env, "db", "status")
    assert code == 1 and "not running" in out
    code, out = _run(own_env, "db", "start")
    assert code == 0 and "started" in out
    code, out = _run(own_env, "db", "status")
    assert code == 0 and f"schema version {available()[-1].version}" in out, out
    with get_pool(settings).connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT xmmc, ST_X(geom), ST_Y(geom) FROM blueprint.key_projects")
        assert cur.fetchall() == [("黄花机场扩建", 113.22, 28.19)]
    code, out = _run(own_env, "db", "start")
    assert code == 0 and "already running" in out


def test_cli_exit_codes(own_env, tmp_path):
    assert _run(own_env, "layers", "show", "no_such_layer")[0] == 2
    assert _run(own_env, "load", str(tmp_path / "missing.gpkg"), "--layer", "basic_farmland")[0] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - id: Bad-Id\n")
    result = CliRunner().invoke(main, ["layers", "validate", "--file", str(bad)], env=own_env)
    assert result.exit_code == 1
    assert "layers.Bad-Id.id" in result.output
    code, out = _run(own_env, "layers", "list")
    assert code == 0 and len(out.splitlines()) == 84 and "永久基本农田" in out


def _wait_healthy(url: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:  # not listening yet, or workers still booting
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} not healthy within {timeout} s")


def test_healthz_recovers_after_postgres_is_killed(own_env, port_factory):
    code, out = _run(own_env, "db", "start")
    assert code == 0, out
    port = port_factory()
    server = subprocess.Popen([sys.executable, "-m", "lantu.server.cli", "serve", "--bind", f"127.0.0.1:{port}",
                               "--workers", "2"], env={**os.environ, **own_env},
                              stdout=subprocess.DEVNULL, stderr=open("/tmp/srv-test.log", "w"))
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        _wait_healthy(url, 30)
        cluster = Cluster.from_settings(load_settings(environ=own_env))
        # Immediate shutdown = SIGQUIT to the postmaster: backends die, no checkpoint (crash recovery on start).
        cluster._run([cluster.bin_dir / "pg_ctl", "stop", "-m", "immediate", "-D", cluster.data_dir])
        down = requests.get(url, timeout=5)
        assert down.status_code == 503
        assert down.json()["checks"]["database"] == {"ok": False, "error": "database unreachable"}
        cluster.start()
        assert _wait_healthy(url, 5) < 5
        for _ in range(6):  # every worker and every pooled connection recovered, not just one
            assert requests.get(url, timeout=5).status_code == 200
        assert server.poll() is None  # Lantu was not restarted
    finally:
        server.terminate()
        server.wait(10)


def test_landing_page_and_json_errors(settings, registry, pool):
    client = create_app(settings, registry).test_client()
    html = client.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 200 and "永久基本农田" in html.get_data(as_text=True)
    doc = client.get("/?f=json").get_json()
    rels = {link["rel"]: link["href"] for link in doc["links"]}
    assert rels["service-status"] == f"{settings.public_url}/healthz"
    assert rels["conformance"].startswith(f"{settings.public_url}/conformance")
    assert rels["data"].startswith(f"{settings.public_url}/collections")
    missing = client.get("/no/such/path")
    assert missing.status_code == 404 and missing.mimetype == "application/problem+json"
    assert missing.get_json()["status"] == 404


def test_healthz_in_process(pool, settings, registry):
    client = create_app(settings, registry).test_client()
    body = client.get("/healthz").get_json()
    assert body["status"] == "ok" and body["checks"]["registry"]["vector"] == 73


def test_refuses_private_home_for_postgres_user(port_factory):
    if os.geteuid() != 0:
        pytest.skip("only root hands the cluster to the postgres user")
    private = Path("/root") / f"lantu-private-{os.getpid()}"
    try:
        settings = load_settings(overrides={"home": str(private), "pg_port": port_factory()}, environ={})
        from lantu.providers.cluster import ClusterError

        with pytest.raises(ClusterError, match="LANTU_HOME=/var/tmp/lantu"):
            Cluster.from_settings(settings).start()
    finally:
        subprocess.run(["rm", "-rf", str(private)])

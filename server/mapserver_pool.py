"""Lantu starts, supervises and restarts ``mapserv`` FastCGI workers, one unix socket each.

``spawn-fcgi -n`` binds the socket and execs mapserv in the foreground, so the child Lantu watches *is*
the worker: when it dies (crash, SIGKILL, out-of-memory kill) the supervisor thread starts a new one on
the same socket within ``RESTART_POLL_S``. The gunicorn master owns the pool; request workers only connect
to the sockets (``sockets()``), trying the next one when a socket does not answer.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
RESTART_POLL_S = 0.2


def socket_paths(run_dir: Path, count: int) -> list[Path]:
    return [run_dir / "mapserv" / f"mapserv-{i}.sock" for i in range(count)]


class MapserverPool:
    def __init__(self, run_dir: Path, count: int, env: dict[str, str]):
        self.paths = socket_paths(run_dir, count)
        self.env = env
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, index: int) -> subprocess.Popen:
        path = self.paths[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        spawner = shutil.which("spawn-fcgi") or "/usr/bin/spawn-fcgi"
        mapserv = shutil.which("mapserv") or "/usr/bin/mapserv"
        return subprocess.Popen([spawner, "-n", "-s", str(path), "-M", "0600", "--", mapserv],
                                env={**os.environ, **self.env}, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    def start(self) -> None:
        for i in range(len(self.paths)):
            self.procs[i] = self._spawn(i)
        self._thread = threading.Thread(target=self._supervise, name="mapserv-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(RESTART_POLL_S):
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    log.warning("mapserv worker %d exited with %s; restarting", i, proc.returncode)
                    self.procs[i] = self._spawn(i)
                    self.restarts += 1

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop the workers: SIGTERM, then SIGKILL after ``grace_s`` (mapserv under libfcgi may not act on
        SIGTERM while it waits in accept(); it keeps no state worth a slower shutdown)."""
        self._stop.set()
        if self._thread:
            self._thread.join(2)
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in running:
            proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in running:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        for path in self.paths:
            path.unlink(missing_ok=True)


def write_ows_config(settings, registry):
    """Generate the MapServer and MapProxy configuration from the registry (never checked in)."""
    from lantu.config.mapfile import write_mapserver_config
    from lantu.providers.pool import dsn_for
    from lantu.tiles.mapproxy import write_mapproxy_config

    files = write_mapserver_config(registry, settings, dsn_for(settings), settings.home / "mapserver",
                                   settings.public_url)
    write_mapproxy_config(registry, settings, files.mapfile, list(files.raster_layers))
    return files


def start_for(settings, registry) -> MapserverPool:
    """Generate the configuration and start the workers (gunicorn's master calls this once; tests call it
    for their own server)."""
    files = write_ows_config(settings, registry)
    pool = MapserverPool(settings.run_dir, settings.mapserver_workers,
                         {"MAPSERVER_CONFIG_FILE": str(files.config_file)})
    pool.start()
    return pool

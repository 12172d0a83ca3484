"""Lantu starts, supervises and restarts ``mapserv`` FastCGI workers, one unix socket each.

``spawn-fcgi -n`` binds the socket and execs mapserv in the foreground, so the child Lantu watches *is*
the worker: when it dies (crash, SIGKILL, out-of-memory kill) the supervisor thread starts a new one on
the same socket within ``RESTART_POLL_S``. The gunicorn master owns the pool; request workers only connect
to the sockets (``sockets()``), trying the next one when a socket does not answer.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from lantu.server.supervisor import Supervisor


def socket_paths(run_dir: Path, count: int) -> list[Path]:
    return [run_dir / "mapserv" / f"mapserv-{i}.sock" for i in range(count)]


class MapserverPool(Supervisor):
    def __init__(self, run_dir: Path, count: int, env: dict[str, str]):
        self.paths = socket_paths(run_dir, count)
        spawner = shutil.which("spawn-fcgi") or "/usr/bin/spawn-fcgi"
        mapserv = shutil.which("mapserv") or "/usr/bin/mapserv"
        super().__init__("mapserv worker", [[spawner, "-n", "-s", str(p), "-M", "0600", "--", mapserv]
                                            for p in self.paths], env, quiet=True)

    def _spawn(self, index: int) -> subprocess.Popen:
        path = self.paths[index]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        return super()._spawn(index)

    def stop(self, grace_s: float = 1.0) -> None:
        """mapserv under libfcgi may not act on SIGTERM while it waits in accept(); it keeps no state worth
        a slower shutdown than ``grace_s``."""
        super().stop(grace_s)
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

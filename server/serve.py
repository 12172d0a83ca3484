"""``lantu serve``: gunicorn running the Flask app factory, each worker building its own app and pool."""

from __future__ import annotations

import re
import sys

from gunicorn import glogging
from gunicorn.app.base import BaseApplication

from lantu.config.settings import Settings

API_KEY_IN_URL = re.compile(r"(api_key=)[^&\s]+", re.IGNORECASE)


class RedactingLogger(glogging.Logger):
    """gunicorn's logger with API keys blanked out of logged request lines (desktop WMS clients can only
    pass their key as ``api_key=`` in the URL)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for name in ("r", "q"):
            if isinstance(atoms.get(name), str) and "api_key=" in atoms[name].lower():
                atoms[name] = API_KEY_IN_URL.sub(r"\1***", atoms[name])
        return atoms


class LantuServer(BaseApplication):
    def __init__(self, settings: Settings, bind: str, workers: int):
        self.settings = settings
        self.options = {
            "bind": bind,
            "workers": workers,
            "threads": settings.threads,
            "worker_class": "gthread",
            "preload_app": False,  # each worker builds the app after fork: no shared database sockets
            "accesslog": "-",
            "logger_class": "lantu.server.serve.RedactingLogger",
            "errorlog": "-",
            "loglevel": settings.log_level.lower(),
            "graceful_timeout": 10,
            "timeout": max(30, settings.statement_timeout_ms // 1000 + 10),
            "proc_name": "lantu",
            # gunicorn's control socket defaults to one path per user (~/.gunicorn): several Lantu
            # instances on one machine would fight over it, and Lantu does not use it.
            "control_socket_disable": True,
            # CQL2 filters with real polygons make long request lines (a 200-vertex polygon is ~6 KB);
            # gunicorn's default 4094 would answer 414 in HTML before Lantu sees the request.
            "limit_request_line": 0,
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)
        self.cfg.set("on_starting", self._on_starting)
        self.cfg.set("on_exit", self._on_exit)

    # The gunicorn master owns the mapserv FastCGI workers and the embedded job workers: started before
    # the request workers fork, supervised (restarted when they die) by threads in the master, stopped
    # when the server exits. A job worker killed mid-job loses nothing: its job's lease runs out and the
    # restarted worker (or any other) takes it over.
    def _on_starting(self, _server) -> None:
        from lantu.config.registry import load_registry
        from lantu.server.mapserver_pool import start_for

        self.mapserver = start_for(self.settings, load_registry())
        self.job_workers = None
        if self.settings.job_workers:
            from lantu.server.supervisor import Supervisor

            command = [sys.executable, "-m", "lantu.server.cli", "worker"]
            self.job_workers = Supervisor("job worker", [command] * self.settings.job_workers)
            self.job_workers.start()

    def _on_exit(self, _server) -> None:
        if getattr(self, "mapserver", None):
            self.mapserver.stop()
        if getattr(self, "job_workers", None):
            self.job_workers.stop(grace_s=10)

    def load(self):
        from lantu.server.app import create_app

        return create_app(self.settings)


def serve(settings: Settings, bind: str | None = None, workers: int | None = None) -> None:
    LantuServer(settings, bind or settings.bind, workers or settings.workers).run()

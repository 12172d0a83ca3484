"""Child processes Lantu starts and keeps running: each is restarted when it exits, stopped with the server.

Used for the mapserv FastCGI workers (``mapserver_pool``) and for the job workers ``lantu serve`` runs beside
itself (``job_workers``)."""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time

log = logging.getLogger(__name__)
RESTART_POLL_S = 0.2


class Supervisor:
    def __init__(self, name: str, commands: list[list[str]], env: dict[str, str] | None = None, quiet: bool = False):
        self.name = name
        self.commands = commands
        self.env = env or {}
        self.quiet = quiet
        self.procs: list[subprocess.Popen | None] = [None] * len(commands)
        self.restarts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, index: int) -> subprocess.Popen:
        out = subprocess.DEVNULL if self.quiet else None
        return subprocess.Popen(self.commands[index], env={**os.environ, **self.env}, stdout=out, stderr=out,
                                start_new_session=True)

    def start(self) -> None:
        for i in range(len(self.commands)):
            self.procs[i] = self._spawn(i)
        self._thread = threading.Thread(target=self._supervise, name=f"{self.name}-supervisor", daemon=True)
        self._thread.start()

    def _supervise(self) -> None:
        while not self._stop.wait(RESTART_POLL_S):
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    log.warning("%s %d exited with %s; restarting", self.name, i, proc.returncode)
                    self.procs[i] = self._spawn(i)
                    self.restarts += 1

    def stop(self, grace_s: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``."""
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

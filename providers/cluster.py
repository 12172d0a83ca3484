"""The embedded PostgreSQL/PostGIS cluster under ``$LANTU_HOME/pg``.

PostgreSQL refuses to run as root; developers' machines and CI run as root, so then every server command
runs as the ``postgres`` system user (``runuser -u postgres``) on directories that user owns. The cluster
listens on a unix socket in ``$LANTU_HOME/run`` and on 127.0.0.1 at its own port, never colliding with a
system PostgreSQL. The socket needs no password (only the owner and root can reach the directory); TCP on
loopback asks for the password kept in ``pg/.lantu-password``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from lantu.config.settings import Settings

DB_NAME = "lantu"
DB_USER = "lantu"
RUN_AS = "postgres"
# Parallel query made tiles 2.2x slower on 2 cores (design brief §13); JIT only adds latency here.
SERVER_CONF = {
    "max_parallel_workers_per_gather": "0",
    "jit": "off",
    "shared_buffers": "'256MB'",
    "work_mem": "'32MB'",
    "maintenance_work_mem": "'256MB'",
    "max_connections": "200",
    "fsync": "on",
    "logging_collector": "off",
    "timezone": "'Asia/Shanghai'",
}


class ClusterError(RuntimeError):
    """The embedded cluster could not be set up, started or stopped; the message says why and how to fix it."""


@dataclass(frozen=True)
class Cluster:
    data_dir: Path
    run_dir: Path
    log_file: Path
    port: int
    bin_dir: Path

    @classmethod
    def from_settings(cls, settings: Settings) -> Cluster:
        return cls(settings.pg_data, settings.run_dir, settings.log_dir / "postgresql.log", settings.pg_port,
                   settings.pg_bin or find_pg_bin())

    # ---- connection -------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        """Private (0700) directory of the unix socket: local connections need no password."""
        return self.run_dir / "pg"

    @property
    def dsn(self) -> str:
        return f"host={self.socket_dir} port={self.port} dbname={DB_NAME} user={DB_USER}"

    @property
    def password_file(self) -> Path:
        return self.data_dir / ".lantu-password"

    def tcp_url(self) -> str:
        password = self.password_file.read_text().strip() if self.password_file.exists() else "?"
        return f"postgresql://{DB_USER}:{password}@127.0.0.1:{self.port}/{DB_NAME}"

    # ---- lifecycle --------------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        result = self._run([self.bin_dir / "pg_ctl", "status", "-D", self.data_dir], check=False)
        return result.returncode == 0

    def start(self) -> bool:
        """Initialise on first use and start; returns False if it was already running."""
        if not self.initialised:
            self.init()
        if self.running():
            return False
        self._prepare_dirs()
        self._run([self.bin_dir / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data_dir, "-l", self.log_file,
                   "-o", f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1"])
        return True

    def stop(self) -> bool:
        """Stop (fast shutdown, data kept); returns False if it was not running."""
        if not self.initialised or not self.running():
            return False
        self._run([self.bin_dir / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data_dir])
        return True

    def init(self) -> None:
        self._prepare_dirs()
        password = secrets.token_urlsafe(24)
        pwfile = self.socket_dir / ".initdb-pw"
        pwfile.write_text(password)
        self._chown(pwfile)
        try:
            self._run([self.bin_dir / "initdb", "-D", self.data_dir, "-U", DB_USER, "--pwfile", pwfile,
                       "-E", "UTF8", "--locale", "C.UTF-8", "--auth-local", "trust",
                       "--auth-host", "scram-sha-256"])
        finally:
            pwfile.unlink(missing_ok=True)
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# Lantu embedded cluster\n")
            conf.writelines(f"{key} = {value}\n" for key, value in SERVER_CONF.items())
        self.password_file.write_text(password + "\n")
        os.chmod(self.password_file, 0o600)
        self._chown(self.password_file)

    # ---- helpers ----------------------------------------------------------------------------------
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _prepare_dirs(self) -> None:
        for path in (self.data_dir, self.socket_dir, self.log_file.parent):
            path.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        os.chmod(self.socket_dir, 0o700)
        for path in (self.data_dir, self.socket_dir, self.log_file.parent):
            self._chown(path)
        if self._as_root():
            probe = subprocess.run(["runuser", "-u", RUN_AS, "--", "test", "-w", str(self.data_dir)],
                                   capture_output=True)
            if probe.returncode != 0:
                raise ClusterError(
                    f"the '{RUN_AS}' user cannot reach {self.data_dir} (a parent directory is private, e.g. a "
                    f"checkout under /root). Set LANTU_HOME to a directory it can reach, e.g. "
                    f"LANTU_HOME=/var/tmp/lantu, or make the parents traversable (chmod o+x).")

    def _chown(self, path: Path) -> None:
        if self._as_root():
            shutil.chown(path, RUN_AS, RUN_AS)

    def _run(self, argv: list, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(a) for a in argv]
        if self._as_root():
            cmd = ["runuser", "-u", RUN_AS, "--"] + cmd
        result = subprocess.run(cmd, capture_output=True, text=True)
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ClusterError(f"{Path(str(argv[0])).name} failed: {' | '.join(detail)} "
                               f"(log: {self.log_file})")
        return result


@cache
def find_pg_bin() -> Path:
    """The newest PostgreSQL installed the Debian way (``/usr/lib/postgresql/<major>/bin``)."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0)
    if not candidates:
        raise ClusterError("PostgreSQL server binaries not found under /usr/lib/postgresql; run `make install` "
                           "(Debian package postgresql-15-postgis-3)")
    return candidates[-1].parent

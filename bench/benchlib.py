"""Shared plumbing of the ``bench/*`` commands: the bench home, peer venvs, servers, load generation, stats.

Everything a bench starts is registered here and stopped by ``stop_all()`` (also on Ctrl-C / SIGTERM).
Progress goes to stderr; a bench prints its table and its final ratio line on stdout.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
DEFAULT_PG_PORT = 54339  # not the dev cluster's 54329


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    """A step of the bench failed; the message says which and where its log is."""


# ---- the bench home ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BenchHome:
    """A LANTU_HOME of its own (default ``${LANTU_HOME:-var}/bench``) so the dev database is never touched."""

    path: Path
    pg_port: int

    @classmethod
    def resolve(cls, explicit: str | None = None) -> BenchHome:
        raw = explicit or os.environ.get("BENCH_HOME")
        if raw:
            path = Path(raw)
        else:
            base = Path(os.environ.get("LANTU_HOME") or ROOT / "var")
            path = base / "bench"
        path = (path if path.is_absolute() else Path.cwd() / path).resolve()
        return cls(path, int(os.environ.get("BENCH_PG_PORT", DEFAULT_PG_PORT)))

    @property
    def settings_file(self) -> Path:
        return self.path / "bench-settings.yaml"

    @property
    def venvs(self) -> Path:
        return self.path / "bench-venvs"

    @property
    def logs(self) -> Path:
        return self.path / "bench-logs"

    def write_settings(self, port: int, extra: dict[str, str] | None = None) -> None:
        # The embedded cluster runs as `postgres` when we are root: it must be able to reach the home.
        for parent in (p for p in [self.path, *self.path.parents] if p != Path("/") and p.exists()):
            if os.geteuid() == 0 and not os.stat(parent).st_mode & 0o001:
                raise BenchError(f"{parent} is not traversable by the postgres user; set BENCH_HOME elsewhere "
                                 f"(e.g. BENCH_HOME=/var/tmp/lantu-bench)")
        self.path.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.settings_file.write_text(
            f"home: {self.path}\npg_port: {self.pg_port}\nbind: 127.0.0.1:{port}\n"
            f"public_url: http://127.0.0.1:{port}\nworkers: 2\n"
            + "".join(f"{key}: {value}\n" for key, value in (extra or {}).items()), encoding="utf-8")

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
        env.update(LANTU_HOME=str(self.path), LANTU_SETTINGS=str(self.settings_file), **extra)
        return env

    @property
    def socket_dsn(self) -> str:
        return f"host={self.path / 'run' / 'pg'} port={self.pg_port} dbname=lantu user=lantu"

    def tcp_params(self) -> dict[str, str | int]:
        password = (self.path / "pg" / ".lantu-password").read_text().strip()
        return {"host": "127.0.0.1", "port": self.pg_port, "dbname": "lantu", "user": "lantu", "password": password}

    def tcp_url(self) -> str:
        p = self.tcp_params()
        return f"postgresql://{p['user']}:{p['password']}@{p['host']}:{p['port']}/{p['dbname']}"


def lantu_cli(home: BenchHome, *args: str, timeout: float = 3600) -> str:
    """Run ``lantu ARGS`` against the bench home; returns its stdout, raises with its stderr on failure."""
    result = subprocess.run([str(VENV_BIN / "lantu"), *args], env=home.env(), capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise BenchError(f"lantu {' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-800:]}")
    return result.stdout.strip()


# ---- peer virtualenvs ----------------------------------------------------------------------------------
def ensure_venv(home: BenchHome, name: str, requirements: Sequence[str]) -> tuple[Path, float | None]:
    """A venv under ``$home/bench-venvs/NAME`` holding exactly ``requirements`` (re-created when they change).

    Returns (venv dir, seconds spent creating it or None when it was reused)."""
    venv = home.venvs / name
    stamp = venv / ".bench-requirements"
    wanted = "\n".join(requirements)
    if stamp.exists() and stamp.read_text() == wanted and (venv / "bin" / "python").exists():
        return venv, None
    started = time.perf_counter()
    log(f"creating venv {venv} ({' '.join(requirements)})")
    home.venvs.mkdir(parents=True, exist_ok=True)
    base_python = getattr(sys, "_base_executable", sys.executable)
    pip_log = home.logs / f"pip-{name}.log"
    with open(pip_log, "w") as out:
        steps = [[base_python, "-m", "venv", "--clear", str(venv)],
                 [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                  *requirements]]
        for argv in steps:
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                raise BenchError(f"venv {name}: {' '.join(argv[:4])}… failed; see {pip_log}")
    stamp.write_text(wanted)
    return venv, time.perf_counter() - started


# ---- servers -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_started: list[Server] = []


@dataclass(eq=False)
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    ready_path: str
    log_path: Path
    proc: subprocess.Popen | None = None

    def start(self) -> Server:
        log(f"starting {self.name} on 127.0.0.1:{self.port} (log {self.log_path})")
        out = open(self.log_path, "w")  # noqa: SIM115 - kept open for the server's lifetime
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.log_path.parent)
        _started.append(self)
        return self

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                status, _ = http_get("127.0.0.1", self.port, self.ready_path, timeout=10)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise BenchError(f"{self.name} not ready after {timeout:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:]) + f" (log {self.log_path})"

    def last_error(self) -> str:
        """The last exception message in the server's log (why it answered 500), or ''."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        for line in reversed(lines[-400:]):
            match = re.match(r"^[\w.]+(?:Error|Exception)\w*: (.+)$", line.strip())
            if match:
                return match.group(1)[:200]
        return ""

    def worker_pids(self) -> list[int]:
        """Child processes of the server's main process (gunicorn/uvicorn workers)."""
        if self.proc is None:
            return []
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server's own session: its workers too
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def stop_all() -> None:
    while _started:
        server = _started.pop()
        try:
            server.stop()
            log(f"stopped {server.name}")
        except Exception as exc:  # noqa: BLE001 - stop the others whatever happens to one
            log(f"could not stop {server.name}: {exc}")


def install_signal_handlers() -> None:
    """SIGTERM / SIGHUP behave like Ctrl-C, so ``finally: stop_all()`` runs."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


# ---- CPU accounting ------------------------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()  # fields from 3 (state) on; the name may hold spaces


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) of ``root``'s process tree, including the children it has already reaped (so
    the work of connections that ended, e.g. PostgreSQL backends under the postmaster, is not lost)."""
    total = 0
    for pid in process_tree(root):
        fields = _stat(pid)
        if fields:
            total += sum(int(v) for v in fields[11:13])        # utime, stime
            if pid == root:
                total += sum(int(v) for v in fields[13:15])    # cutime, cstime
    return total / _CLK_TCK


def self_cpu_seconds() -> float:
    """CPU time of this process (all its threads)."""
    t = os.times()
    return t.user + t.system


def postmaster_pid(home: BenchHome) -> int | None:
    try:
        return int((home.path / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# ---- HTTP ----------------------------------------------------------------------------------------------
def http_get(host: str, port: int, path: str, timeout: float = 120) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Accept": "application/geo+json, application/json"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class HttpClient:
    """One keep-alive connection; ``__call__(path)`` returns the status after reading the whole body,
    ``get(path)`` the status, the response headers and the body."""

    def __init__(self, host: str, port: int, accept: str = "application/geo+json, application/json"):
        self.host, self.port, self.accept = host, port, accept
        self.conn: http.client.HTTPConnection | None = None

    def __call__(self, path: str) -> int:
        return self.get(path)[0]

    def get(self, path: str) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (0, 1):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
            try:
                self.conn.request("GET", path, headers={"Accept": self.accept})
                resp = self.conn.getresponse()
                body = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, resp.headers, body
            except (http.client.HTTPException, ConnectionError):
                self.close()  # the server closed an idle keep-alive connection: retry once on a new one
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def get_json(port: int, path: str) -> tuple[int, dict | None, str]:
    status, body = http_get("127.0.0.1", port, path)
    text = body.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text), text
    except ValueError:
        return status, None, text


# ---- load generation -----------------------------------------------------------------------------------
@dataclass
class Measurement:
    latencies_ms: list[float] = field(default_factory=list)   # 1 client, one per request
    concurrent_ms: list[float] = field(default_factory=list)  # latencies under N clients
    concurrent_wall_s: float = 0.0                            # summed over the rounds
    concurrent_done: int = 0
    errors: int = 0
    error_status: int | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.latencies_ms) if self.latencies_ms else None

    @property
    def p95(self) -> float | None:
        return percentile(self.latencies_ms, 95)

    @property
    def rps(self) -> float | None:
        return self.concurrent_done / self.concurrent_wall_s if self.concurrent_wall_s else None

    def record(self, status: int) -> None:
        if status != 200:
            self.errors += 1
            self.error_status = status


def percentile(values: Sequence[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[rank]


ClientFactory = Callable[[], tuple[Callable[[object], int], Callable[[], None]]]


def run_serial(factory: ClientFactory, jobs: Sequence[object], m: Measurement) -> None:
    call, close = factory()
    try:
        for job in jobs:
            started = time.perf_counter()
            status = call(job)
            m.latencies_ms.append((time.perf_counter() - started) * 1000)
            m.record(status)
    finally:
        close()


def run_interleaved(factories: Sequence[ClientFactory], jobs: Sequence[object],
                    results: Sequence[Measurement]) -> None:
    """1 client per target, the targets taking turns request by request (in rotating order), so that load
    from elsewhere on the machine falls on all of them alike."""
    clients = [factory() for factory in factories]
    try:
        for i, job in enumerate(jobs):
            for k in range(len(clients)):
                index = (i + k) % len(clients)
                call = clients[index][0]
                started = time.perf_counter()
                status = call(job)
                results[index].latencies_ms.append((time.perf_counter() - started) * 1000)
                results[index].record(status)
    finally:
        for _, close in clients:
            close()


def run_concurrent(factory: ClientFactory, jobs: Sequence[object], clients: int, m: Measurement) -> None:
    """``clients`` threads, each with its own connection, take jobs from a shared list until it is empty."""
    lock = threading.Lock()
    cursor = iter(range(len(jobs)))
    ready = threading.Barrier(clients + 1)
    failures: list[BaseException] = []

    def worker() -> None:
        call, close = factory()
        try:
            ready.wait()
            while True:
                with lock:
                    index = next(cursor, None)
                if index is None:
                    return
                started = time.perf_counter()
                status = call(jobs[index])
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    m.concurrent_ms.append(elapsed)
                    m.record(status)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)
        finally:
            close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        raise BenchError(f"a client failed: {failures[0]!r}")
    m.concurrent_wall_s += wall
    m.concurrent_done += len(jobs)


def http_factory(port: int) -> ClientFactory:
    def make():
        client = HttpClient("127.0.0.1", port)
        return client, client.close
    return make


def fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


# ---- py-spy profiling of Lantu's gunicorn workers (shared by bench/ows and bench/tiles) -------------------
PROFILE_RATE = 500


def spy_start(pyspy: str, pids: Sequence[int], stem: Path, idle: bool,
              rate: int = PROFILE_RATE) -> tuple[list[subprocess.Popen], list[Path]]:
    """Start ``py-spy record`` (raw format) on each pid; ``idle`` counts waiting as well (wall time)."""
    spies, outputs = [], []
    for pid in pids:
        out = stem.with_name(f"{stem.name}-{pid}.txt")
        outputs.append(out)
        spies.append(subprocess.Popen([pyspy, "record", "--pid", str(pid), *(["--idle"] if idle else []),
                                       "--nonblocking", "--rate", str(rate), "--format", "raw", "-o", str(out)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
    time.sleep(1.0)
    return spies, outputs


def spy_stop(spies: Sequence[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(signal.SIGINT)
    for spy in spies:
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def spy_classify(outputs: Sequence[Path], main_thread: bool,
                 buckets_by_frame: Sequence[tuple[str, str]]) -> tuple[dict[str, int], dict[str, int], int]:
    """Samples per bucket (first matching frame substring) and per leaf frame, over gunicorn's request
    threads (and its main loop if ``main_thread``)."""
    buckets: dict[str, int] = {}
    leaves: dict[str, int] = {}
    total = 0
    for out in outputs:
        if not out.exists():
            continue
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            if "ThreadWorker.handle " in stack:
                name = next((label for key, label in buckets_by_frame if key in stack), None)
                if name is None:
                    name = "Flask/werkzeug (dispatch, request and response objects)" if "Flask." in stack \
                        else "gunicorn gthread (request parsing, keep-alive)"
            elif main_thread and "ThreadWorker.run " in stack:
                name = "gunicorn main thread (poll, accept, hand the connection to a thread)"
            else:
                continue
            total += int(count)
            buckets[name] = buckets.get(name, 0) + int(count)
            leaf = stack.rsplit(";", 1)[-1]
            leaves[leaf] = leaves.get(leaf, 0) + int(count)
    return buckets, leaves, total


def shutdown(home: BenchHome, keep: bool, db_started: bool) -> None:
    """End of every bench: stop the servers it started and the database if it started it (unless --keep)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not leave servers behind
    if keep:
        log("--keep: servers and database left running")
        return
    stop_all()
    if db_started:
        try:
            log(lantu_cli(home, "db", "stop"))
        except BenchError as exc:
            log(f"could not stop the database: {exc}")

"""Running jobs: in the request for synchronous execution, in ``lantu worker`` processes for asynchronous.

A worker waits on ``LISTEN lantu_jobs`` (polling as a fallback), claims the oldest queued job, and runs it
while a heartbeat thread renews the job's lease every third of ``job_lease_s``. The heartbeat also carries
the latest progress and learns when the job was dismissed (or taken over after a stall): the process then
stops at its next progress report. Any number of workers, on any machine, share one queue.
"""

from __future__ import annotations

import logging
import select
import signal
import threading
import time
import traceback
from collections.abc import Callable

import psycopg2

from lantu.processes.base import Env, JobCancelled, RunContext
from lantu.processes.catalogue import processor
from lantu.processes.jobs import NOTIFY_CHANNEL, Job, JobStore, LeaseLost, worker_name
from lantu.providers.pool import DISCONNECT_ERRORS, dsn_for

log = logging.getLogger(__name__)
POLL_S = 2.0
SCHEDULE_CHECK_S = 300.0  # how often an idle worker looks whether a scheduled task (yearly snapshot) is due
PROCESS_FAILED = "http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/job-failed"


class _Heartbeat:
    """Renews the lease in the background; remembers the latest progress for the next renewal."""

    def __init__(self, store: JobStore, job: Job, worker: str):
        self.store, self.job, self.worker = store, job, worker
        self.progress: tuple[int, str] | None = None
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"lease-{job.id[:8]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(max(0.2, self.store.lease_s / 3)):
            self.beat()

    def beat(self) -> None:
        with self._lock:
            pct, msg = self.progress or (None, None)
        try:
            self.store.heartbeat(self.job, self.worker, pct, msg)
        except LeaseLost:
            self.lost.set()
        except DISCONNECT_ERRORS:
            log.warning("job %s: database unreachable while renewing the lease", self.job.id)

    def report(self, percent: int, message: str) -> None:
        if self.lost.is_set():
            raise JobCancelled(self.job.id)
        with self._lock:
            self.progress = (max(0, min(99, int(percent))), message[:300])


def failure(exc: BaseException) -> dict:
    return {"type": PROCESS_FAILED, "title": "Job failed", "status": 500,
            "detail": f"the process failed: {type(exc).__name__}: {str(exc)[:300]}"}


def run_job(store: JobStore, env: Env, job: Job, worker: str) -> str:
    """Run one claimed (or synchronous) job to its end; returns its final status."""
    proc = processor(job.process_id)
    with _Heartbeat(store, job, worker) as beat:
        ctx = RunContext(env, job.id, beat.report)
        try:
            outputs = proc.run(job.inputs, ctx)
            store.succeed(job, worker, outputs)
            return "successful"
        except (JobCancelled, LeaseLost):
            log.info("job %s stopped: dismissed or taken over", job.id)
            return "dismissed"
        except Exception as exc:  # a process bug or a data problem: the job fails, the worker goes on
            log.error("job %s (%s) failed:\n%s", job.id, job.process_id, traceback.format_exc())
            store.fail(job, worker, failure(exc))
            return "failed"


class Worker:
    def __init__(self, env: Env, name: str | None = None):
        self.env = env
        self.name = name or worker_name()
        self.store = JobStore(env.pool, env.settings.job_lease_s, env.settings.job_max_attempts)
        self._stopping = threading.Event()
        self._schedule_checked = float("-inf")
        self._catalog_checked = float("-inf")

    def run_schedule(self) -> None:
        """Scheduled work between jobs: the yearly indicator snapshot (issue 11), checked every SCHEDULE_CHECK_S."""
        if time.monotonic() - self._schedule_checked < SCHEDULE_CHECK_S:
            return
        self._schedule_checked = time.monotonic()
        from lantu.processes.indicators import run_schedule

        try:
            run_schedule(self.env)
        except DISCONNECT_ERRORS:
            raise
        except Exception:  # a failed snapshot must not stop the job queue
            log.error("scheduled indicator snapshot failed:\n%s", traceback.format_exc())

    def run_catalog_sync(self) -> None:
        """The catalog's peer sync (issue 7) when ``catalog_sync_interval_s`` says it is due. Imported here:
        the worker only schedules it; catalog and processes sit side by side."""
        if not self.env.settings.catalog_sync_interval_s or not self.env.settings.catalog_peers:
            return
        if time.monotonic() - self._catalog_checked < min(self.env.settings.catalog_sync_interval_s, 60.0):
            return
        self._catalog_checked = time.monotonic()
        from lantu.catalog.harvest import HarvestError, scheduled_sync

        try:
            for result in scheduled_sync(self.env.settings, self.env.pool) or []:
                report = result.report if isinstance(result, HarvestError) else result
                log.info("catalog sync: %s", report.line())
        except DISCONNECT_ERRORS:
            raise
        except Exception:  # a failed sync must not stop the job queue
            log.error("scheduled catalog sync failed:\n%s", traceback.format_exc())

    def stop(self, *_args) -> None:
        self._stopping.set()

    def run_once(self) -> str | None:
        job = self.store.claim(self.name)
        if job is None:
            return None
        log.info("worker %s: job %s (%s), attempt %d", self.name, job.id, job.process_id, job.attempts)
        return run_job(self.store, self.env, job, self.name)

    def run_forever(self, on_idle: Callable[[], None] | None = None) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        listener = None
        while not self._stopping.is_set():
            try:
                if self.run_once() is not None:
                    continue
                self.run_schedule()
                self.run_catalog_sync()
                listener = listener or self._listen()
                self._wait(listener)
            except DISCONNECT_ERRORS:
                log.warning("worker %s: database unreachable; retrying", self.name)
                listener = None
                self._stopping.wait(POLL_S)

    def _listen(self):
        conn = psycopg2.connect(dsn_for(self.env.settings), application_name="lantu-worker")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {NOTIFY_CHANNEL}")
        return conn

    def _wait(self, conn) -> None:
        """Until a job is announced, or POLL_S (a lease may expire without any notification)."""
        deadline = time.monotonic() + POLL_S
        while not self._stopping.is_set() and time.monotonic() < deadline:
            ready, _, _ = select.select([conn], [], [], 0.5)
            if ready:
                conn.poll()
                if conn.notifies:
                    conn.notifies.clear()
                    return

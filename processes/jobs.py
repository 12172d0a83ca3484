"""The job queue in PostgreSQL (``lantu.jobs``, ``lantu.job_results``): durable, shared by every server and
worker on every machine that uses the same database.

Life of a job: ``accepted`` (a row, inputs already validated) → ``running`` (a worker claimed it with
``FOR UPDATE SKIP LOCKED`` and holds a lease it renews) → ``successful`` (outputs stored in the same
transaction) or ``failed``. A running job whose lease ran out — its worker was killed or its machine died —
is claimed again, up to ``max_attempts``; after that it is marked failed. Nothing is lost.

``dismissed`` is the client's ``DELETE /jobs/{id}``: a queued job is never started, a running one is told to
stop at its next progress report (the worker sees it when it renews the lease), and results are dropped.
Every state change of a running job is guarded by (worker, attempt) so that a worker which lost its lease
can no longer write.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lantu.providers.pool import Pool

NOTIFY_CHANNEL = "lantu_jobs"
STATUSES = ("accepted", "running", "successful", "failed", "dismissed")
JOB_COLUMNS = ("id, process_id, status, mode, inputs, outputs_wanted, response, message, progress, attempts, "
               "max_attempts, worker, lease_until, created, started, updated, finished, who, error")


@dataclass(frozen=True)
class Job:
    id: str
    process_id: str
    status: str
    mode: str
    inputs: dict
    outputs_wanted: dict | None
    response: str
    message: str
    progress: int
    attempts: int
    max_attempts: int
    worker: str | None
    lease_until: datetime | None
    created: datetime
    started: datetime | None
    updated: datetime
    finished: datetime | None
    who: str
    error: dict | None

    @classmethod
    def from_row(cls, row: tuple) -> Job:
        return cls(str(row[0]), *row[1:])


@dataclass(frozen=True)
class Output:
    output_id: str
    media_type: str
    body: bytes


class LeaseLost(RuntimeError):
    """The job is no longer this worker's: it was dismissed, or its lease expired and another took it."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class JobStore:
    def __init__(self, pool: Pool, lease_s: float = 30.0, max_attempts: int = 3):
        self.pool = pool
        self.lease_s = lease_s
        self.max_attempts = max_attempts

    # ---- creating and reading ------------------------------------------------------------------------
    def create(self, process_id: str, inputs: dict, *, mode: str, outputs_wanted: dict | None = None,
               response: str = "raw", who: str = "anonymous") -> Job:
        """A new job: queued (``async``: a worker will run it) or already running in the caller (``sync``)."""
        job_id = str(uuid.uuid4())
        status = "accepted" if mode == "async" else "running"
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO lantu.jobs (id, process_id, status, mode, inputs, outputs_wanted, response, "
                f"message, max_attempts, who, attempts, worker, started) "
                f"VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, "
                f"CASE WHEN %s = 'running' THEN now() END) RETURNING {JOB_COLUMNS}",
                (job_id, process_id, status, mode, json.dumps(inputs, ensure_ascii=False),
                 json.dumps(outputs_wanted) if outputs_wanted is not None else None, response,
                 "排队等待执行 (queued)" if mode == "async" else "正在执行 (running)", self.max_attempts, who,
                 0 if mode == "async" else 1, None if mode == "async" else worker_name(), status))
            job = Job.from_row(cur.fetchone())
            if mode == "async":
                cur.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, job_id))
        return job

    def get(self, job_id: str) -> Job | None:
        if not _is_uuid(job_id):
            return None
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT {JOB_COLUMNS} FROM lantu.jobs WHERE id = %s", (job_id,))
            row = cur.fetchone()
        return Job.from_row(row) if row else None

    def list(self, *, limit: int, offset: int, statuses: list[str] | None = None,
             process_ids: list[str] | None = None, who: str | None = None) -> tuple[list[Job], int]:
        where, params = ["TRUE"], []
        if who is not None:
            where.append("who = %s")
            params.append(who)
        if statuses:
            where.append("status = ANY(%s)")
            params.append(statuses)
        if process_ids:
            where.append("process_id = ANY(%s)")
            params.append(process_ids)
        cond = " AND ".join(where)
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM lantu.jobs WHERE {cond}", params)
            total = cur.fetchone()[0]
            cur.execute(f"SELECT {JOB_COLUMNS} FROM lantu.jobs WHERE {cond} ORDER BY created DESC, id "
                        f"LIMIT %s OFFSET %s", [*params, limit, offset])
            return [Job.from_row(r) for r in cur.fetchall()], total

    def outputs(self, job_id: str, output_id: str | None = None) -> list[Output]:
        if not _is_uuid(job_id):
            return []
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT output_id, media_type, body FROM lantu.job_results WHERE job_id = %s "
                        "AND (%s::text IS NULL OR output_id = %s) ORDER BY output_id",
                        (job_id, output_id, output_id))
            return [Output(r[0], r[1], bytes(r[2])) for r in cur.fetchall()]

    # ---- workers --------------------------------------------------------------------------------------
    def claim(self, worker: str) -> Job | None:
        """Take the oldest queued job, or a running one whose lease expired (its worker died)."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            self._fail_exhausted(cur)
            cur.execute(
                f"UPDATE lantu.jobs SET status = 'running', attempts = attempts + 1, worker = %s, "
                f"lease_until = now() + make_interval(secs => %s), started = coalesce(started, now()), "
                f"updated = now(), message = CASE WHEN attempts > 0 THEN "
                f"'重新执行：上一个执行进程已中断 (retried after its worker stopped)' ELSE '正在执行 (running)' END "
                f"WHERE id = (SELECT id FROM lantu.jobs WHERE mode = 'async' AND (status = 'accepted' OR "
                f"(status = 'running' AND lease_until < now() AND attempts < max_attempts)) "
                f"ORDER BY created FOR UPDATE SKIP LOCKED LIMIT 1) RETURNING {JOB_COLUMNS}",
                (worker, self.lease_s))
            row = cur.fetchone()
        return Job.from_row(row) if row else None

    def _fail_exhausted(self, cur) -> None:
        cur.execute(
            "UPDATE lantu.jobs SET status = 'failed', finished = now(), updated = now(), lease_until = NULL, "
            "message = '执行进程多次中断，作业失败 (its worker stopped ' || attempts || ' times)', "
            "error = jsonb_build_object('type', 'http://www.opengis.net/def/exceptions/ogcapi-processes-1/1.0/"
            "job-failed', 'title', 'Job failed', 'detail', 'the worker running the job stopped ' || attempts "
            "|| ' times; no attempt is left') "
            "WHERE status = 'running' AND mode = 'async' AND lease_until < now() AND attempts >= max_attempts")

    def heartbeat(self, job: Job, worker: str, progress: int | None = None, message: str | None = None) -> None:
        """Renew the lease (and record progress); ``LeaseLost`` when the job is no longer ours."""
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE lantu.jobs SET lease_until = now() + make_interval(secs => %s), updated = now(), "
                "progress = coalesce(%s, progress), message = coalesce(%s, message) "
                "WHERE id = %s AND status = 'running' AND worker = %s AND attempts = %s",
                (self.lease_s, progress, message, job.id, worker, job.attempts))
            if cur.rowcount != 1:
                raise LeaseLost(job.id)

    def succeed(self, job: Job, worker: str, outputs: list[Output]) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE lantu.jobs SET status = 'successful', progress = 100, finished = now(), updated = now(), "
                "lease_until = NULL, message = '执行完成 (completed)' "
                "WHERE id = %s AND status = 'running' AND worker = %s AND attempts = %s",
                (job.id, worker, job.attempts))
            if cur.rowcount != 1:
                raise LeaseLost(job.id)
            for out in outputs:
                cur.execute("INSERT INTO lantu.job_results (job_id, output_id, media_type, body) "
                            "VALUES (%s, %s, %s, %s)", (job.id, out.output_id, out.media_type, out.body))

    def fail(self, job: Job, worker: str, error: dict[str, Any]) -> None:
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(
                "UPDATE lantu.jobs SET status = 'failed', finished = now(), updated = now(), lease_until = NULL, "
                "message = %s, error = %s WHERE id = %s AND status = 'running' AND worker = %s AND attempts = %s",
                (error.get("detail", "failed")[:500], json.dumps(error, ensure_ascii=False), job.id, worker,
                 job.attempts))

    # ---- clients --------------------------------------------------------------------------------------
    def dismiss(self, job_id: str) -> Job | None:
        """Dismiss a queued or running job (a running one stops at its next heartbeat); drop its results."""
        if not _is_uuid(job_id):
            return None
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(
                f"UPDATE lantu.jobs SET status = 'dismissed', updated = now(), lease_until = NULL, "
                f"finished = coalesce(finished, now()), message = '已撤销 (dismissed)' WHERE id = %s "
                f"RETURNING {JOB_COLUMNS}", (job_id,))
            row = cur.fetchone()
            cur.execute("DELETE FROM lantu.job_results WHERE job_id = %s", (job_id,))
        return Job.from_row(row) if row else None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return False
    return True

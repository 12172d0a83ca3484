"""One psycopg2 connection pool per process, with health checks and reconnect after a database restart.

Only ``providers/`` talks to PostgreSQL, and only through this module. Usage::

    with pool.connection() as conn:          # commit on success, rollback on error
        with conn.cursor() as cur: ...

A connection idle longer than ``pool_ping_after_s``, or whose socket has unexpected input (the server
closed it), is pinged before it is handed out; a dead one is
replaced, and every other idle connection is dropped too (after a restart they are all dead), so the first
request after PostgreSQL comes back already gets a working connection.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import psycopg2.extensions
import psycopg2.pool

from lantu.config.settings import Settings

log = logging.getLogger(__name__)
DISCONNECT_ERRORS = (psycopg2.OperationalError, psycopg2.InterfaceError)


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached (it is down, restarting, or the URL is wrong)."""


def dsn_for(settings: Settings) -> str:
    if settings.database_url:
        return settings.database_url
    from lantu.providers.cluster import Cluster

    return Cluster.from_settings(settings).dsn


class Pool:
    def __init__(self, dsn: str, minconn: int, maxconn: int, ping_after_s: float, statement_timeout_ms: int):
        self.dsn = dsn
        self.ping_after_s = ping_after_s
        self.options = f"-c statement_timeout={statement_timeout_ms} -c application_name=lantu"
        self._minconn, self._maxconn = minconn, maxconn
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._last_used: dict[int, float] = {}
        self._lock = threading.Lock()

    def _inner(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pool is None:
                try:
                    self._pool = psycopg2.pool.ThreadedConnectionPool(
                        self._minconn, self._maxconn, self.dsn, options=self.options, connect_timeout=5)
                except DISCONNECT_ERRORS as exc:
                    raise DatabaseUnavailable(str(exc).strip()) from exc
            return self._pool

    def _checkout(self) -> psycopg2.extensions.connection:
        pool = self._inner()
        try:
            conn = pool.getconn()
        except psycopg2.pool.PoolError as exc:
            raise DatabaseUnavailable(f"connection pool exhausted ({self._maxconn} in use)") from exc
        except DISCONNECT_ERRORS as exc:
            raise DatabaseUnavailable(str(exc).strip()) from exc
        idle = time.monotonic() - self._last_used.get(id(conn), 0.0)
        suspect = conn.closed or idle > self.ping_after_s or _has_pending_input(conn)
        if suspect and not _alive(conn):
            self._discard(conn)
            self.drop_idle()
            try:
                conn = pool.getconn()
            except DISCONNECT_ERRORS as exc:
                raise DatabaseUnavailable(str(exc).strip()) from exc
        return conn

    def _discard(self, conn: psycopg2.extensions.connection) -> None:
        self._last_used.pop(id(conn), None)
        if self._pool is not None:
            self._pool.putconn(conn, close=True)

    def drop_idle(self) -> None:
        """Close every idle connection (they died with the server); new ones are made on demand."""
        pool = self._pool
        if pool is None:
            return
        with pool._lock:  # psycopg2's pool has no public API for this; its idle list is `_pool`
            while pool._pool:
                stale = pool._pool.pop()
                self._last_used.pop(id(stale), None)
                stale.close()

    @contextmanager
    def connection(self, autocommit: bool = False) -> Iterator[psycopg2.extensions.connection]:
        """A pooled connection; ``autocommit=True`` for single read statements (no BEGIN/COMMIT round
        trips on the hot path)."""
        conn = self._checkout()
        broken = False
        conn.autocommit = autocommit
        try:
            yield conn
            if not autocommit:
                conn.commit()
        except psycopg2.Error as exc:
            # A lost server shows up as OperationalError, InterfaceError or a bare DatabaseError; what they
            # share is that libpq has marked the connection closed.
            if conn.closed or isinstance(exc, DISCONNECT_ERRORS):
                broken = True
                raise DatabaseUnavailable(str(exc).strip()) from exc
            conn.rollback()
            raise
        except BaseException:
            if not conn.closed:
                try:
                    conn.rollback()
                except DISCONNECT_ERRORS:
                    broken = True
            raise
        finally:
            if broken or conn.closed:
                self._discard(conn)
                self.drop_idle()
            else:
                if autocommit:
                    conn.autocommit = False
                self._last_used[id(conn)] = time.monotonic()
                self._pool.putconn(conn)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.closeall()
                self._pool = None


def _has_pending_input(conn: psycopg2.extensions.connection) -> bool:
    """An idle connection has nothing to read unless the server closed it or sent a termination notice:
    a zero-cost check (no round trip) that catches restarts between two quick requests."""
    try:
        return bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg2.InterfaceError):
        return True


def _alive(conn: psycopg2.extensions.connection) -> bool:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        conn.rollback()
        return True
    except psycopg2.Error:  # whatever the ping fails with, this connection is not usable
        return False


_pools: dict[tuple[int, str], Pool] = {}
_pools_lock = threading.Lock()


def get_pool(settings: Settings) -> Pool:
    """The process's pool for these settings (a new one after fork: gunicorn workers each get their own)."""
    dsn = dsn_for(settings)
    key = (os.getpid(), dsn)
    with _pools_lock:
        if key not in _pools:
            _pools[key] = Pool(dsn, settings.pool_min, settings.pool_max, settings.pool_ping_after_s,
                               settings.statement_timeout_ms)
        return _pools[key]

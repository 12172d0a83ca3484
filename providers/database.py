"""Bring the database to a usable state: embedded cluster started (when no external URL), PostGIS,
migrations applied, a table per registry layer."""

from __future__ import annotations

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.providers.cluster import Cluster
from lantu.providers.migrate import migrate
from lantu.providers.pool import Pool, get_pool
from lantu.providers.tables import ensure_layer_tables


def start_embedded(settings: Settings) -> bool:
    """Start the embedded cluster if Lantu uses it; True if it was started now."""
    if not settings.embedded:
        return False
    cluster = Cluster.from_settings(settings)
    started = cluster.start()
    if started or not _database_exists(cluster):
        _create_database(cluster)
    return started


def _database_exists(cluster: Cluster) -> bool:
    import psycopg2

    try:
        psycopg2.connect(cluster.dsn).close()
        return True
    except psycopg2.OperationalError:
        return False


def _create_database(cluster: Cluster) -> None:
    """initdb made only the default databases; create ``lantu`` once (CREATE DATABASE cannot run in a
    transaction, so this uses a connection of its own to ``postgres``)."""
    import psycopg2

    if _database_exists(cluster):
        return
    conn = psycopg2.connect(cluster.dsn.replace("dbname=lantu", "dbname=postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE lantu")
    conn.close()


def prepare(settings: Settings, registry: Registry, start: bool = True) -> Pool:
    """Everything the server, CLI and tests need before the first query; idempotent."""
    if start:
        start_embedded(settings)
    pool = get_pool(settings)
    with pool.connection() as conn:
        migrate(conn)
        ensure_layer_tables(conn, registry)
    return pool

"""The catalog's tables in schema ``catalog`` (migration 0004): pycsw's records table(s), the change-log
position the generated records reflect, and the harvest bookkeeping. pycsw itself reads the records table
through SQLAlchemy; Lantu writes it here, with bound values, several records per transaction."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from lantu.providers.pool import Pool

SCHEMA = "catalog"
RECORDS = "records"


@dataclass(frozen=True)
class LayerFacts:
    """What the data says about a layer: lon/lat extent, feature count and its last load (change log)."""

    extent: tuple[float, float, float, float] | None
    count: int
    last_change: dt.datetime | None
    last_operation: str | None
    last_who: str | None
    last_source: str | None


def records_table(name: str = RECORDS) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(name))


def create_records_table(pool: Pool, name: str) -> None:
    """A second records table of the same shape (the CITE suites' repository in tests)."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (f"{SCHEMA}.{name}",))
        if cur.fetchone()[0] is None:
            cur.execute("SELECT catalog.create_records_table(%s)", (name,))
        conn.commit()


def upsert_records(cur: psycopg2.extensions.cursor, rows: Sequence[Mapping[str, Any]],
                   table: str = RECORDS) -> None:
    """Insert or replace records (dicts of column → value) inside the caller's transaction."""
    for row in rows:
        columns = [c for c in row if row[c] is not None or c == "wkt_geometry"]
        statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT (identifier) DO UPDATE SET {}").format(
            records_table(table), sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(sql.Placeholder() * len(columns)),
            sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns))
        cur.execute(statement, [row[c] for c in columns])


def delete_records(cur: psycopg2.extensions.cursor, identifiers: Iterable[str], table: str = RECORDS) -> int:
    ids = list(identifiers)
    if not ids:
        return 0
    cur.execute(sql.SQL("DELETE FROM {} WHERE identifier = ANY(%s)").format(records_table(table)), (ids,))
    return cur.rowcount


def record_xml(pool: Pool, identifier: str, table: str = RECORDS) -> str | None:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT xml FROM {} WHERE identifier = %s").format(records_table(table)), (identifier,))
        row = cur.fetchone()
    return row[0] if row else None


def count_records(pool: Pool, table: str = RECORDS) -> int:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(records_table(table)))
        return cur.fetchone()[0]


# ---- OGC API – Records: pages of records -----------------------------------------------------------------
RECORD_COLUMNS = sql.SQL("identifier, type, title, abstract, keywords, date_modified, links, language, "
                         "ST_AsGeoJSON(wkb_geometry, 7), accessconstraints")


def records_page(pool: Pool, conditions: Sequence[tuple[sql.Composable, Sequence[Any]]], limit: int,
                 offset: int) -> tuple[int, list[tuple]]:
    """The number of records matching every condition and one page of them (ordered by identifier)."""
    where = sql.SQL(" AND ").join([c for c, _ in conditions]) if conditions else sql.SQL("true")
    params = [p for _, ps in conditions for p in ps]
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM catalog.records WHERE {}").format(where), params)
        matched = cur.fetchone()[0]
        cur.execute(sql.SQL("SELECT {} FROM catalog.records WHERE {} ORDER BY identifier LIMIT %s OFFSET %s")
                    .format(RECORD_COLUMNS, where), [*params, limit, offset])
        return matched, cur.fetchall()


def record_row(pool: Pool, identifier: str) -> tuple | None:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT {} FROM catalog.records WHERE identifier = %s").format(RECORD_COLUMNS),
                    (identifier,))
        return cur.fetchone()


# ---- the change-log position the generated records reflect ----------------------------------------------
def position(cur: psycopg2.extensions.cursor, lock: bool = False, wait: bool = True) -> int | None:
    """The change-log position the records reflect; ``lock`` holds the row for this transaction (None when
    ``wait`` is False and another process holds it: that one is refreshing already)."""
    suffix = "" if not lock else (" FOR UPDATE" if wait else " FOR UPDATE SKIP LOCKED")
    cur.execute("SELECT value FROM catalog.state WHERE key = 'change_log_position'" + suffix)
    row = cur.fetchone()
    return row[0] if row else None


def set_position(cur: psycopg2.extensions.cursor, value: int) -> None:
    cur.execute("UPDATE catalog.state SET value = %s WHERE key = 'change_log_position'", (value,))


def changed_layers(cur: psycopg2.extensions.cursor, after: int) -> tuple[set[str], int]:
    """Layers changed after change id ``after`` and the newest change id."""
    cur.execute("SELECT coalesce(array_agg(DISTINCT layer), '{}'), coalesce(max(id), %s) FROM lantu.change_log "
                "WHERE id > %s", (after, after))
    layers, newest = cur.fetchone()
    return set(layers), newest


def layer_facts(cur: psycopg2.extensions.cursor, table: str | None, layer_id: str) -> LayerFacts:
    """Extent and count from the layer table (when it has one) and the layer's last change-log row."""
    extent, count = None, 0
    if table:
        cur.execute(sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), n FROM "
                            "(SELECT ST_Extent(geom) e, count(*) n FROM {}.{}) s").format(
                                sql.Identifier("blueprint"), sql.Identifier(table)))
        xmin, ymin, xmax, ymax, count = cur.fetchone()
        extent = None if xmin is None else (xmin, ymin, xmax, ymax)
    cur.execute("SELECT at, operation, who, source FROM lantu.change_log WHERE layer = %s ORDER BY id DESC LIMIT 1",
                (layer_id,))
    last = cur.fetchone() or (None, None, None, None)
    return LayerFacts(extent, count, *last)


def table_exists(cur: psycopg2.extensions.cursor, schema: str, table: str) -> bool:
    cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.{table}",))
    return cur.fetchone()[0]


def first_visit(pool: Pool, search_id: str, ttl_s: float) -> bool:
    """True the first time any server process of this catalog sees a distributed search id."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM catalog.searches_seen WHERE at < now() - make_interval(secs => %s)", (ttl_s,))
        cur.execute("INSERT INTO catalog.searches_seen (search_id) VALUES (%s) ON CONFLICT DO NOTHING",
                    (search_id[:300],))
        first = cur.rowcount == 1
        conn.commit()
    return first


# ---- harvest bookkeeping ---------------------------------------------------------------------------------
def harvest_source(cur: psycopg2.extensions.cursor, url: str, kind: str, peer: str | None) -> dict:
    """The source's row (created on first use), locked for this run: two runs of one source wait in turn."""
    cur.execute("INSERT INTO catalog.harvest_sources (url, type, peer) VALUES (%s, %s, %s) "
                "ON CONFLICT (url) DO UPDATE SET type = EXCLUDED.type, peer = coalesce(EXCLUDED.peer, "
                "catalog.harvest_sources.peer)", (url, kind, peer))
    cur.execute("SELECT url, type, peer, last_started, last_completed, high_water, resume_position, run_started "
                "FROM catalog.harvest_sources WHERE url = %s FOR UPDATE", (url,))
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def harvest_progress(cur: psycopg2.extensions.cursor, url: str, run_started: dt.datetime,
                     resume_position: int | None) -> None:
    cur.execute("UPDATE catalog.harvest_sources SET run_started = %s, resume_position = %s, last_started = now() "
                "WHERE url = %s", (run_started, resume_position, url))


def harvest_done(cur: psycopg2.extensions.cursor, url: str, high_water: str | None, report: Mapping) -> None:
    cur.execute("UPDATE catalog.harvest_sources SET resume_position = NULL, run_started = NULL, "
                "last_completed = now(), high_water = coalesce(%s, high_water), last_report = %s WHERE url = %s",
                (high_water, json.dumps(report), url))


def harvest_items(cur: psycopg2.extensions.cursor, url: str) -> dict[str, str | None]:
    cur.execute("SELECT identifier, modified FROM catalog.harvest_items WHERE source = %s", (url,))
    return dict(cur.fetchall())


def mark_items(cur: psycopg2.extensions.cursor, url: str, items: Mapping[str, str | None],
               run_started: dt.datetime) -> None:
    for identifier, modified in items.items():
        cur.execute("INSERT INTO catalog.harvest_items (source, identifier, modified, seen_run) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (source, identifier) DO UPDATE SET "
                    "modified = EXCLUDED.modified, seen_run = EXCLUDED.seen_run", (url, identifier, modified,
                                                                                   run_started))


def unseen_items(cur: psycopg2.extensions.cursor, url: str, run_started: dt.datetime) -> list[str]:
    cur.execute("SELECT identifier FROM catalog.harvest_items WHERE source = %s AND seen_run < %s",
                (url, run_started))
    return [row[0] for row in cur.fetchall()]


def forget_items(cur: psycopg2.extensions.cursor, url: str, identifiers: Sequence[str]) -> None:
    cur.execute("DELETE FROM catalog.harvest_items WHERE source = %s AND identifier = ANY(%s)",
                (url, list(identifiers)))


def harvest_sources(pool: Pool) -> list[dict]:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT url, type, peer, last_completed, high_water, resume_position, last_report "
                    "FROM catalog.harvest_sources ORDER BY url")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

"""Bulk writes of whole feature sets into a layer table, recorded in ``lantu.change_log``.

Used by data intake and the demo loader. Rows go through ``COPY`` into a temporary staging table and one
``INSERT … SELECT`` moves them in (geometry coerced to the stored Multi type in SQL), all inside the
caller's transaction: the caller commits, or nothing is written at all.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg2.extensions
import shapely
from psycopg2 import sql

from lantu.config.registry import Layer
from lantu.providers.tables import STORAGE_SRID, table_id


@dataclass(frozen=True)
class WriteResult:
    layer: str
    mode: str
    inserted: int
    deleted: int
    bbox: tuple[float, float, float, float] | None  # lon/lat extent of the change (old + new rows)
    change_id: int


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    text = str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _copy_buffer(layer: Layer, rows: Sequence[Mapping[str, Any]], wkb_hex: Sequence[str]) -> io.StringIO:
    buf = io.StringIO()
    codes = [f.code for f in layer.fields]
    for row, geom in zip(rows, wkb_hex, strict=True):
        values = [_copy_value(row.get(code)) for code in codes]
        buf.write("\t".join(values) + "\t\\\\x" + geom + "\n")
    buf.seek(0)
    return buf


def _extent(cur: psycopg2.extensions.cursor, source: sql.Composable, column: str) -> list[float] | None:
    cur.execute(sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent({}) AS e FROM {}) s").format(sql.SQL(column), source))
    row = cur.fetchone()
    return None if row[0] is None else list(row)


def _union(a: list[float] | None, b: list[float] | None) -> tuple[float, float, float, float] | None:
    boxes = [x for x in (a, b) if x]
    if not boxes:
        return None
    return (min(x[0] for x in boxes), min(x[1] for x in boxes), max(x[2] for x in boxes),
            max(x[3] for x in boxes))


def write_features(conn: psycopg2.extensions.connection, layer: Layer, rows: Sequence[Mapping[str, Any]],
                   geometries: Sequence[shapely.Geometry], *, mode: str, who: str, source: str,
                   operation: str | None = None, details: Mapping[str, Any] | None = None) -> WriteResult:
    """Replace or append ``rows`` (dicts keyed by field code) with ``geometries`` (EPSG:4490, x = lon)."""
    if mode not in ("replace", "append"):
        raise ValueError(f"mode must be replace or append, not {mode!r}")
    columns = [sql.Identifier(f.column) for f in layer.fields]
    col_list = sql.SQL(", ").join(columns)
    stage = sql.Identifier(f"_stage_{layer.table}")
    wkb_hex = shapely.to_wkb(list(geometries), hex=True, output_dimension=2)
    geom_expr = "ST_GeomFromWKB(wkb, %s)" if layer.geometry == "Point" else "ST_Multi(ST_GeomFromWKB(wkb, %s))"
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE TEMP TABLE {} ON COMMIT DROP AS SELECT {} FROM {} LIMIT 0").format(
            stage, col_list, table_id(layer)))
        cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN wkb bytea").format(stage))
        cur.copy_expert(sql.SQL("COPY {} ({}, wkb) FROM STDIN").format(stage, col_list).as_string(conn),
                        _copy_buffer(layer, rows, wkb_hex))
        new_box = _extent(cur, sql.SQL("(SELECT ST_GeomFromWKB(wkb) AS g FROM {}) n").format(stage), "g")
        deleted, old_box = 0, None
        if mode == "replace":
            old_box = _extent(cur, table_id(layer), "geom")
            cur.execute(sql.SQL("DELETE FROM {}").format(table_id(layer)))
            deleted = cur.rowcount
        cur.execute(sql.SQL("INSERT INTO {} ({}, geom) SELECT {}, " + geom_expr + " FROM {}").format(
            table_id(layer), col_list, col_list, stage), (STORAGE_SRID,))
        inserted = cur.rowcount
        cur.execute(sql.SQL("DROP TABLE {}").format(stage))
        bbox = _union(old_box, new_box)
        cur.execute(
            "INSERT INTO lantu.change_log (layer, operation, inserted, deleted, bbox, who, source, details) "
            "VALUES (%s, %s, %s, %s, CASE WHEN %s THEN ST_MakeEnvelope(%s, %s, %s, %s, 4490) END, %s, %s, %s) "
            "RETURNING id",
            (layer.id, operation or mode, inserted, deleted, bbox is not None, *(bbox or (0, 0, 0, 0)), who,
             source, json.dumps(dict(details or {}), ensure_ascii=False)))
        change_id = cur.fetchone()[0]
    return WriteResult(layer.id, mode, inserted, deleted, bbox, change_id)


def analyze(conn: psycopg2.extensions.connection, layer: Layer) -> None:
    """Refresh planner statistics after a bulk write (cheap, and the next query plans need it)."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("ANALYZE {}").format(table_id(layer)))


def delete_features(conn: psycopg2.extensions.connection, layer: Layer, bsms: Sequence[str], *, who: str,
                    source: str) -> WriteResult:
    """Delete features by BSM and record the change (bbox of the removed rows) like every other write."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) e "
                            "FROM {} WHERE bsm = ANY(%s)) s").format(table_id(layer)), (list(bsms),))
        row = cur.fetchone()
        bbox = None if row[0] is None else tuple(row)
        cur.execute(sql.SQL("DELETE FROM {} WHERE bsm = ANY(%s)").format(table_id(layer)), (list(bsms),))
        deleted = cur.rowcount
        cur.execute(
            "INSERT INTO lantu.change_log (layer, operation, deleted, bbox, who, source) "
            "VALUES (%s, 'delete', %s, CASE WHEN %s THEN ST_MakeEnvelope(%s, %s, %s, %s, 4490) END, %s, %s) "
            "RETURNING id",
            (layer.id, deleted, bbox is not None, *(bbox or (0, 0, 0, 0)), who, source))
        change_id = cur.fetchone()[0]
    return WriteResult(layer.id, "delete", 0, deleted, bbox, change_id)

"""Single-feature edits (OGC API – Features Part 4): create, replace, update, delete — each one transaction
that locks the row, checks the caller's version (``ETag``), writes the row, records the change in
``lantu.change_log`` (so tile caches and catalog records follow) and the before/after in ``lantu.audit_log``.

The version of a feature is its ``updated_at`` (every write sets it to the transaction's clock), shown as the
ETag ``"<fid>-<microseconds>"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import shapely
from psycopg2 import sql

from lantu.config.registry import Layer
from lantu.providers.pool import Pool
from lantu.providers.tables import table_id


class VersionMismatch(Exception):
    """The feature changed since the caller read it (If-Match does not match)."""


class NoSuchFeature(Exception):
    pass


def etag(fid: int, micros: int) -> str:
    return f'"{fid}-{micros}"'


def _version_sql() -> str:
    return "(extract(epoch from updated_at) * 1000000)::bigint"


def current_etag(pool: Pool, layer: Layer, fid: int) -> str | None:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT " + _version_sql() + " FROM {} WHERE fid = %s").format(table_id(layer)), (fid,))
        row = cur.fetchone()
    return etag(fid, row[0]) if row else None


def _columns(layer: Layer) -> list[sql.Identifier]:
    return [sql.Identifier(f.column) for f in layer.fields]


def _snapshot(cur, layer: Layer, fid: int, lock: bool) -> tuple[dict, int] | None:
    cur.execute(sql.SQL("SELECT json_build_object('properties', json_build_object({}), 'geometry', "
                        "ST_AsGeoJSON(geom, 9)::json), " + _version_sql() + " FROM {} WHERE fid = %s"
                        + (" FOR UPDATE" if lock else "")).format(
        sql.SQL(", ").join(sql.SQL("{}, {}").format(sql.Literal(f.code), sql.Identifier(f.column))
                           for f in layer.fields), table_id(layer)), (fid,))
    row = cur.fetchone()
    return (row[0], row[1]) if row else None


def _geom_param(layer: Layer, geom: shapely.Geometry) -> str:
    return shapely.to_wkb(geom, hex=True, output_dimension=2)


def _geom_sql(layer: Layer) -> str:
    return "ST_GeomFromWKB(decode(%s, 'hex'), 4490)" if layer.geometry == "Point" else \
        "ST_Multi(ST_GeomFromWKB(decode(%s, 'hex'), 4490))"


def _log(cur, layer: Layer, who: str, operation: str, fid: int, bsm: str | None, before: dict | None,
         after: dict | None, boxes: list[shapely.Geometry]) -> int:
    box = shapely.envelope(shapely.union_all(boxes)) if boxes else None
    counts = {"create": (1, 0, 0), "replace": (0, 0, 1), "update": (0, 0, 1), "delete": (0, 1, 0)}[operation]
    cur.execute("INSERT INTO lantu.change_log (layer, operation, inserted, deleted, updated, bbox, who, source, "
                "details) VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE "
                "ST_Envelope(ST_GeomFromText(%s, 4490)) END, %s, %s, %s) RETURNING id",
                (layer.id, "delete" if operation == "delete" else "edit", *counts,
                 box.wkt if box is not None else None, box.wkt if box is not None else None, who,
                 "OGC API – Features Part 4", json.dumps({"fid": fid, "operation": operation})))
    change_id = cur.fetchone()[0]
    cur.execute("INSERT INTO lantu.audit_log (who, layer, operation, bsm, fid, before, after, change_id) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (who, layer.id, operation, bsm, fid, json.dumps(before, ensure_ascii=False) if before else None,
                 json.dumps(after, ensure_ascii=False) if after else None, change_id))
    return change_id


def _check_version(snap: tuple[dict, int] | None, fid: int, if_match: str | None) -> tuple[dict, int]:
    if snap is None:
        raise NoSuchFeature(fid)
    if if_match is not None and if_match.strip() != "*" and \
            etag(fid, snap[1]) not in [t.strip() for t in if_match.split(",")]:
        raise VersionMismatch(etag(fid, snap[1]))
    return snap


def create(pool: Pool, layer: Layer, row: Mapping[str, Any], geom: shapely.Geometry, who: str) -> tuple[int, str]:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("INSERT INTO {} ({}, geom, updated_at) VALUES ({}, " + _geom_sql(layer)
                            + ", clock_timestamp()) RETURNING fid").format(
            table_id(layer), sql.SQL(", ").join(_columns(layer)),
            sql.SQL(", ").join(sql.Placeholder() for _ in layer.fields)),
            [row.get(f.code) for f in layer.fields] + [_geom_param(layer, geom)])
        fid = cur.fetchone()[0]
        after, version = _snapshot(cur, layer, fid, lock=False)
        _log(cur, layer, who, "create", fid, row.get("BSM"), None, after, [geom])
    return fid, etag(fid, version)


def replace(pool: Pool, layer: Layer, fid: int, row: Mapping[str, Any], geom: shapely.Geometry, who: str,
            if_match: str | None, operation: str = "replace") -> str:
    with pool.connection() as conn, conn.cursor() as cur:
        before, _ = _check_version(_snapshot(cur, layer, fid, lock=True), fid, if_match)
        cur.execute(sql.SQL("UPDATE {} SET ({}, geom, updated_at) = ({}, " + _geom_sql(layer)
                            + ", clock_timestamp()) WHERE fid = %s").format(
            table_id(layer), sql.SQL(", ").join(_columns(layer)),
            sql.SQL(", ").join(sql.Placeholder() for _ in layer.fields)),
            [row.get(f.code) for f in layer.fields] + [_geom_param(layer, geom), fid])
        after, version = _snapshot(cur, layer, fid, lock=False)
        old = shapely.from_geojson(json.dumps(before["geometry"]))
        _log(cur, layer, who, operation, fid, row.get("BSM"), before, after, [old, geom])
    return etag(fid, version)


def current(pool: Pool, layer: Layer, fid: int) -> dict | None:
    """The stored feature as {"properties": {code: value}, "geometry": GeoJSON} (storage CRS, lon/lat)."""
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        snap = _snapshot(cur, layer, fid, lock=False)
    return snap[0] if snap else None


def delete(pool: Pool, layer: Layer, fid: int, who: str, if_match: str | None) -> None:
    with pool.connection() as conn, conn.cursor() as cur:
        before, _ = _check_version(_snapshot(cur, layer, fid, lock=True), fid, if_match)
        cur.execute(sql.SQL("DELETE FROM {} WHERE fid = %s").format(table_id(layer)), (fid,))
        old = shapely.from_geojson(json.dumps(before["geometry"]))
        _log(cur, layer, who, "delete", fid, before["properties"].get("BSM"), before, None, [old])

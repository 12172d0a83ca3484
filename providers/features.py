"""Feature queries over PostGIS with the GeoJSON built inside PostgreSQL.

The page's primary keys are taken first (``ORDER BY … LIMIT … OFFSET`` on the key, in a MATERIALIZED CTE),
then JSON text is built for those rows only and concatenated in SQL; Python only wraps the text. Every
value is bound; identifiers come from the collection's own description, never from the request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extensions
from psycopg2 import sql

from lantu.config.registry import Layer
from lantu.providers.crs import CRS84, STORAGE_SRID, OutputCrs
from lantu.providers.pool import Pool

JSON_PAIRS_PER_CALL = 50  # json_build_object takes at most 100 arguments


@dataclass(frozen=True)
class Property:
    name: str          # the name clients see and filter on (e.g. "DLBM")
    column: str        # the table column (e.g. "dlbm")
    type: str          # string | integer | number | date | boolean | timestamp
    title: str = ""
    description: str = ""
    enum: tuple[str, ...] = ()
    max_length: int | None = None


@dataclass(frozen=True)
class FeatureSource:
    """A table served as a collection."""

    id: str
    schema: str
    table: str
    properties: tuple[Property, ...]
    geometry_type: str = "Geometry"
    id_column: str = "fid"
    geometry_column: str | None = "geom"  # None: a non-spatial collection (features with "geometry": null)
    srid: int = STORAGE_SRID
    time_property: str | None = None
    by_name: Mapping[str, Property] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {p.name: p for p in self.properties})

    @property
    def spatial(self) -> bool:
        return self.geometry_column is not None

    @property
    def table_sql(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.table))


def source_from_layer(layer: Layer) -> FeatureSource:
    properties = tuple(
        Property(f.code, f.column, f.type, f.name_zh, f.description, max_length=f.length) for f in layer.fields)
    return FeatureSource(layer.id, "blueprint", layer.table, properties, layer.geometry or "Geometry",
                         time_property=layer.time_field)


@dataclass(frozen=True)
class Where:
    """One condition of the WHERE clause with its bound parameters."""

    clause: sql.Composable
    params: tuple[Any, ...] = ()


@dataclass(frozen=True)
class ItemsQuery:
    limit: int
    offset: int = 0
    where: tuple[Where, ...] = ()
    sortby: tuple[tuple[Property, bool], ...] = ()   # (property, ascending)
    properties: tuple[Property, ...] | None = None    # None → all
    crs: OutputCrs = CRS84
    skip_geometry: bool = False


@dataclass(frozen=True)
class ItemsResult:
    features: bytes        # the features joined with ',' (UTF-8 JSON text, no brackets)
    number_matched: int
    number_returned: int


# ---- SQL pieces --------------------------------------------------------------------------------------
def geometry_json(src: FeatureSource, crs: OutputCrs, alias: str = "t") -> sql.Composed:
    geom: sql.Composable = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(src.geometry_column))
    if crs.transform or src.srid not in (STORAGE_SRID, 4326):
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(crs.srid))  # integer SRID: fast path
    if crs.swap_axes:
        geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
    # options 0: no "crs" member (RFC 7946 output; the CRS is in the Content-Crs header)
    return sql.SQL("ST_AsGeoJSON({}, {}, 0)").format(geom, sql.Literal(crs.decimals))


def properties_json(props: Sequence[Property], alias: str = "t") -> sql.Composable:
    if not props:
        return sql.SQL("'{}'")
    chunks = []
    for start in range(0, len(props), JSON_PAIRS_PER_CALL):
        pairs = [sql.SQL("{}, {}.{}").format(sql.Literal(p.name), sql.Identifier(alias), sql.Identifier(p.column))
                 for p in props[start:start + JSON_PAIRS_PER_CALL]]
        chunks.append(sql.SQL("json_build_object({})").format(sql.SQL(", ").join(pairs)))
    if len(chunks) == 1:
        return sql.SQL("{}::text").format(chunks[0])
    return sql.SQL("({})::text").format(sql.SQL(" || ").join(sql.SQL("{}::jsonb").format(c) for c in chunks))


def feature_json(src: FeatureSource, props: Sequence[Property], crs: OutputCrs, skip_geometry: bool,
                 alias: str = "t") -> sql.Composed:
    geometry = sql.SQL("'null'") if skip_geometry or not src.spatial else sql.SQL("coalesce({}, 'null')").format(
        geometry_json(src, crs, alias))
    return sql.SQL("""'{{"type":"Feature","id":' || {}.{} || ',"geometry":' || {} || ',"properties":' || {} """
                   """|| '}}'""").format(sql.Identifier(alias), sql.Identifier(src.id_column), geometry,
                                         properties_json(props, alias))


def where_sql(conditions: Sequence[Where]) -> tuple[sql.Composable, list[Any]]:
    if not conditions:
        return sql.SQL("TRUE"), []
    params: list[Any] = []
    for cond in conditions:
        params.extend(cond.params)
    return sql.SQL(" AND ").join(sql.SQL("({})").format(c.clause) for c in conditions), params


def order_sql(src: FeatureSource, sortby: Sequence[tuple[Property, bool]], alias: str | None = None) -> sql.Composed:
    def col(name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name)) if alias else sql.Identifier(name)

    keys = [sql.SQL("{} {}").format(col(p.column), sql.SQL("ASC NULLS FIRST" if asc else "DESC NULLS LAST"))
            for p, asc in sortby]
    keys.append(col(src.id_column))  # a total order: stable pages
    return sql.SQL(", ").join(keys)


def items_sql(src: FeatureSource, q: ItemsQuery) -> tuple[sql.Composed, list[Any]]:
    where, params = where_sql(q.where)
    props = src.properties if q.properties is None else q.properties
    statement = sql.SQL(
        "WITH page AS MATERIALIZED (SELECT {id} FROM {tbl} WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s) "
        "SELECT (SELECT count(*) FROM {tbl} WHERE {where}), count(*), "
        "coalesce(string_agg({feature}, ',' ORDER BY {order_t}), '') "
        "FROM page JOIN {tbl} t USING ({id})").format(
        id=sql.Identifier(src.id_column), tbl=src.table_sql, where=where, order=order_sql(src, q.sortby),
        feature=feature_json(src, props, q.crs, q.skip_geometry), order_t=order_sql(src, q.sortby, "t"))
    return statement, [*params, q.limit, q.offset, *params]


def item_sql(src: FeatureSource, fid: int, crs: OutputCrs,
             properties: Sequence[Property] | None = None) -> tuple[sql.Composed, list[Any]]:
    props = src.properties if properties is None else properties
    statement = sql.SQL("SELECT {} FROM {} t WHERE t.{} = %s").format(
        feature_json(src, props, crs, False), src.table_sql, sql.Identifier(src.id_column))
    return statement, [fid]


# ---- execution ---------------------------------------------------------------------------------------
def fetch_items(pool: Pool, src: FeatureSource, q: ItemsQuery) -> ItemsResult:
    """One page; the features stay UTF-8 bytes from the wire to the response (no decode/encode copies)."""
    statement, params = items_sql(src, q)
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        psycopg2.extensions.register_type(psycopg2.extensions.BYTES, cur)
        cur.execute(statement, params)
        matched, returned, features = cur.fetchone()
    return ItemsResult(features, matched, returned)


def fetch_item(pool: Pool, src: FeatureSource, fid: int, crs: OutputCrs,
               properties: Sequence[Property] | None = None) -> str | None:
    statement, params = item_sql(src, fid, crs, properties)
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        row = cur.fetchone()
    return row[0] if row else None


def csv_copy_sql(src: FeatureSource, q: ItemsQuery, cursor) -> str:
    """A COPY … TO STDOUT CSV statement for the page; values quoted by the driver (COPY takes no parameters)."""
    where, params = where_sql(q.where)
    props = src.properties if q.properties is None else q.properties
    cols = [sql.SQL("t.{} AS {}").format(sql.Identifier(p.column), sql.Identifier(p.name)) for p in props]
    geom = sql.SQL("t.{}").format(sql.Identifier(src.geometry_column or "fid"))
    if q.crs.transform:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(q.crs.srid))
    if q.crs.swap_axes:
        geom = sql.SQL("ST_FlipCoordinates({})").format(geom)
    select = sql.SQL(
        "SELECT t.{id} AS id, {cols}{geom} FROM {tbl} t WHERE {where} ORDER BY {order} LIMIT %s OFFSET %s").format(
        id=sql.Identifier(src.id_column), cols=sql.SQL("").join(sql.SQL("{}, ").format(c) for c in cols),
        geom=sql.SQL("ST_AsText({}, {}) AS wkt").format(geom, sql.Literal(q.crs.decimals))
        if not q.skip_geometry and src.spatial else sql.SQL("NULL AS wkt"),
        tbl=src.table_sql, where=where, order=order_sql(src, q.sortby, "t"))
    query = cursor.mogrify(select, [*params, q.limit, q.offset]).decode("utf-8")
    return f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER true)"


def fetch_csv(pool: Pool, src: FeatureSource, q: ItemsQuery) -> str:
    import io

    buf = io.StringIO()
    with pool.connection() as conn, conn.cursor() as cur:
        cur.copy_expert(csv_copy_sql(src, q, cur), buf)
    return buf.getvalue()


def extent(pool: Pool, src: FeatureSource) -> tuple[float, float, float, float] | None:
    """Lon/lat extent of the stored features (None when the table is empty or has no geometry)."""
    if not src.spatial:
        return None
    statement = sql.SQL("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent({}) e FROM {}) s").format(sql.Identifier(src.geometry_column), src.table_sql)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement)
        row = cur.fetchone()
    return None if row[0] is None else tuple(row)

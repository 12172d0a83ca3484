"""Mapbox vector tiles built by PostGIS: one statement per tile, ``ST_AsMVT``/``ST_AsMVTGeom`` per source
layer, the layers' tiles concatenated (an MVT is a list of layers, so bytea ``||`` is a valid tile).

Geometries are transformed with an integer SRID (the text form costs ~3 ms a row), the storage filter is a
plain ``&&`` on the GiST index with the tile envelope (plus the render buffer) in EPSG:4490, and the same
statement returns the change-log position of its snapshot so the cache can tell stale tiles from fresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg2 import sql

from lantu.providers.features import FeatureSource, Property
from lantu.providers.pool import Pool

EXTENT = 4096
BUFFER = 64
GEOGRAPHIC_SRIDS = (4490, 4326)


@dataclass(frozen=True)
class TileLayer:
    name: str                           # MVT layer name (the collection id)
    source: FeatureSource
    properties: tuple[Property, ...]    # attributes written into the tile


@dataclass(frozen=True)
class TileRequest:
    srid: int                                       # SRID of the grid (x = east / lon)
    bounds: tuple[float, float, float, float]       # tile extent in that SRID


def _storage_envelope(req: TileRequest) -> tuple[sql.Composable, list]:
    x0, y0, x1, y1 = req.bounds
    margin_x = (x1 - x0) * BUFFER / EXTENT
    margin_y = (y1 - y0) * BUFFER / EXTENT
    box = [x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y]
    if req.srid in GEOGRAPHIC_SRIDS:
        return sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, 4490)"), box
    # Projected grid: densify the envelope so its lon/lat image is covered by the bbox of the transform.
    segment = max(box[2] - box[0], box[3] - box[1]) / 16
    return (sql.SQL("ST_Transform(ST_Segmentize(ST_MakeEnvelope(%s, %s, %s, %s, {}), %s), 4490)").format(
        sql.Literal(req.srid)), [*box, segment])


def tile_params(layers: Sequence[TileLayer], req: TileRequest) -> list:
    """The bound values of ``tile_sql`` (in its placeholder order), without composing the statement."""
    _, env_params = _storage_envelope(req)
    params: list = []
    for layer in layers:
        params += [layer.name, *req.bounds, *env_params]
    return params


def _layer_sql(layer: TileLayer, req: TileRequest) -> tuple[sql.Composable, list]:
    src = layer.source
    geom = sql.SQL("t.{}").format(sql.Identifier(src.geometry_column))
    if req.srid not in GEOGRAPHIC_SRIDS or src.srid not in GEOGRAPHIC_SRIDS:
        geom = sql.SQL("ST_Transform({}, {})").format(geom, sql.Literal(req.srid))
    envelope, env_params = _storage_envelope(req)
    columns = [sql.SQL("t.{} AS {}").format(sql.Identifier(p.column), sql.Identifier(p.name))
               for p in layer.properties]
    statement = sql.SQL(
        "SELECT coalesce(ST_AsMVT(q, %s, {extent}, 'geom', 'fid'), ''::bytea) FROM ("
        "SELECT t.{fid} AS fid, {cols}ST_AsMVTGeom({geom}, ST_MakeBox2D(ST_Point(%s, %s), ST_Point(%s, %s)), "
        "{extent}, {buffer}, true) AS geom FROM {table} t WHERE t.{gcol} && {envelope} ORDER BY t.{fid} OFFSET 0) q "
        "WHERE q.geom IS NOT NULL").format(
        extent=sql.Literal(EXTENT), buffer=sql.Literal(BUFFER), fid=sql.Identifier(src.id_column),
        cols=sql.SQL("").join(sql.SQL("{}, ").format(c) for c in columns), geom=geom, table=src.table_sql,
        gcol=sql.Identifier(src.geometry_column), envelope=envelope)
    return statement, [layer.name, *req.bounds, *env_params]


# ``OFFSET 0`` fences the subquery: without it PostgreSQL flattens it and evaluates ST_AsMVTGeom twice per row
# (once for the IS NOT NULL filter, once for the output) — a third of a tile's time. ``ORDER BY fid`` makes the
# bytes of a tile deterministic (synchronised sequential scans start anywhere in a table), so its ETag is too.
def tile_sql(layers: Sequence[TileLayer], req: TileRequest) -> tuple[sql.Composed, list]:
    parts, params = [], []
    for layer in layers:
        part, part_params = _layer_sql(layer, req)
        parts.append(sql.SQL("({})").format(part))
        params += part_params
    body = sql.SQL(" || ").join(parts) if parts else sql.SQL("''::bytea")
    # The change-log position read in the same snapshot as the data (see tiles/cache.py).
    statement = sql.SQL("SELECT (SELECT coalesce(max(id), 0) FROM lantu.change_log), {}").format(body)
    return statement, params


_rendered: dict[tuple, str] = {}


def fetch_tile(pool: Pool, layers: Sequence[TileLayer], req: TileRequest) -> tuple[bytes, int]:
    """The tile's bytes (empty when no feature touches it) and the change-log id of its snapshot.

    The statement's text depends only on the layers, their attributes and the grid's SRID, so it is rendered
    once per such shape (rendering ``psycopg2.sql`` objects costs more than a small tile's query plan)."""
    key = (req.srid, tuple((layer.name, layer.source.table, layer.properties) for layer in layers))
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        text = _rendered.get(key)
        if text is None:
            text = _rendered[key] = tile_sql(layers, req)[0].as_string(conn)
        cur.execute(text, tile_params(layers, req))
        version, data = cur.fetchone()
    return bytes(data), version

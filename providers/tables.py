"""Layer tables in schema ``blueprint``, derived from the registry (never hand-written DDL).

Each vector layer gets ``fid bigserial`` primary key, one column per registry field (lower-case code),
``geom`` in EPSG:4490 (polygons and lines as Multi*, points as Point), ``updated_at``, a GiST index on
``geom`` and a unique index on ``bsm``. Re-running adds columns a newer registry introduced.
"""

from __future__ import annotations

import psycopg2.extensions
from psycopg2 import sql

from lantu.config.registry import FieldDef, Layer, Registry

SCHEMA = "blueprint"
STORAGE_SRID = 4490
STORED_GEOMETRY = {"Polygon": "MultiPolygon", "LineString": "MultiLineString", "Point": "Point"}


def column_type(fdef: FieldDef) -> sql.SQL:
    if fdef.type == "string":
        return sql.SQL(f"varchar({fdef.length})" if fdef.length else "text")
    return sql.SQL({"integer": "bigint", "number": "double precision", "date": "date",
                    "boolean": "boolean"}[fdef.type])


def table_id(layer: Layer) -> sql.Composed:
    return sql.SQL("{}.{}").format(sql.Identifier(SCHEMA), sql.Identifier(layer.table))


def create_table_sql(layer: Layer) -> list[sql.Composed]:
    geom_type = STORED_GEOMETRY[layer.geometry]
    columns = [sql.SQL("{} {}").format(sql.Identifier(f.column), column_type(f)) for f in layer.fields]
    statements = [
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (fid bigserial PRIMARY KEY, {}, geom geometry({}, {}) NOT NULL, "
                "updated_at timestamptz NOT NULL DEFAULT now())").format(
            table_id(layer), sql.SQL(", ").join(columns), sql.SQL(geom_type), sql.Literal(STORAGE_SRID)),
    ]
    statements += [sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
        table_id(layer), sql.Identifier(f.column), column_type(f)) for f in layer.fields]
    statements += [
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gist (geom)").format(
            sql.Identifier(f"{layer.table}_geom_gist"), table_id(layer)),
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} (bsm)").format(
            sql.Identifier(f"{layer.table}_bsm_key"), table_id(layer)),
    ]
    return statements


def ensure_layer_tables(conn: psycopg2.extensions.connection, registry: Registry) -> int:
    """Create or extend the table of every vector layer; returns how many layers were checked."""
    layers = registry.vector_layers()
    with conn.cursor() as cur:
        for layer in layers:
            for statement in create_table_sql(layer):
                cur.execute(statement)
    return len(layers)

"""Pairwise overlay of two layers in PostGIS: every pair of features whose intersection has positive area,
with that intersection in the Gauss-Kruger plane and its areas.

Areas follow the design brief: *planar* = area in the GK zone of ``ST_Intersection`` of the two features
transformed there; *ellipsoidal* = geodesic area on GRS80 of that same geometry back in EPSG:4490
(``ST_Area(geography, true)``). Each is reported in m², 亩 and 公顷. Only the polygonal part of an
intersection counts, so features that merely share an edge or a corner give no patch.

The candidate pairs come from the GiST indexes (``&&`` + ``ST_Intersects`` on the stored geometry); each
intersection is computed once (a ``MATERIALIZED`` CTE — inlined, PostgreSQL computes it again for every
reference).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg2 import sql

from lantu.config.registry import Registry
from lantu.providers.tables import table_id

MU_M2 = 10000.0 / 15.0
HA_M2 = 10000.0


def area_block(m2: float) -> dict[str, float]:
    """One area in m², 亩 (1 亩 = 10000/15 m²) and 公顷."""
    return {"m2": float(m2), "mu": float(m2) / MU_M2, "ha": float(m2) / HA_M2}


def areas(planar_m2: float, ellipsoidal_m2: float, planar_srid: int) -> dict:
    """Both areas, each labelled (design brief §6)."""
    return {"planar": {**area_block(planar_m2), "crs": f"EPSG:{planar_srid}"},
            "ellipsoidal": {**area_block(ellipsoidal_m2), "ellipsoid": "GRS80"}}


@dataclass(frozen=True)
class Filter:
    """A bound condition on a layer's features: ``column = ANY(values)`` or ``column LIKE prefix%``,
    negated when ``negate``. None means every feature."""

    column: str
    values: tuple[str, ...] = ()
    prefix: str | None = None
    negate: bool = False
    text: str = ""

    def sql(self, alias: str) -> tuple[sql.Composable, list]:
        col = sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(self.column))
        if self.prefix is not None:
            cond, params = sql.SQL("{} LIKE %s").format(col), [self.prefix.replace("%", r"\%") + "%"]
        else:
            cond, params = sql.SQL("{} = ANY(%s)").format(col), [list(self.values)]
        if self.negate:
            cond = sql.SQL("NOT coalesce({}, false)").format(cond)
        return cond, params


@dataclass(frozen=True)
class OverlayClass:
    name: str
    title: str
    a: str
    b: str
    a_filter: Filter | None = None
    b_filter: Filter | None = None
    minus: str | None = None  # a layer whose features are cut out of every patch (class A: basic farmland)
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Patch:
    cls: str
    a_fid: int
    b_fid: int
    a_bsm: str | None
    b_bsm: str | None
    planar_m2: float
    ellipsoidal_m2: float
    geojson: str  # EPSG:4490 geometry, x = longitude (GeoJSON / CRS84 order)
    by_town: dict[str, float]
    a_code: str | None = None
    b_code: str | None = None


def _filters(cls: OverlayClass) -> tuple[list[sql.Composable], list]:
    conds, params = [], []
    for alias, flt in (("a", cls.a_filter), ("b", cls.b_filter)):
        if flt is not None:
            cond, p = flt.sql(alias)
            conds.append(cond)
            params += p
    return conds, params


def overlay_sql(registry: Registry, cls: OverlayClass, planar_srid: int, *, with_aoi: bool,
                code_columns: tuple[str | None, str | None] = (None, None)) -> tuple[sql.Composed, list]:
    """The SQL of one class and the parameters of its filters (when ``with_aoi``, bind the area of interest
    as EWKB in EPSG:4490 before them)."""
    la, lb = registry.get(cls.a), registry.get(cls.b)
    conds, params = _filters(cls)
    if with_aoi:
        conds.append(sql.SQL("a.geom && aoi.g AND ST_Intersects(a.geom, aoi.g) AND b.geom && aoi.g"))
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    ca, cb = (sql.SQL("{}.{}").format(sql.Identifier(al), sql.Identifier(c)) if c else sql.SQL("NULL::text")
              for al, c in zip(("a", "b"), code_columns, strict=True))
    clip = sql.SQL("ST_Intersection(i.g, ST_Transform(aoi.g, {srid}))") if with_aoi else sql.SQL("i.g")
    minus = sql.SQL("i.g")
    if cls.minus:
        minus = sql.SQL(
            "coalesce(ST_Difference(i.g, (SELECT ST_Union(ST_Transform(m.geom, {srid})) FROM {mt} m "
            "WHERE m.geom && i.ageom AND m.geom && i.bgeom AND ST_Intersects(m.geom, i.ageom) "
            "AND ST_Intersects(m.geom, i.bgeom))), i.g)").format(
            srid=sql.Literal(planar_srid), mt=table_id(registry.get(cls.minus)))
    query = sql.SQL("""
WITH aoi AS (SELECT {aoi}::geometry AS g),
pairs AS MATERIALIZED (
  SELECT a.fid AS afid, b.fid AS bfid, a.bsm AS absm, b.bsm AS bbsm, {ca}::text AS acode, {cb}::text AS bcode,
         a.geom AS ageom, b.geom AS bgeom
  FROM {ta} a JOIN {tb} b ON a.geom && b.geom AND ST_Intersects(a.geom, b.geom), aoi
  WHERE {where}
),
inter AS MATERIALIZED (
  SELECT afid, bfid, absm, bbsm, acode, bcode, ageom, bgeom,
         ST_CollectionExtract(ST_Intersection(ST_Transform(ageom, {srid}), ST_Transform(bgeom, {srid})), 3) AS g
  FROM pairs
),
cut AS MATERIALIZED (
  SELECT afid, bfid, absm, bbsm, acode, bcode, ST_CollectionExtract({clip}, 3) AS g
  FROM (SELECT afid, bfid, absm, bbsm, acode, bcode, {minus} AS g FROM inter i WHERE NOT ST_IsEmpty(i.g)) i, aoi
),
towns AS MATERIALIZED (SELECT xzqdm, ST_Transform(geom, {srid}) AS tg FROM {towns})
SELECT afid, bfid, absm, bbsm, acode, bcode, ST_Area(g) AS planar,
       ST_Area(ST_Transform(g, 4490)::geography, true) AS ellipsoidal,
       ST_AsGeoJSON(ST_Transform(g, 4490), 9) AS geojson,
       (SELECT json_object_agg(xzqdm, ar ORDER BY xzqdm) FROM (
          SELECT xzqdm, CASE WHEN ST_Covers(tg, g) THEN ST_Area(g) ELSE ST_Area(ST_Intersection(tg, g)) END AS ar
          FROM towns WHERE tg && g) s WHERE ar > 0) AS by_town
FROM cut WHERE ST_Area(g) > 0
ORDER BY afid, bfid""").format(
        aoi=sql.SQL("ST_GeomFromEWKB(%s)") if with_aoi else sql.SQL("NULL"), ca=ca, cb=cb,
        ta=table_id(la), tb=table_id(lb), where=where, srid=sql.Literal(planar_srid),
        clip=clip.format(srid=sql.Literal(planar_srid)), minus=minus,
        towns=table_id(registry.get("admin_divisions")))
    return query, params

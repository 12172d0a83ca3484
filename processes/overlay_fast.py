"""Pairwise overlay in Python (shapely 2 / GEOS) on geometries pulled from PostGIS: the same patches as
``overlay_sql`` + ``conflict.run_classes`` (same arguments, same ``Patch`` list, same order), faster.

Where the time goes in the SQL path, and what this module does instead:

* **Load once, in parallel.** Each layer a call needs is read once (``fid``, ``bsm``, the class code and the
  geometry already in the Gauss-Kruger zone — ``ST_Transform`` in PostGIS, so the coordinates are PostGIS's
  own), all layers at the same time, each on its own pool connection; a layer of ≥ 40,000 rows is read by
  one statement per thread (``mod(fid, n)``), so its transformation runs on every core. Each class's filter
  and the area of interest are evaluated in that statement as one boolean column per role, so a layer used by
  several classes (basic farmland in ``three-control-lines``) is read once. Next to a small layer (≤ 2,000
  rows: the 24 urban development boundary polygons, the red line) a large one is read only where its boxes
  meet the small one's (a semi-join on the GiST index).
* **Classify the candidate pairs before overlaying them.** An STRtree on the layer with more features gives
  the bounding-box pairs. From the boxes alone: boxes that only share an edge or a corner have no common
  area (dropped); a box nested in the other's is the only way one polygon can cover the other, and then
  ``covers`` settles it and **the intersection is the covered polygon** — no overlay at all. On the county
  demo every farmland × land-use patch is such a containment. The other pairs are tested with
  ``relate_pattern('T********')`` (interiors meet), which rejects the edge contacts (~70 % of the
  ``ST_Intersects`` pairs of a tiling) far more cheaply than computing an empty intersection; only the
  proper overlaps are intersected. Query-side polygons of ≥ 64 vertices are prepared (GEOS 3.14: a
  prepared small polygon tests ``covers`` slower than an unprepared one).
* **Both cores.** The vectorised shapely calls release the GIL; chunks of pairs run on a thread pool.
  A prepared geometry is never used from two threads: chunks are cut between query geometries, and each
  thread prepares its own copy of the towns.
* **Exact areas where they must match PostGIS.** The ellipsoidal area and the GeoJSON of the final patches
  are computed by PostGIS (``ST_Area(ST_Transform(g, 4490)::geography, true)``, ``ST_AsGeoJSON(…, 9)``), one
  statement per thread over all patches sent as one bytea, while the towns are done here. (pyproj's
  geodesic polygon area differs from PostGIS's by up to ~3e-5 m² on small polygons — another GeographicLib.)

Semantics kept from ``overlay_sql``: the intersection of the two features transformed to the GK zone, only its
polygonal part (``ST_CollectionExtract(…, 3)``), a ``minus`` layer's features that intersect both features cut
out, the area of interest clipped last, patches with zero area (edge or corner contacts) dropped, ``by_town``
as the area (planar m²) in each town, patches ordered by class, then by the two fids.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import psycopg2
import shapely
from psycopg2 import sql

from lantu.processes.overlay import Filter, OverlayClass, Patch
from lantu.providers.tables import table_id

TOWNS_LAYER = "admin_divisions"
POLYGON, MULTIPOLYGON, COLLECTION = 3, 6, 7
CHUNKS_PER_THREAD = 4
IO_THREADS = 4           # at most this many pool connections at once
PREPARE_MIN_COORDS = 64  # GEOS 3.14: a prepared 16-vertex polygon tests `covers` slower than an unprepared one


# ---- loading ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Role:
    """How one class uses a layer: its filter, its area-of-interest test (``a``, ``b``, ``minus``, ``none``)
    and, when the other layer of the class is small, that layer (with its filter and test): then only the rows
    whose box meets one of its rows are read (a semi-join on its GiST index, e.g. the ~1,000 farmland
    polygons near the 24 urban development boundary polygons instead of all 8,000)."""

    flt: Filter | None
    aoi_test: str
    near: tuple[str, Filter | None, str] | None = None


@dataclass
class _Layer:
    """The rows of one layer that some role needs, with one boolean mask per role."""

    layer_id: str
    code_column: str | None
    roles: dict[str, _Role] = field(default_factory=dict)
    fid: np.ndarray | None = None
    bsm: list | None = None
    code: list | None = None
    geom: np.ndarray | None = None
    mask: dict[str, np.ndarray] = field(default_factory=dict)

    def add_role(self, role: _Role) -> str:
        for name, known in self.roles.items():
            if known == role:
                return name
        name = f"r{len(self.roles)}"
        self.roles[name] = role
        return name


AOI_TESTS = {  # the area-of-interest condition of each side, as overlay_sql writes it
    "none": "TRUE",
    "a": "{t}.geom && aoi.g AND ST_Intersects({t}.geom, aoi.g)",
    "b": "{t}.geom && aoi.g",
    "minus": "{t}.geom && aoi.g",  # a cut-out feature outside the area of interest cannot change the clipped patch
}
SPLIT_ROWS = 40_000  # a layer this large is read by as many statements at once as there are threads
SMALL_LAYER = 2000   # rows; a layer this small next to one at least NEAR_RATIO times larger restricts it
NEAR_RATIO = 4


def _condition(env, alias: str, flt: Filter | None, aoi_test: str, with_aoi: bool) -> tuple[sql.Composable, list]:
    parts = [sql.SQL(AOI_TESTS[aoi_test if with_aoi else "none"].format(t=alias))]
    params: list = []
    if flt is not None:
        cond, params = flt.sql(alias)
        parts.append(cond)
    return sql.SQL("coalesce(({}), false)").format(sql.SQL(" AND ").join(parts)), params


def _load_layer(env, layer: _Layer, srid: int, aoi_ewkb: bytes | None, part: tuple[int, int] = (0, 1)) -> tuple:
    """Rows of ``layer`` for its roles (``part`` = (k, n): only those with ``mod(fid, n) = k``): fid, bsm, code,
    geometry in the GK zone, one mask per role."""
    with_aoi = aoi_ewkb is not None
    conds, params, near, near_params = [], [], [], []
    for role in layer.roles.values():
        cond, p = _condition(env, "t", role.flt, role.aoi_test, with_aoi)
        params += p
        if role.near is not None:
            other, flt, aoi_test = role.near
            ocond, p = _condition(env, "o", flt, aoi_test, with_aoi)
            near_params += p
            name = sql.Identifier(f"near{len(near)}")
            near.append(sql.SQL("{} AS MATERIALIZED (SELECT DISTINCT t.fid FROM {} o JOIN {} t ON o.geom && t.geom, "
                                "aoi WHERE {})").format(name, table_id(env.registry.get(other)),
                                                        table_id(env.registry.get(layer.layer_id)), ocond))
            cond = sql.SQL("({} AND t.fid IN (SELECT fid FROM {}))").format(cond, name)
        conds.append(cond)
    code = sql.SQL("t.{}::text").format(sql.Identifier(layer.code_column)) if layer.code_column \
        else sql.SQL("NULL::text")
    # Every role restricted to the rows near a small layer: read those rows by key, else scan the table.
    driver = sql.SQL("t.fid IN ({})").format(sql.SQL(" UNION ").join(
        sql.SQL("SELECT fid FROM {}").format(sql.Identifier(f"near{k}")) for k in range(len(near)))) \
        if near and len(near) == len(conds) else sql.SQL("TRUE")
    if part[1] > 1:  # one of several statements reading the layer at once (each on its own backend and core)
        driver = sql.SQL("{} AND mod(t.fid, {}) = {}").format(driver, sql.Literal(part[1]), sql.Literal(part[0]))
    query = sql.SQL("""
WITH aoi AS (SELECT {aoi}::geometry AS g){near}
SELECT * FROM (SELECT t.fid, t.bsm::text, {code}, ST_Transform(t.geom, {srid}), {flags}
               FROM {table} t, aoi WHERE {driver}) s
WHERE {any}""").format(
        aoi=sql.SQL("ST_GeomFromEWKB(%s)") if with_aoi else sql.SQL("NULL"), code=code,
        near=sql.SQL("").join(sql.SQL(",\n") + n for n in near), driver=driver,
        srid=sql.Literal(srid), table=table_id(env.registry.get(layer.layer_id)),
        flags=sql.SQL(", ").join(sql.SQL("{} AS {}").format(c, sql.Identifier(n))
                                 for c, n in zip(conds, layer.roles, strict=True)),
        any=sql.SQL(" OR ").join(sql.Identifier(n) for n in layer.roles))
    params = near_params + params
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(query, ([aoi_ewkb] if with_aoi else []) + params)
        rows = cur.fetchall()
    return (np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)), [r[1] for r in rows],
            [r[2] for r in rows], shapely.from_wkb([bytes.fromhex(r[3]) for r in rows]),
            {name: np.fromiter((r[4 + k] for r in rows), dtype=bool, count=len(rows))
             for k, name in enumerate(layer.roles)})


def _set_rows(layer: _Layer, pieces: list[tuple]) -> None:
    layer.fid = np.concatenate([p[0] for p in pieces])
    layer.bsm = [b for p in pieces for b in p[1]]
    layer.code = [c for p in pieces for c in p[2]]
    layer.geom = np.concatenate([p[3] for p in pieces])
    layer.mask = {name: np.concatenate([p[4][name] for p in pieces]) for name in layer.roles}


def _row_estimates(env, layer_ids: set[str]) -> dict[str, float]:
    """PostgreSQL's row estimates of the layers' tables (``reltuples``; unknown → absent)."""
    names = {lid: f"blueprint.{env.registry.get(lid).table}" for lid in layer_ids}
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT n, reltuples FROM unnest(%s::text[]) n JOIN pg_class c ON c.oid = to_regclass(n)",
                    (list(names.values()),))
        found = dict(cur.fetchall())
    return {lid: found[n] for lid, n in names.items() if found.get(n, -1) >= 0}


# ---- helpers ---------------------------------------------------------------------------------------------
def _chunks(n: int, parts: int, group: np.ndarray | None = None) -> list[slice]:
    """``parts`` slices over range(n); with ``group`` (sorted), cut only where the group changes."""
    if n == 0:
        return []
    bounds = np.linspace(0, n, max(1, min(parts, n)) + 1).astype(np.int64)
    if group is not None and len(bounds) > 2:
        inner = np.searchsorted(group, group[bounds[1:-1]], side="left")  # move each cut to its group start
        bounds = np.unique(np.concatenate([[0], inner, [n]]))
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]


def _polygonal(geoms: np.ndarray) -> np.ndarray:
    """``ST_CollectionExtract(g, 3)``: Polygon and MultiPolygon unchanged, the polygons of a collection as a
    MultiPolygon, anything else empty."""
    out = geoms.copy()
    types = shapely.get_type_id(out)
    for i in np.flatnonzero((types != POLYGON) & (types != MULTIPOLYGON)):
        polys = []
        if types[i] == COLLECTION:
            for part in shapely.get_parts(out[i]):
                if shapely.get_type_id(part) in (POLYGON, MULTIPOLYGON):
                    polys.extend(shapely.get_parts(part))
        out[i] = shapely.multipolygons(polys) if polys else shapely.Polygon()
    return out


def _single(geoms: np.ndarray) -> np.ndarray:
    """A stored one-part MultiPolygon as its Polygon (what GEOS's overlay returns for it)."""
    out = geoms.copy()
    one = (shapely.get_type_id(out) == MULTIPOLYGON) & (shapely.get_num_geometries(out) == 1)
    out[one] = shapely.get_geometry(out[one], 0)
    return out


def _relate_interiors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return shapely.relate_pattern(a, b, "T********")


def _box_relations(qb: np.ndarray, tb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the bounding boxes of pairs: (boxes overlap with an area, tree box inside query box, query box
    inside tree box)."""
    area = ((np.minimum(qb[:, 2], tb[:, 2]) > np.maximum(qb[:, 0], tb[:, 0]))
            & (np.minimum(qb[:, 3], tb[:, 3]) > np.maximum(qb[:, 1], tb[:, 1])))
    t_in_q = (tb[:, 0] >= qb[:, 0]) & (tb[:, 1] >= qb[:, 1]) & (tb[:, 2] <= qb[:, 2]) & (tb[:, 3] <= qb[:, 3])
    q_in_t = (qb[:, 0] >= tb[:, 0]) & (qb[:, 1] >= tb[:, 1]) & (qb[:, 2] <= tb[:, 2]) & (qb[:, 3] <= tb[:, 3])
    return area, t_in_q, q_in_t


def _overlay_chunk(qg: np.ndarray, tg: np.ndarray, t_in_q: np.ndarray, q_in_t: np.ndarray) -> np.ndarray:
    """The polygonal intersection of each pair (query geometry, tree geometry); None where the interiors do
    not meet. The query geometries are prepared and this chunk holds all pairs of each of them."""
    out = np.full(len(qg), None, dtype=object)
    todo = np.ones(len(qg), dtype=bool)
    k = np.flatnonzero(t_in_q)
    if len(k):
        hit = shapely.covers(qg[k], tg[k])
        out[k[hit]] = tg[k[hit]]
        todo[k[hit]] = False
    k = np.flatnonzero(q_in_t & todo)
    if len(k):
        hit = shapely.covered_by(qg[k], tg[k])
        out[k[hit]] = qg[k[hit]]
        todo[k[hit]] = False
    k = np.flatnonzero(todo)
    if len(k):
        shapely.prepare(qg[k])  # prepared relate is ~10 % faster even for small polygons (unlike covers)
        k = k[_relate_interiors(qg[k], tg[k])]
        if len(k):
            out[k] = _polygonal(shapely.intersection(qg[k], tg[k]))
    return out


# ---- the overlay of one class ----------------------------------------------------------------------------
@dataclass
class _Result:
    cls: OverlayClass
    a_rows: np.ndarray   # row numbers in the a layer
    b_rows: np.ndarray
    geom: np.ndarray     # patch geometries in the GK zone
    planar: np.ndarray


def _overlay_class(cls: OverlayClass, la: _Layer, ra: str, lb: _Layer, rb: str, minus: tuple[_Layer, str] | None,
                   aoi: shapely.Geometry | None, min_area: float, pool: ThreadPoolExecutor, parts: int) -> _Result:
    a_idx, b_idx = np.flatnonzero(la.mask[ra]), np.flatnonzero(lb.mask[rb])
    ga, gb = la.geom[a_idx], lb.geom[b_idx]
    # The tree on the side with more features; the other side queries it and is prepared (it holds the big
    # polygons in these rule sets: urban development boundary, red line, farmland against land use).
    swap = len(ga) > len(gb)
    qg, tg = (gb, ga) if swap else (ga, gb)
    qi, ti = shapely.STRtree(tg).query(qg)
    if len(qi) and not np.all(qi[1:] >= qi[:-1]):  # chunks are cut between query geometries
        order = np.argsort(qi, kind="stable")
        qi, ti = qi[order], ti[order]
    if len(qi):
        area, t_in_q, q_in_t = _box_relations(shapely.bounds(qg)[qi], shapely.bounds(tg)[ti])
        qi, ti, t_in_q, q_in_t = qi[area], ti[area], t_in_q[area], q_in_t[area]
    used = qg[np.unique(qi)]
    shapely.prepare(used[shapely.get_num_coordinates(used) >= PREPARE_MIN_COORDS])
    inter = np.full(len(qi), None, dtype=object)
    jobs = [(s, pool.submit(_overlay_chunk, qg[qi[s]], tg[ti[s]], t_in_q[s], q_in_t[s]))
            for s in _chunks(len(qi), parts, qi)]
    for s, job in jobs:
        inter[s] = job.result()
    keep = np.flatnonzero(inter != None)  # noqa: E711 - element-wise
    ai, bi = (ti[keep], qi[keep]) if swap else (qi[keep], ti[keep])
    a_rows, b_rows, geom = a_idx[ai], b_idx[bi], _single(inter[keep])
    nonempty = ~shapely.is_empty(geom)
    a_rows, b_rows, geom = a_rows[nonempty], b_rows[nonempty], geom[nonempty]
    if minus is not None and len(geom):
        geom = _cut(geom, la.geom[a_rows], lb.geom[b_rows], *minus)
    if aoi is not None and len(geom):
        inside = shapely.covers(aoi, geom)
        k = np.flatnonzero(~inside)
        geom[k] = _polygonal(shapely.intersection(geom[k], aoi))
    planar = shapely.area(geom)
    ok = (planar > 0) & (planar >= min_area)
    a_rows, b_rows, geom, planar = a_rows[ok], b_rows[ok], geom[ok], planar[ok]
    order = np.lexsort((lb.fid[b_rows], la.fid[a_rows]))
    return _Result(cls, a_rows[order], b_rows[order], geom[order], planar[order])


def _cut(geom: np.ndarray, ga: np.ndarray, gb: np.ndarray, lm: _Layer, rm: str) -> np.ndarray:
    """``ST_Difference(g, ST_Union(m))`` over the ``minus`` features that intersect both features of the pair."""
    gm = lm.geom[np.flatnonzero(lm.mask[rm])]
    if not len(gm):
        return geom
    tree = shapely.STRtree(gm)
    pa, ma = tree.query(ga, predicate="intersects")
    pb, mb = tree.query(gb, predicate="intersects")
    both = np.intersect1d(pa * len(gm) + ma, pb * len(gm) + mb)
    pairs, members = both // len(gm), both % len(gm)
    out = geom.copy()
    if not len(both):
        return out
    starts = np.flatnonzero(np.r_[True, pairs[1:] != pairs[:-1]])
    ends = np.r_[starts[1:], len(pairs)]
    targets = pairs[starts]
    unions = np.array([gm[members[s]] if e - s == 1 else shapely.union_all(gm[members[s:e]])
                       for s, e in zip(starts, ends, strict=True)], dtype=object)
    out[targets] = _polygonal(shapely.difference(geom[targets], unions))
    return out


# ---- towns, ellipsoidal areas, GeoJSON ---------------------------------------------------------------------
def _by_town(patches: np.ndarray, towns: _Layer, pool: ThreadPoolExecutor, parts: int) -> list[dict[str, float]]:
    """Planar m² of each patch in each town it reaches (``tg && g``, covered → its area, else the area of the
    intersection; zero areas left out), keys in code order."""
    result: list[dict[str, float]] = [{} for _ in range(len(patches))]
    if not len(patches) or towns.geom is None or not len(towns.geom):
        return result
    pi, ti = shapely.STRtree(towns.geom).query(patches)
    wkb = shapely.to_wkb(towns.geom)

    def chunk(s: slice) -> np.ndarray:
        own = shapely.from_wkb(wkb)   # prepared geometries are not shared between threads
        shapely.prepare(own)
        tg, pg = own[ti[s]], patches[pi[s]]
        ar = np.zeros(len(pg))
        inside = shapely.covers(tg, pg)
        ar[inside] = shapely.area(pg[inside])
        k = np.flatnonzero(~inside)
        k = k[_relate_interiors(tg[k], pg[k])]  # most boxes meet a town the patch does not reach
        ar[k] = shapely.area(shapely.intersection(tg[k], pg[k]))
        return ar

    slices = _chunks(len(pi), parts)
    areas = np.concatenate([job.result() for job in [pool.submit(chunk, s) for s in slices]]) if slices \
        else np.empty(0)
    codes = towns.code
    for k in np.lexsort((np.array([codes[t] or "" for t in ti]), pi)):
        if areas[k] > 0:
            result[pi[k]][codes[ti[k]]] = float(areas[k])
    return result


def _ellipsoidal_and_geojson(env, geoms: np.ndarray, srid: int) -> tuple[list[float], list[str]]:
    """PostGIS's ellipsoidal area and GeoJSON of each patch, as ``overlay_sql`` computes them. The patches go
    as one bytea of concatenated WKB (one parameter, no per-item quoting) with their offsets."""
    if not len(geoms):
        return [], []
    wkb = shapely.to_wkb(geoms)
    lengths = np.fromiter((len(w) for w in wkb), dtype=np.int64, count=len(wkb))
    starts = np.cumsum(lengths) - lengths + 1
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(
            "SELECT ST_Area(g::geography, true), ST_AsGeoJSON(g, 9) FROM ("
            "SELECT n, ST_Transform(ST_GeomFromWKB(substring(%s::bytea FROM s::int FOR l::int), %s), 4490) AS g "
            "FROM unnest(%s::bigint[], %s::bigint[]) WITH ORDINALITY u(s, l, n)) x ORDER BY n",
            (psycopg2.Binary(b"".join(wkb.tolist())), srid, starts.tolist(), lengths.tolist()))
        rows = cur.fetchall()
    return [r[0] for r in rows], [r[1] for r in rows]


# ---- entry point -----------------------------------------------------------------------------------------
def run_classes(env, classes: Sequence[OverlayClass], *, aoi_ewkb: bytes | None, min_area: float,
                progress: Callable[[int, str], None] | None = None, threads: int | None = None) -> list[Patch]:
    """The patches of ``classes`` — the contract of ``lantu.processes.conflict.run_classes``."""
    from lantu.processes.conflict import CODE_COLUMNS

    srid = env.settings.planar_srid
    threads = threads or min(4, os.cpu_count() or 1)
    parts = threads * CHUNKS_PER_THREAD
    layers: dict[str, _Layer] = {}

    def layer(layer_id: str) -> _Layer:
        if layer_id not in layers:
            layers[layer_id] = _Layer(layer_id, CODE_COLUMNS.get(layer_id))
        return layers[layer_id]

    estimates = _row_estimates(env, {c.a for c in classes} | {c.b for c in classes}
                               | {c.minus for c in classes if c.minus})

    def near(mine: str, other: str, flt: Filter | None, aoi_test: str):
        small = estimates.get(other, SMALL_LAYER + 1)
        return (other, flt, aoi_test) if small <= SMALL_LAYER and estimates.get(mine, 0) >= NEAR_RATIO * small \
            else None

    roles = []
    for cls in classes:
        ra = layer(cls.a).add_role(_Role(cls.a_filter, "a", near(cls.a, cls.b, cls.b_filter, "b")))
        rb = layer(cls.b).add_role(_Role(cls.b_filter, "b", near(cls.b, cls.a, cls.a_filter, "a")))
        rm = layer(cls.minus).add_role(_Role(None, "minus")) if cls.minus else None
        roles.append((ra, rb, rm))
    towns = _Layer(TOWNS_LAYER, "xzqdm")
    towns.add_role(_Role(None, "none"))
    if progress:
        progress(5, "正在读取图层 (reading the layers)")
    io = ThreadPoolExecutor(IO_THREADS)          # statements waiting on PostgreSQL, one pool connection each
    pool = ThreadPoolExecutor(threads)           # shapely calls (they release the GIL)
    try:
        loads = {}
        for la in [*layers.values(), towns]:
            n = threads if estimates.get(la.layer_id, 0) >= SPLIT_ROWS else 1
            loads[la.layer_id] = [io.submit(_load_layer, env, la, srid, aoi_ewkb, (k, n)) for k in range(n)]
        aoi = None
        if aoi_ewkb is not None:
            with env.pool.connection() as conn, conn.cursor() as cur:
                cur.execute("SELECT ST_AsBinary(ST_Transform(ST_GeomFromEWKB(%s), %s))", (aoi_ewkb, srid))
                aoi = shapely.from_wkb(bytes(cur.fetchone()[0]))
            shapely.prepare(aoi)
        for la in [*layers.values(), towns]:
            _set_rows(la, [job.result() for job in loads[la.layer_id]])
        results = []
        for k, (cls, (ra, rb, rm)) in enumerate(zip(classes, roles, strict=True)):
            if progress:
                progress(10 + int(80 * k / len(classes)), f"正在计算 {cls.title} ({cls.name})")
            results.append(_overlay_class(cls, layers[cls.a], ra, layers[cls.b], rb,
                                          (layers[cls.minus], rm) if cls.minus else None, aoi, min_area, pool,
                                          parts))
        geoms = np.concatenate([r.geom for r in results]) if results else np.empty(0, dtype=object)
        slices = _chunks(len(geoms), threads if len(geoms) >= 2000 else 1)
        ell_jobs = [io.submit(_ellipsoidal_and_geojson, env, geoms[s], srid) for s in slices]
        by_town = _by_town(geoms, towns, pool, parts)
        ellipsoidal, geojson = [], []
        for job in ell_jobs:
            e, g = job.result()
            ellipsoidal += e
            geojson += g
    finally:
        io.shutdown(cancel_futures=True)
        pool.shutdown(cancel_futures=True)
    patches: list[Patch] = []
    n = 0
    for r in results:
        la, lb = layers[r.cls.a], layers[r.cls.b]
        for i, j, planar in zip(r.a_rows.tolist(), r.b_rows.tolist(), r.planar.tolist(), strict=True):
            patches.append(Patch(r.cls.name, int(la.fid[i]), int(lb.fid[j]), la.bsm[i], lb.bsm[j], planar,
                                 ellipsoidal[n], geojson[n], by_town[n], la.code[i], lb.code[j]))
            n += 1
    return patches

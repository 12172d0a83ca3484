"""规划核心指标: the indicator catalogue (``config/indicators.yaml``), their computation next to the data, the
yearly snapshots (``lantu.indicator_snapshots``, served as the collection ``core_indicators``) and the
``indicators`` process.

Areas follow the design brief: an indicator's ``value`` is the ellipsoidal (GRS80) area in 公顷,
``value_planar`` the area in the Gauss-Kruger plane of ``planar_srid``; ratios and per-capita values are
given for both. A feature across the region's border counts with its part inside (``ST_Intersection`` in
EPSG:4490, ``ST_Covers`` as the fast path).

Years: the *current data year* is the latest year of ``lantu.statistics`` (the year the loaded 年度变更调查
and statistics describe). That year is computed live for any region; earlier years come from the stored
snapshots (county and towns only: a drawn region of a past year cannot be recomputed from today's data).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import shapely
import yaml
from psycopg2 import sql

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.processes.base import (
    Env,
    InvalidInput,
    LantuProcessor,
    RunContext,
    json_output,
    plain_value,
    reject_unknown,
    text_input,
)
from lantu.processes.geometry import polygon_input
from lantu.processes.jobs import Output
from lantu.processes.overlay import areas
from lantu.processes.region import XZQDM, ewkb_hex
from lantu.providers.tables import table_id

log = logging.getLogger(__name__)
HA_M2 = 10000.0
KINDS = ("area", "ratio", "per_capita", "coverage")
STATUS_OK, STATUS_WARN, STATUS_FAIL = "达标", "预警", "未达标"
POLYGONS = ("Polygon", "MultiPolygon")


class IndicatorConfigError(ValueError):
    """config/indicators.yaml (or the file named by ``indicators_config``) cannot be used; names the entry."""

    def __init__(self, source: str, entry: str, message: str):
        super().__init__(f"{source}: {entry}: {message}")
        self.entry = entry


# ---- the catalogue ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AreaSpec:
    """Features of ``layer`` whose ``field`` is in ``codes`` (None: every feature), optionally only their part
    inside ``within``."""

    layer: str
    field: str | None = None
    column: str | None = None
    codes: frozenset[str] | None = None
    within: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        return (self.layer, self.column, self.within)


@dataclass(frozen=True)
class Facility:
    layer: str
    column: str | None = None
    codes: frozenset[str] | None = None


@dataclass(frozen=True)
class Indicator:
    id: str
    name_zh: str
    unit: str
    nature: str
    direction: str
    warn_margin: float
    kind: str
    area: AreaSpec | None = None           # area; numerator of ratio / per_capita
    numerator_id: str | None = None        # ratio / per_capita numerator given as another indicator
    denominator: AreaSpec | str | None = None  # ratio: "region", an AreaSpec or an indicator id
    scale: float = 1.0
    statistic: str | None = None
    facilities: tuple[Facility, ...] = ()
    distance_m: float = 0.0
    formula_text: str = ""


@dataclass(frozen=True)
class Catalogue:
    source: str
    plan: dict
    county_code: str
    county_name: str
    statistics: dict[str, dict]
    indicators: tuple[Indicator, ...]
    by_id: dict[str, Indicator] = field(default_factory=dict)

    def get(self, indicator_id: str) -> Indicator | None:
        return self.by_id.get(indicator_id)


_catalogues: dict[tuple[int, str], Catalogue] = {}


def catalogue_path(settings: Settings | None) -> Path:
    configured = getattr(settings, "indicators_config", None) if settings is not None else None
    if configured:
        return Path(configured)
    return Path(str(resources.files("lantu.config").joinpath("indicators.yaml")))


def get_catalogue(registry: Registry, settings: Settings | None = None) -> Catalogue:
    path = catalogue_path(settings)
    key = (id(registry), str(path))
    if key not in _catalogues:
        _catalogues[key] = load_catalogue(registry, path)
    return _catalogues[key]


def load_catalogue(registry: Registry, path: Path) -> Catalogue:
    """Read and check the catalogue against the registry; IndicatorConfigError names the bad entry."""
    source = str(path) if path.name != "indicators.yaml" or "config" not in path.parts else "config/indicators.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise IndicatorConfigError(source, "file", f"cannot read it: {exc}") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("indicators"), list):
        raise IndicatorConfigError(source, "indicators", "must be a list of indicators")
    plan = raw.get("plan") or {}
    if not isinstance(plan, dict):
        raise IndicatorConfigError(source, "plan", "must be a mapping")
    region = plan.get("region") or {}
    county_code, county_name = str(region.get("xzqdm", "")), str(region.get("name", ""))
    if not (len(county_code) == 6 and county_code.isdigit()):
        raise IndicatorConfigError(source, "plan.region.xzqdm", "must be the 6-digit county code")
    statistics = raw.get("statistics") or {}
    margin_default = raw.get("warn_margin", 0.02)
    if not isinstance(margin_default, (int, float)) or not 0 <= margin_default < 1:
        raise IndicatorConfigError(source, "warn_margin", "must be a number in [0, 1)")
    out: list[Indicator] = []
    seen: set[str] = set()
    for n, entry in enumerate(raw["indicators"]):
        if not isinstance(entry, dict):
            raise IndicatorConfigError(source, f"indicators[{n}]", "must be a mapping")
        iid = entry.get("id")
        where = f"indicators[{iid or n}]"
        if not isinstance(iid, str) or not iid.replace("_", "").isalnum():
            raise IndicatorConfigError(source, where, "needs an id of letters, digits and _")
        if iid in seen:
            raise IndicatorConfigError(source, where, "duplicate id")
        seen.add(iid)
        for key in ("name_zh", "unit", "nature", "direction", "formula"):
            if key not in entry:
                raise IndicatorConfigError(source, f"{where}.{key}", "is missing")
        if entry["nature"] not in ("约束性", "预期性"):
            raise IndicatorConfigError(source, f"{where}.nature", "must be 约束性 or 预期性")
        if entry["direction"] not in ("min", "max"):
            raise IndicatorConfigError(source, f"{where}.direction", "must be min or max")
        margin = entry.get("warn_margin", margin_default)
        if not isinstance(margin, (int, float)) or not 0 <= margin < 1:
            raise IndicatorConfigError(source, f"{where}.warn_margin", "must be a number in [0, 1)")
        formula = entry["formula"]
        if not isinstance(formula, dict) or formula.get("kind") not in KINDS:
            raise IndicatorConfigError(source, f"{where}.formula.kind", f"must be one of {', '.join(KINDS)}")
        out.append(_indicator(source, where, registry, entry, formula, float(margin), seen, statistics))
    by_id = {i.id: i for i in out}
    for ind in out:
        for ref in (ind.numerator_id, ind.denominator if isinstance(ind.denominator, str) else None):
            if ref and ref != "region" and (ref not in by_id or by_id[ref].kind != "area"):
                raise IndicatorConfigError(source, f"indicators[{ind.id}].formula",
                                           f"names {ref!r}, which is not an area indicator of this file")
    return Catalogue(source, plan, county_code, county_name, statistics, tuple(out), by_id)


def _indicator(source: str, where: str, registry: Registry, entry: dict, formula: dict, margin: float,
               seen: set[str], statistics: dict) -> Indicator:
    kind = formula["kind"]
    common = dict(id=entry["id"], name_zh=str(entry["name_zh"]), unit=str(entry["unit"]), nature=entry["nature"],
                  direction=entry["direction"], warn_margin=margin, kind=kind,
                  formula_text=json.dumps({k: v for k, v in formula.items() if k != "kind"}, ensure_ascii=False))
    if kind == "area":
        return Indicator(**common, area=_area_spec(source, f"{where}.formula", registry, formula))
    if kind in ("ratio", "per_capita"):
        num = formula.get("numerator")
        area, num_id = (None, num) if isinstance(num, str) else (
            _area_spec(source, f"{where}.formula.numerator", registry, num or {}), None)
        if kind == "ratio":
            den = formula.get("denominator", "region")
            if isinstance(den, dict):
                den = _area_spec(source, f"{where}.formula.denominator", registry, den)
            scale = formula.get("scale", 1)
            if not isinstance(scale, (int, float)) or scale <= 0:
                raise IndicatorConfigError(source, f"{where}.formula.scale", "must be a positive number")
            return Indicator(**common, area=area, numerator_id=num_id, denominator=den, scale=float(scale))
        stat = formula.get("statistic")
        if stat not in statistics:
            raise IndicatorConfigError(source, f"{where}.formula.statistic",
                                       f"unknown statistic {stat!r} (declare it under statistics:)")
        return Indicator(**common, area=area, numerator_id=num_id, statistic=stat)
    # coverage
    area = _area_spec(source, f"{where}.formula", registry, {k: formula.get(k) for k in
                                                              ("layer", "field", "codes", "prefixes", "construction")
                                                              if formula.get(k) is not None})
    facilities = []
    for k, fac in enumerate(formula.get("facilities") or []):
        spec = _area_spec(source, f"{where}.formula.facilities[{k}]", registry, fac, any_geometry=True)
        facilities.append(Facility(spec.layer, spec.column, spec.codes))
    if not facilities:
        raise IndicatorConfigError(source, f"{where}.formula.facilities", "needs at least one facility layer")
    distance = formula.get("distance_m")
    if not isinstance(distance, (int, float)) or not 0 < distance <= 100_000:
        raise IndicatorConfigError(source, f"{where}.formula.distance_m", "must be a distance in metres (0, 100000]")
    return Indicator(**common, area=area, facilities=tuple(facilities), distance_m=float(distance))


def _area_spec(source: str, where: str, registry: Registry, spec: dict, any_geometry: bool = False) -> AreaSpec:
    if not isinstance(spec, dict):
        raise IndicatorConfigError(source, where, "must be a mapping")
    layer = registry.get(spec.get("layer")) if isinstance(spec.get("layer"), str) else None
    if layer is None or not layer.is_vector:
        raise IndicatorConfigError(source, f"{where}.layer", f"unknown layer {spec.get('layer')!r}")
    if not any_geometry and layer.geometry not in POLYGONS:
        raise IndicatorConfigError(source, f"{where}.layer", f"{layer.id} is not a polygon layer")
    within = spec.get("within")
    if within is not None:
        wl = registry.get(within) if isinstance(within, str) else None
        if wl is None or not wl.is_vector or wl.geometry not in POLYGONS:
            raise IndicatorConfigError(source, f"{where}.within", f"unknown polygon layer {within!r}")
    codes, prefixes, construction = spec.get("codes"), spec.get("prefixes"), spec.get("construction")
    fcode = spec.get("field")
    if fcode is None:
        if codes or prefixes or construction:
            raise IndicatorConfigError(source, f"{where}.field", "codes, prefixes or construction need a field")
        return AreaSpec(layer.id, within=within)
    fdef = layer.field(fcode) if isinstance(fcode, str) else None
    if fdef is None:
        raise IndicatorConfigError(source, f"{where}.field", f"{layer.id} has no field {fcode!r}")
    cl = registry.code_lists.get(fdef.code_list or "")
    if cl is None:
        raise IndicatorConfigError(source, f"{where}.field", f"{layer.id}.{fcode} has no code list")
    chosen: set[str] = set()
    for code in codes or []:
        if str(code) not in cl.codes:
            raise IndicatorConfigError(source, f"{where}.codes", f"unknown code {code!r} in {cl.id}")
        chosen.add(str(code))
    for prefix in prefixes or []:
        hits = {c for c in cl.codes if c.startswith(str(prefix))}
        if not hits:
            raise IndicatorConfigError(source, f"{where}.prefixes", f"no code of {cl.id} starts with {prefix!r}")
        chosen |= hits
    if construction:
        chosen |= {c for c, v in cl.codes.items() if v.is_construction is True}
    if not chosen:
        raise IndicatorConfigError(source, where, "a field needs codes, prefixes or construction: true")
    return AreaSpec(layer.id, fdef.code, fdef.column, frozenset(chosen), within)


# ---- regions ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    kind: str          # county | town | geometry
    xzqdm: str | None  # 6 digits (county) or 12 (town); None for a drawn geometry
    name: str
    ewkb: str | None = None  # geometry regions: hex EWKB (EPSG:4490), already clipped to the county

    @property
    def key(self) -> str:
        return self.xzqdm or "geometry"

    def as_json(self) -> dict:
        return {"kind": self.kind, "xzqdm": self.xzqdm, "name": self.name, "ewkb": self.ewkb}


def towns(conn) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT xzqdm, min(xzqmc) FROM blueprint.admin_divisions GROUP BY xzqdm ORDER BY xzqdm")
        return [(r[0], r[1]) for r in cur.fetchall()]


def region_input(inputs: dict, env: Env, cat: Catalogue) -> Region:
    value = plain_value(inputs, "region")
    if value is None or value == cat.county_code or value == cat.county_code.ljust(12, "0"):
        return Region("county", cat.county_code, cat.county_name)
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        if not XZQDM.match(value):
            raise InvalidInput("region", f"{value[:40]!r} is neither an XZQDM (6, 9 or 12 digits) nor a polygon")
        code = value.ljust(12, "0")
        if code == cat.county_code.ljust(12, "0"):
            return Region("county", cat.county_code, cat.county_name)
        if not code.startswith(cat.county_code):
            raise InvalidInput("region", f"{value} is outside the county {cat.county_code} {cat.county_name}")
        with env.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT min(xzqmc) FROM blueprint.admin_divisions WHERE xzqdm = %s", (code,))
            row = cur.fetchone()
        if not row or row[0] is None:
            raise InvalidInput("region", f"no town with XZQDM {code} in the county")
        return Region("town", code, row[0])
    geom = polygon_input(inputs, "region", max_vertices=env.settings.max_input_vertices,
                         uploads_dir=env.settings.home / "uploads")
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("""SELECT ST_AsBinary(x), ST_Area(x::geography, true), ST_Area(g::geography, true) FROM (
                         SELECT ST_CollectionExtract(ST_Intersection(g, c), 3) AS x, g FROM
                         (SELECT ST_GeomFromEWKB(%s) AS g) s,
                         (SELECT ST_Union(geom) AS c FROM blueprint.admin_divisions) k) q""",
                    (bytes.fromhex(ewkb_hex(geom)),))
        wkb, inside, total = cur.fetchone()
    if wkb is None or not inside or inside <= 0:
        raise InvalidInput("region", f"the polygon lies outside the county {cat.county_code} {cat.county_name}")
    clipped = shapely.from_wkb(bytes(wkb))
    name = "绘制范围" if inside >= total * (1 - 1e-9) else "绘制范围（县域内部分）"
    return Region("geometry", None, name, ewkb_hex(clipped))


# ---- computation --------------------------------------------------------------------------------------------
def _region_cte(regions: list[Region]) -> tuple[sql.Composable, list]:
    """A ``regions(key, g)`` CTE body for towns and drawn geometries (the county needs none)."""
    parts, params = [], []
    towns_wanted = [r.xzqdm for r in regions if r.kind == "town"]
    if towns_wanted:
        parts.append(sql.SQL("SELECT xzqdm AS key, ST_Union(geom) AS g FROM blueprint.admin_divisions "
                             "WHERE xzqdm = ANY(%s) GROUP BY xzqdm"))
        params.append(towns_wanted)
    for r in regions:
        if r.kind == "geometry":
            parts.append(sql.SQL("SELECT %s::text AS key, ST_GeomFromEWKB(%s) AS g"))
            params += [r.key, bytes.fromhex(r.ewkb)]
    return sql.SQL(" UNION ALL ").join(parts), params


def _parts_sql(registry: Registry, spec: AreaSpec, regions: list[Region], county_key: str | None,
               code_filter: bool) -> tuple[sql.Composable, list]:
    """``parts(key, code, x)``: the spec layer's features (or their part) per region, in EPSG:4490."""
    layer = registry.get(spec.layer)
    code = sql.SQL("f.{}::text").format(sql.Identifier(spec.column)) if spec.column else sql.SQL("''::text")
    filt, fparams = sql.SQL("TRUE"), []
    if code_filter and spec.codes is not None:
        filt, fparams = sql.SQL("f.{} = ANY(%s)").format(sql.Identifier(spec.column)), [sorted(spec.codes)]
    selects, params = [], []
    if county_key is not None:
        selects.append(sql.SQL("SELECT %s::text AS key, {code} AS code, f.geom AS x FROM {t} f WHERE {filt}").format(
            code=code, t=table_id(layer), filt=filt))
        params += [county_key, *fparams]
    others = [r for r in regions if r.kind != "county"]
    if others:
        cte, cparams = _region_cte(others)
        selects.append(sql.SQL(
            "SELECT r.key::text AS key, {code} AS code, CASE WHEN ST_Covers(r.g, f.geom) THEN f.geom "
            "ELSE ST_CollectionExtract(ST_Intersection(r.g, f.geom), 3) END AS x "
            "FROM {t} f JOIN ({cte}) r ON f.geom && r.g AND ST_Intersects(r.g, f.geom) WHERE {filt}").format(
            code=code, t=table_id(layer), cte=cte, filt=filt))
        params += [*cparams, *fparams]
    body = sql.SQL(" UNION ALL ").join(selects)
    if spec.within:
        # The within layer dissolved (no double counting where its features overlap) and cut into small
        # disjoint pieces, so the bounding-box test is selective and each clip is against a small polygon.
        body = sql.SQL(
            "SELECT p.key, p.code, CASE WHEN ST_Covers(w.g, p.x) THEN p.x "
            "ELSE ST_CollectionExtract(ST_Intersection(p.x, w.g), 3) END AS x "
            "FROM ({body}) p JOIN within_pieces w ON p.x && w.g AND ST_Intersects(p.x, w.g)").format(body=body)
    return body, params


_AREA_CACHE: dict[tuple, tuple[int, dict]] = {}
AREA_CACHE_MAX = 64


def within_cte(registry: Registry, spec: AreaSpec) -> sql.Composable:
    """``within_pieces``: the within layer dissolved and cut into small disjoint pieces, computed once."""
    if not spec.within:
        return sql.SQL("")
    return sql.SQL("WITH within_pieces AS MATERIALIZED (SELECT ST_Subdivide(ST_Union(geom), 256) AS g FROM {})"
                   ).format(table_id(registry.get(spec.within)))


def layer_areas(cur, registry: Registry, spec: AreaSpec, regions: list[Region], srid: int,
                code_filter: bool, cache: bool = False) -> dict[tuple[str, str], tuple[float, float]]:
    """(region key, code) → (planar m², ellipsoidal m²). With ``cache``, county and town sums are kept per
    process until the change log moves (every load and edit goes through it); drawn regions are never cached."""
    key = None
    if cache and all(r.kind != "geometry" for r in regions):
        key = (spec.key, spec.codes if code_filter else None, tuple(r.key for r in regions), srid)
        cur.execute("SELECT coalesce(max(id), 0) FROM lantu.change_log")
        version = cur.fetchone()[0]
        hit = _AREA_CACHE.get(key)
        if hit and hit[0] == version:
            return hit[1]
    rows = _layer_areas(cur, registry, spec, regions, srid, code_filter)
    if key is not None:
        if len(_AREA_CACHE) >= AREA_CACHE_MAX:
            _AREA_CACHE.clear()
        _AREA_CACHE[key] = (version, rows)
    return rows


def _layer_areas(cur, registry: Registry, spec: AreaSpec, regions: list[Region], srid: int,
                 code_filter: bool) -> dict[tuple[str, str], tuple[float, float]]:
    county = next((r for r in regions if r.kind == "county"), None)
    body, params = _parts_sql(registry, spec, regions, county.key if county else None, code_filter)
    if spec.within or any(r.kind != "county" for r in regions):
        # OFFSET 0 keeps the subquery apart: each clip is computed once, not once per use of x (a plain
        # county-wide scan clips nothing and stays eligible for a parallel plan)
        body = sql.SQL("SELECT * FROM ({}) b OFFSET 0").format(body)
    cur.execute(sql.SQL("{with_} SELECT key, code, sum(ST_Area(ST_Transform(x, {srid}))), "
                        "sum(ST_Area(x::geography, true)) "
                        "FROM ({body}) p(key, code, x) WHERE NOT ST_IsEmpty(x) GROUP BY key, code").format(
        with_=within_cte(registry, spec), srid=sql.Literal(srid), body=body), params)
    return {(k, c): (float(p or 0.0), float(e or 0.0)) for k, c, p, e in cur.fetchall()}


def region_areas(cur, regions: list[Region], srid: int) -> dict[str, tuple[float, float]]:
    out = {}
    for r in regions:
        if r.kind == "county":
            cur.execute(sql.SQL("SELECT sum(ST_Area(ST_Transform(geom, {srid}))), sum(ST_Area(geom::geography, true)) "
                                "FROM blueprint.admin_divisions").format(srid=sql.Literal(srid)))
        elif r.kind == "town":
            cur.execute(sql.SQL("SELECT sum(ST_Area(ST_Transform(geom, {srid}))), sum(ST_Area(geom::geography, true)) "
                                "FROM blueprint.admin_divisions WHERE xzqdm = %s").format(srid=sql.Literal(srid)),
                        (r.xzqdm,))
        else:
            cur.execute(sql.SQL("SELECT ST_Area(ST_Transform(g, {srid})), ST_Area(g::geography, true) "
                                "FROM (SELECT ST_GeomFromEWKB(%s) AS g) s").format(srid=sql.Literal(srid)),
                        (bytes.fromhex(r.ewkb),))
        p, e = cur.fetchone()
        out[r.key] = (float(p or 0.0), float(e or 0.0))
    return out


def coverage_shares(cur, registry: Registry, ind: Indicator, regions: list[Region],
                    srid: int) -> dict[str, tuple[float, float]]:
    """region key → (planar m² of the land, planar m² of it within distance of every facility layer)."""
    county = next((r for r in regions if r.kind == "county"), None)
    body, params = _parts_sql(registry, ind.area, regions, county.key if county else None, True)
    facs, fparams = [], []
    for k, fac in enumerate(ind.facilities):
        filt, extra = sql.SQL("TRUE"), []
        if fac.codes is not None:
            filt, extra = sql.SQL("{} = ANY(%s)").format(sql.Identifier(fac.column)), [sorted(fac.codes)]
        facs.append(sql.SQL("(SELECT ST_Union(ST_Buffer(ST_Transform(geom, {srid}), %s)) AS g FROM {t} WHERE {f}) "
                            "{alias}").format(srid=sql.Literal(srid), t=table_id(registry.get(fac.layer)), f=filt,
                                              alias=sql.Identifier(f"f{k}")))
        fparams += [ind.distance_m, *extra]
    both: sql.Composable = sql.SQL("f0.g")
    for k in range(1, len(facs)):
        both = sql.SQL("ST_Intersection({}, {}.g)").format(both, sql.Identifier(f"f{k}"))
    query = sql.SQL("""
WITH near AS MATERIALIZED (SELECT coalesce({both}, 'POLYGON EMPTY'::geometry) AS g FROM {facs}),
land AS (SELECT key, ST_Transform(x, {srid}) AS x FROM ({body}) p(key, code, x) WHERE NOT ST_IsEmpty(x))
SELECT key, sum(ST_Area(x)),
       sum(CASE WHEN ST_Covers(near.g, x) THEN ST_Area(x)
                WHEN NOT ST_Intersects(near.g, x) THEN 0
                ELSE ST_Area(ST_CollectionExtract(ST_Intersection(x, near.g), 3)) END)
FROM land, near GROUP BY key""").format(both=both, facs=sql.SQL(", ").join(facs), srid=sql.Literal(srid),
                                         body=body)
    cur.execute(query, [*fparams, *params])
    return {k: (float(a or 0.0), float(c or 0.0)) for k, a, c in cur.fetchall()}


def statistic_values(cur, item: str, year: int, keys: list[str]) -> dict[str, float]:
    cur.execute("SELECT xzqdm, value FROM lantu.statistics WHERE item = %s AND year = %s AND xzqdm = ANY(%s)",
                (item, year, keys))
    return {k: float(v) for k, v in cur.fetchall()}


def current_year(cur) -> int | None:
    cur.execute("SELECT max(year) FROM lantu.statistics")
    return cur.fetchone()[0]


def compute(conn, registry: Registry, cat: Catalogue, regions: list[Region], year: int, srid: int,
            wanted: list[Indicator] | None = None, progress=None, cache: bool = False) -> dict[str, dict[str, dict]]:
    """region key → indicator id → {value, value_planar} (unit of the indicator) computed from the live data.
    ``cache``: reuse the layer sums of an unchanged change log (the process; never the snapshots, which the
    demo's replay of the previous year computes from uncommitted, unlogged edits)."""
    wanted = list(wanted or cat.indicators)
    needed = {i.id: i for i in wanted}
    for ind in wanted:  # indicators other indicators are made of
        for ref in (ind.numerator_id, ind.denominator if isinstance(ind.denominator, str) else None):
            if ref and ref != "region":
                needed.setdefault(ref, cat.by_id[ref])
    specs: dict[tuple, list[AreaSpec]] = {}
    for ind in needed.values():
        if ind.kind == "coverage":
            continue
        for spec in (ind.area, ind.denominator if isinstance(ind.denominator, AreaSpec) else None):
            if spec is not None:
                specs.setdefault(spec.key, []).append(spec)
    keys = [r.key for r in regions]
    area_m2: dict[AreaSpec, dict[str, tuple[float, float]]] = {}
    with conn.cursor() as cur:
        # The county-wide sums scan whole layers: let PostgreSQL use a second core for them (the cluster turns
        # parallel query off for the short tile and feature queries; SET LOCAL ends with this transaction).
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 2")
        for n, (_key, group) in enumerate(specs.items()):
            if progress:
                progress(10 + int(60 * n / max(1, len(specs))), f"正在统计 {group[0].layer}")
            # One query per (layer, field, within): filter codes in SQL only where the union of the wanted
            # codes is small compared with the layer (a clip costs more than a grouped sum).
            union_codes = None if any(s.codes is None for s in group) else frozenset().union(*(s.codes for s in group))
            probe = AreaSpec(group[0].layer, group[0].field, group[0].column, union_codes, group[0].within)
            rows = layer_areas(cur, registry, probe, regions, srid, code_filter=probe.within is not None,
                               cache=cache)
            for spec in group:
                per = {}
                for k in keys:
                    p = sum(v[0] for (rk, c), v in rows.items() if rk == k and (spec.codes is None or c in spec.codes))
                    e = sum(v[1] for (rk, c), v in rows.items() if rk == k and (spec.codes is None or c in spec.codes))
                    per[k] = (p, e)
                area_m2[spec] = per
        reg_area = region_areas(cur, regions, srid) if any(
            i.kind == "ratio" and i.denominator == "region" for i in needed.values()) else {}
        out: dict[str, dict[str, dict]] = {k: {} for k in keys}
        for ind in [i for i in needed.values() if i.kind == "area"]:
            for k in keys:
                p, e = area_m2[ind.area][k]
                out[k][ind.id] = {"value": e / HA_M2, "value_planar": p / HA_M2, "planar_m2": p, "ellipsoidal_m2": e,
                                  "area": areas(p, e, srid)}

        def numerator(ind: Indicator, k: str) -> tuple[float, float]:
            if ind.numerator_id:
                d = out[k][ind.numerator_id]
                return d["planar_m2"], d["ellipsoidal_m2"]
            return area_m2[ind.area][k]

        for ind in needed.values():
            if ind.kind == "ratio":
                for k in keys:
                    p, e = numerator(ind, k)
                    if ind.denominator == "region":
                        dp, de = reg_area[k]
                    elif isinstance(ind.denominator, str):
                        dd = out[k][ind.denominator]
                        dp, de = dd["planar_m2"], dd["ellipsoidal_m2"]
                    else:
                        dp, de = area_m2[ind.denominator][k]
                    out[k][ind.id] = {"value": e / de * ind.scale if de else None,
                                      "value_planar": p / dp * ind.scale if dp else None,
                                      "numerator_m2": {"planar": p, "ellipsoidal": e},
                                      "denominator_m2": {"planar": dp, "ellipsoidal": de}}
            elif ind.kind == "per_capita":
                people = statistic_values(cur, ind.statistic, year, [k for k in keys if k != "geometry"])
                for k in keys:
                    p, e = numerator(ind, k)
                    pop = people.get(k)
                    out[k][ind.id] = {"value": e / pop if pop else None, "value_planar": p / pop if pop else None,
                                      "numerator_m2": {"planar": p, "ellipsoidal": e}, "population": pop,
                                      "note": None if pop else "无该范围的人口统计（人口按行政区统计）"}
            elif ind.kind == "coverage":
                if progress:
                    progress(75, "正在计算生活圈覆盖")
                shares = coverage_shares(cur, registry, ind, regions, srid)
                for k in keys:
                    land, near = shares.get(k, (0.0, 0.0))
                    out[k][ind.id] = {"value": near / land * 100 if land else None,
                                      "value_planar": near / land * 100 if land else None,
                                      "land_m2": land, "covered_m2": near}
    return {k: {i.id: v[i.id] for i in wanted} for k, v in out.items()}


def status_of(value: float | None, target: float | None, direction: str, margin: float) -> str | None:
    if value is None or target is None:
        return None
    if direction == "min":
        if value < target:
            return STATUS_FAIL
        return STATUS_WARN if value < target * (1 + margin) else STATUS_OK
    if value > target:
        return STATUS_FAIL
    return STATUS_WARN if value > target * (1 - margin) else STATUS_OK


def targets(cur, keys: list[str]) -> dict[tuple[str, str], float]:
    cur.execute("SELECT indicator, xzqdm, target FROM lantu.indicator_targets WHERE xzqdm = ANY(%s)", (keys,))
    return {(i, k): float(t) for i, k, t in cur.fetchall()}


def previous_values(cur, year: int, keys: list[str]) -> dict[tuple[str, str], tuple[int, float | None]]:
    """(indicator, region) → (year, value) of the latest snapshot before ``year``."""
    cur.execute("""SELECT DISTINCT ON (indicator, xzqdm) indicator, xzqdm, year, value
                   FROM lantu.indicator_snapshots WHERE year < %s AND xzqdm = ANY(%s)
                   ORDER BY indicator, xzqdm, year DESC""", (year, keys))
    return {(i, k): (y, v) for i, k, y, v in cur.fetchall()}


def decorate(cur, cat: Catalogue, regions: list[Region], year: int, values: dict[str, dict[str, dict]],
             wanted: list[Indicator]) -> list[dict]:
    """Rows of the result: value, target, gap, status, previous year's value and the change."""
    keys = [r.key for r in regions]
    tgt = targets(cur, keys)
    prev = previous_values(cur, year, keys)
    rows = []
    for r in regions:
        for ind in wanted:
            v = values[r.key][ind.id]
            target = tgt.get((ind.id, r.key))
            value = v.get("value")
            py, pv = prev.get((ind.id, r.key), (None, None))
            rows.append({
                "indicator": ind.id, "name_zh": ind.name_zh, "unit": ind.unit, "nature": ind.nature,
                "direction": ind.direction, "year": year, "xzqdm": r.xzqdm, "xzqmc": r.name,
                "value": value, "value_planar": v.get("value_planar"), "area": v.get("area"),
                "target": target, "gap": None if value is None or target is None else value - target,
                "status": status_of(value, target, ind.direction, ind.warn_margin),
                "previous_year": py, "previous": pv,
                "change": None if value is None or pv is None else value - pv,
                "detail": {k: x for k, x in v.items() if k not in ("value", "value_planar", "area")},
            })
    return rows


# ---- snapshots ----------------------------------------------------------------------------------------------
SNAPSHOT_COLUMNS = ("indicator", "name_zh", "year", "xzqdm", "xzqmc", "unit", "nature", "value", "value_planar",
                    "target", "gap", "status", "previous", "change")


def all_regions(conn, cat: Catalogue) -> list[Region]:
    return [Region("county", cat.county_code, cat.county_name),
            *(Region("town", code, name) for code, name in towns(conn))]


def snapshot_rows(conn, registry: Registry, cat: Catalogue, year: int, srid: int, progress=None) -> list[dict]:
    """Every indicator for the county and each town from the data as it is now, labelled ``year``."""
    regions = all_regions(conn, cat)
    values = compute(conn, registry, cat, regions, year, srid, progress=progress)
    with conn.cursor() as cur:
        return decorate(cur, cat, regions, year, values, list(cat.indicators))


def store_snapshot(conn, rows: list[dict], year: int) -> int:
    """Replace the snapshot of ``year`` with ``rows`` (the caller commits)."""
    with conn.cursor() as cur:
        cur.execute("DELETE FROM lantu.indicator_snapshots WHERE year = %s", (year,))
        for row in rows:
            cur.execute(sql.SQL("INSERT INTO lantu.indicator_snapshots ({}) VALUES ({})").format(
                sql.SQL(", ").join(sql.Identifier(c) for c in SNAPSHOT_COLUMNS),
                sql.SQL(", ").join(sql.Placeholder() * len(SNAPSHOT_COLUMNS))),
                [row[c] for c in SNAPSHOT_COLUMNS])
    return len(rows)


class NoData(ValueError):
    """A year without data (no statistics, no snapshot)."""


def take_snapshot(env: Env, year: int | None = None, replace: bool = False) -> tuple[int, int]:
    """``lantu indicators snapshot``: the current data stored as ``year`` (default: the current data year).
    A past year's snapshot is only replaced with ``replace`` (today's data would overwrite that year's)."""
    cat = get_catalogue(env.registry, env.settings)
    with env.pool.connection() as conn:
        with conn.cursor() as cur:
            current = current_year(cur)
            if current is None:
                raise NoData("lantu.statistics is empty: load the year's statistics first")
            year = current if year is None else year
            if year > current:
                raise NoData(f"year {year}: no statistics (the current data year is {current})")
            cur.execute("SELECT count(*) FROM lantu.indicator_snapshots WHERE year = %s", (year,))
            if year < current and cur.fetchone()[0] and not replace:
                raise NoData(f"year {year} already has a snapshot and the data now describe {current}; "
                             f"use --replace to overwrite it with today's data")
        rows = snapshot_rows(conn, env.registry, cat, year, env.settings.planar_srid)
        n = store_snapshot(conn, rows, year)
    return year, n


def snapshot_years(cur) -> list[int]:
    cur.execute("SELECT DISTINCT year FROM lantu.indicator_snapshots ORDER BY year")
    return [r[0] for r in cur.fetchall()]


def stored_rows(cur, cat: Catalogue, regions: list[Region], years: list[int],
                wanted: list[Indicator]) -> list[dict]:
    cur.execute(sql.SQL("SELECT {} , year FROM lantu.indicator_snapshots WHERE year = ANY(%s) AND xzqdm = ANY(%s) "
                        "AND indicator = ANY(%s) ORDER BY year, xzqdm, indicator").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in SNAPSHOT_COLUMNS if c != "year")),
        (years, [r.key for r in regions], [i.id for i in wanted]))
    cols = [c for c in SNAPSHOT_COLUMNS if c != "year"] + ["year"]
    order = {i.id: n for n, i in enumerate(wanted)}
    rows = []
    for rec in cur.fetchall():
        row = dict(zip(cols, rec, strict=True))
        ind = cat.by_id.get(row["indicator"])
        row["direction"] = ind.direction if ind else None
        row["source"] = "snapshot"
        rows.append(row)
    rows.sort(key=lambda r: (r["year"], r["xzqdm"], order.get(r["indicator"], 99)))
    return rows


# ---- the process --------------------------------------------------------------------------------------------
class Indicators(LantuProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "indicators",
        "title": {"zh": "规划核心指标监测", "en": "Core planning indicators"},
        "description": {
            "zh": "按县、乡镇（XZQDM）或任意范围计算规划核心指标（永久基本农田、耕地保有量、生态保护红线、城镇开发"
                  "边界、林地、城乡建设用地、国土开发强度、人均城镇建设用地、15分钟生活圈覆盖率），与规划目标比较，"
                  "给出差距和状态（达标/预警/未达标），可生成年度体检报告与五年评估报告（HTML、PDF）。",
            "en": "The plan's core indicators for the county, a town (XZQDM) or any polygon, against their targets "
                  "(gap, status 达标/预警/未达标), as JSON and CSV; optional annual check-up or five-year "
                  "evaluation report (HTML and PDF)."},
        "keywords": ["规划核心指标", "体检评估", "一年一体检", "五年一评估", "indicators"],
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value", "reference"],
        "links": [],
        "inputs": {
            "region": {"title": "范围 (county or town XZQDM, or a polygon)", "description": "default: the county",
                       "schema": {"oneOf": [{"type": "string"}, {"type": "object"}]}, "minOccurs": 0, "maxOccurs": 1},
            "crs": {"title": "region 的坐标参照系", "schema": {"type": "string", "format": "uri"},
                    "minOccurs": 0, "maxOccurs": 1},
            "year": {"title": "年度 (year)", "description": "default: the current data year (latest statistics); "
                     "earlier years come from the yearly snapshots (county and towns)",
                     "schema": {"type": "integer"}, "minOccurs": 0, "maxOccurs": 1},
            "indicators": {"title": "指标 (indicator ids)", "description": "default: every indicator",
                           "schema": {"type": "array", "items": {"type": "string"}}, "minOccurs": 0, "maxOccurs": 1},
            "report": {"title": "报告 (report)", "description": "annual: 年度体检报告; five-year: 五年评估报告",
                       "schema": {"type": "string", "enum": ["annual", "five-year"]}, "minOccurs": 0,
                       "maxOccurs": 1},
        },
        "outputs": {
            "result": {"title": "指标值 (values, targets, status)",
                       "schema": {"type": "object", "contentMediaType": "application/json"}},
            "csv": {"title": "指标表 CSV", "schema": {"type": "string", "contentMediaType": "text/csv"}},
            "report_html": {"title": "报告 HTML", "schema": {"type": "string", "contentMediaType": "text/html"}},
            "report_pdf": {"title": "报告 PDF", "schema": {"type": "string", "format": "binary",
                                                          "contentMediaType": "application/pdf"}},
        },
        "example": {"inputs": {"region": "430121", "indicators": ["cropland_area", "basic_farmland_area"]}},
    }

    def validate(self, inputs: dict, env: Env) -> dict:
        reject_unknown(inputs, set(self.METADATA["inputs"]))
        cat = get_catalogue(env.registry, env.settings)
        wanted = plain_value(inputs, "indicators")
        if wanted is None:
            ids = [i.id for i in cat.indicators]
        else:
            if isinstance(wanted, str):
                wanted = [wanted]
            if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
                raise InvalidInput("indicators", "must be a list of indicator ids")
            unknown = [w for w in wanted if cat.get(w) is None]
            if unknown:
                raise InvalidInput("indicators", f"unknown indicator {unknown[0][:60]!r} "
                                   f"(known: {', '.join(i.id for i in cat.indicators)})")
            ids = list(dict.fromkeys(wanted))
        report = text_input(inputs, "report")
        if report not in (None, "annual", "five-year"):
            raise InvalidInput("report", "must be annual or five-year")
        region = region_input(inputs, env, cat)
        year = plain_value(inputs, "year")
        if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
            raise InvalidInput("year", "must be an integer year")
        with env.pool.connection() as conn, conn.cursor() as cur:
            current = current_year(cur)
            years = snapshot_years(cur)
        if year is None:
            year = current if current is not None else (years[-1] if years else None)
        if year is None:
            raise InvalidInput("year", "there is no data yet (no statistics, no snapshots)")
        live = year == current
        if not live:
            if year not in years:
                raise InvalidInput("year", f"no data for {year} (current data year: {current}; "
                                   f"snapshots: {', '.join(map(str, years)) or 'none'})")
            if region.kind == "geometry":
                raise InvalidInput("year", f"{year} is a past year: only the county and its towns have snapshots "
                                   f"of it; a drawn region can be computed for {current} only")
        if report and region.kind == "geometry":
            raise InvalidInput("report", "reports are made for the county or a town (targets are set for them)")
        return {"region": region.as_json(), "year": year, "live": live, "indicators": ids, "report": report}

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:
        cat = get_catalogue(ctx.registry, ctx.settings)
        region = Region(**inputs["region"])
        wanted = [cat.by_id[i] for i in inputs["indicators"]]
        year = inputs["year"]
        ctx.progress(5, "正在计算指标")
        with ctx.pool.connection() as conn:
            if inputs["live"]:
                values = compute(conn, ctx.registry, cat, [region], year, ctx.settings.planar_srid, wanted,
                                 progress=ctx.progress, cache=True)
                with conn.cursor() as cur:
                    rows = decorate(cur, cat, [region], year, values, wanted)
                for r in rows:
                    r["source"] = "live"
            else:
                with conn.cursor() as cur:
                    rows = stored_rows(cur, cat, [region], [year], wanted)
            with conn.cursor() as cur:
                years = snapshot_years(cur)
                span = int(cat.plan.get("evaluation_years", 5))
                history_years = [y for y in years if year - span < y < year]
                history = stored_rows(cur, cat, [region], history_years, wanted)
            conn.rollback()
        doc = {"region": {k: v for k, v in inputs["region"].items() if k != "ewkb"}, "year": year,
               "source": "live" if inputs["live"] else "snapshot", "plan": cat.plan,
               "area_note": "面积类指标：value 为椭球面积（GRS80），value_planar 为平面面积（EPSG:"
                            f"{ctx.settings.planar_srid}），单位公顷",
               "indicators": rows, "history": history,
               "summary": {s: sum(1 for r in rows if r["status"] == s) for s in (STATUS_OK, STATUS_WARN, STATUS_FAIL)}}
        outputs = [json_output("result", doc), Output("csv", "text/csv; charset=utf-8", indicators_csv(rows))]
        if inputs.get("report"):
            ctx.progress(85, "正在生成报告")
            from lantu.processes.indicator_report import render

            html, pdf = render(ctx, cat, doc, inputs["report"])
            outputs += [Output("report_html", "text/html; charset=utf-8", html.encode("utf-8")),
                        Output("report_pdf", "application/pdf", pdf)]
        return outputs


def indicators_csv(rows: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["指标", "名称", "单位", "属性", "年度", "XZQDM", "范围", "值(椭球)", "值(平面)", "目标", "差距",
                     "状态", "上年", "较上年"])

    def fmt(v):
        return "" if v is None else f"{v:.6f}"

    for r in rows:
        writer.writerow([r["indicator"], r["name_zh"], r["unit"], r["nature"], r["year"], r["xzqdm"] or "",
                         r["xzqmc"], fmt(r["value"]), fmt(r["value_planar"]), fmt(r["target"]), fmt(r["gap"]),
                         r["status"] or "", fmt(r.get("previous")), fmt(r.get("change"))])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# ---- the collection core_indicators -------------------------------------------------------------------------
SNAPSHOT_PROPERTIES = (
    ("indicator", "string", "指标标识"), ("name_zh", "string", "指标名称"), ("year", "integer", "年度"),
    ("xzqdm", "string", "行政区代码"), ("xzqmc", "string", "行政区名称"), ("unit", "string", "单位"),
    ("nature", "string", "指标属性（约束性/预期性）"), ("value", "number", "指标值（面积为椭球面积）"),
    ("value_planar", "number", "指标值（平面面积）"), ("target", "number", "规划目标"), ("gap", "number", "差距"),
    ("status", "string", "状态（达标/预警/未达标）"), ("previous", "number", "上一年度值"),
    ("change", "number", "较上一年度变化"), ("computed_at", "timestamp", "计算时间"),
)


def snapshot_source():
    """The yearly snapshots as a non-spatial feature source (collection ``core_indicators``)."""
    from lantu.providers.features import FeatureSource, Property

    return FeatureSource("core_indicators", "lantu", "indicator_snapshots",
                         tuple(Property(name, name, typ, title) for name, typ, title in SNAPSHOT_PROPERTIES),
                         geometry_type="None", geometry_column=None)


# ---- the yearly schedule (lantu worker) ---------------------------------------------------------------------
SCHEDULE_LOCK = 7_424_811  # advisory lock: one worker takes the scheduled snapshot


def scheduled_year(now: dt.datetime, snapshot_date: str) -> int:
    """The latest year whose snapshot date (``MM-DD``) has passed at ``now``."""
    month, day = (int(x) for x in snapshot_date.split("-"))
    due = dt.datetime(now.year, month, day, tzinfo=now.tzinfo)
    return now.year if now >= due else now.year - 1


def run_schedule(env: Env, now: dt.datetime | None = None) -> int | None:
    """Take the yearly snapshot when its date has passed, none exists for that year and the data describe it
    (statistics of that year are the current data year); returns the year snapshotted, else None."""
    now = now or dt.datetime.now(dt.UTC).astimezone()
    year = scheduled_year(now, env.settings.indicator_snapshot_date)
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SCHEDULE_LOCK,))
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT EXISTS (SELECT 1 FROM lantu.indicator_snapshots WHERE year = %s)", (year,))
        if cur.fetchone()[0]:
            return None
        current = current_year(cur)
        if current != year:
            log.warning("indicator snapshot %s is due but the data describe %s: load the %s statistics first",
                        year, current, year)
            return None
        cat = get_catalogue(env.registry, env.settings)
        rows = snapshot_rows(conn, env.registry, cat, year, env.settings.planar_srid)
        store_snapshot(conn, rows, year)
    log.info("indicator snapshot %s stored (%d rows)", year, len(rows))
    return year


def load_targets(env: Env, cat: Catalogue, path: Path) -> int:
    """Targets from a CSV (indicator, xzqdm, target[, source]); all rows checked before any is stored."""
    rows = []
    with open(path, encoding="utf-8-sig", newline="") as fh:
        for n, rec in enumerate(csv.DictReader(fh), start=2):
            where = f"{path.name} line {n}"
            if rec.get("indicator") not in cat.by_id:
                raise ValueError(f"{where}: unknown indicator {rec.get('indicator')!r}")
            code = (rec.get("xzqdm") or "").strip()
            if not (code.isdigit() and len(code) in (6, 12) and code.startswith(cat.county_code)):
                raise ValueError(f"{where}: xzqdm {code!r} is not the county or one of its towns")
            try:
                target = float(rec.get("target") or "")
            except ValueError:
                raise ValueError(f"{where}: target {rec.get('target')!r} is not a number") from None
            rows.append((rec["indicator"], code, target, rec.get("source") or path.name))
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO lantu.indicator_targets (indicator, xzqdm, target, source) "
                        "VALUES (%s, %s, %s, %s) ON CONFLICT (indicator, xzqdm) DO UPDATE SET "
                        "target = EXCLUDED.target, "
                        "source = EXCLUDED.source", rows)
    return len(rows)

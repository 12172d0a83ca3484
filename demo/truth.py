"""The known answers of the demo county: every overlap the conflict checks must find, with its area.

Pairs are enumerated exactly from the atoms two features share (features only ever overlap by whole atoms),
so the list covers every overlapping pair of the two layers — planted or incidental. Areas are then
computed the way PostGIS will, from the *stored* geometries (EPSG:4490 doubles):

* planar — the intersection in the EPSG:4547 plane, i.e. ``ST_Area(ST_Intersection(ST_Transform(a.geom,
  4547), ST_Transform(b.geom, 4547)))``;
* ellipsoidal — the geodesic area on GRS80 (Karney's algorithm, pyproj ``Geod``) of that intersection
  transformed back to EPSG:4490, i.e. ``ST_Area(ST_Transform(x, 4490)::geography, true)``.

Class A subtracts the permanent farmland the pair's intersection covers (``ST_Difference`` with the union
of the listed ``minus`` features). Each area is given in m², 亩 (10000/15 m²) and 公顷.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyproj
import shapely

from lantu.config.codelists import DIFF_ADVICE
from lantu.demo.county import planar_to_storage, storage_to_planar, towns
from lantu.demo.features import Ctx, Features
from lantu.demo.sites import SITES, ZERO_AREA_TRAPS

MU_M2 = 10000.0 / 15.0
HA_M2 = 10000.0
SLIVER_M2 = 1.0
GEOD = pyproj.Geod(ellps="GRS80")


@dataclass(frozen=True)
class CheckClass:
    check: str
    name: str
    title: str
    a: str  # layer of the first feature of each pair
    b: str
    a_filter: str  # "all", "construction", "non_construction", "csb_010", "csb_not_010", "cropland"
    b_filter: str
    minus: str | None = None


CLASSES: tuple[CheckClass, ...] = (
    CheckClass("three-control-lines", "farmland_in_udb", "永久基本农田位于城镇开发边界内", "basic_farmland",
               "urban_dev_boundary", "all", "all"),
    CheckClass("three-control-lines", "redline_udb", "生态保护红线与城镇开发边界重叠", "eco_red_line",
               "urban_dev_boundary", "all", "all"),
    CheckClass("three-control-lines", "redline_farmland", "生态保护红线与永久基本农田重叠", "eco_red_line",
               "basic_farmland", "all", "all"),
    CheckClass("plan-discrepancy", "A", "城规建设、土规非建设（不含基本农田）", "planned_land_use",
               "construction_scale_boundary", "construction", "csb_not_010", minus="basic_farmland"),
    CheckClass("plan-discrepancy", "B", "土规建设、城规非建设", "construction_scale_boundary", "planned_land_use",
               "csb_010", "non_construction"),
    CheckClass("plan-discrepancy", "C", "城规建设占永久基本农田", "planned_land_use", "basic_farmland",
               "construction", "all"),
    CheckClass("construction-on-cropland", "cropland", "规划建设用地占用现状耕地", "planned_land_use",
               "land_use_survey", "construction", "cropland"),
)
FILTER_TEXT = {
    "all": "every feature",
    "construction": "YDDM is construction land in gb50137 (is_construction: H*, R, A, B, M, W, S, U, G)",
    "non_construction": "YDDM is not construction land in gb50137 (E*)",
    "csb_010": "GZQLXDM = '010' (允许建设区, the land-use plan's construction land)",
    "csb_not_010": "GZQLXDM <> '010' (the land-use plan's non-construction land)",
    "cropland": "DLBM starts with '01' (耕地)",
}
CHECK_TITLES = {
    "three-control-lines": "三条控制线冲突检查",
    "plan-discrepancy": "两规差异图斑（城规 GB 50137 × 土规 建设用地管制区）",
    "construction-on-cropland": "规划建设用地占用现状耕地",
}


def area_block(m2: float) -> dict[str, float]:
    return {"m2": float(m2), "mu": float(m2) / MU_M2, "ha": float(m2) / HA_M2}


def geodesic_area(geom_4490) -> float:
    """Ellipsoidal area (GRS80) of the polygonal parts, like PostGIS ``ST_Area(geography, true)``:
    |exterior| minus |holes| for each polygon, Karney's geodesic polygon area for each ring."""
    total = 0.0
    for poly in shapely.get_parts(geom_4490):
        if poly.geom_type != "Polygon" or poly.is_empty:
            continue
        rings = [poly.exterior, *poly.interiors]
        for k, ring in enumerate(rings):
            xy = shapely.get_coordinates(ring)
            a, _ = GEOD.polygon_area_perimeter(xy[:, 0], xy[:, 1])
            total += abs(a) if k == 0 else -abs(a)
    return total


def polygonal(geom):
    """The polygonal part of an overlay result (lines and points of touching edges dropped)."""
    parts = [p for p in shapely.get_parts(geom) if p.geom_type == "Polygon" and not p.is_empty]
    if not parts:
        return shapely.Polygon()
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def feature_filter(ctx: Ctx, feats: Features, kind: str) -> np.ndarray:
    cl = ctx.registry.code_lists
    rows = feats.rows
    if kind == "all":
        return np.ones(len(rows), dtype=bool)
    if kind in ("construction", "non_construction"):
        cons = np.array([cl["gb50137"].codes[r["YDDM"]].is_construction is True for r in rows], dtype=bool)
        return cons if kind == "construction" else ~cons
    if kind in ("csb_010", "csb_not_010"):
        is010 = np.array([r["GZQLXDM"] == "010" for r in rows], dtype=bool)
        return is010 if kind == "csb_010" else ~is010
    if kind == "cropland":
        return np.array([r["DLBM"].startswith("01") for r in rows], dtype=bool)
    raise ValueError(kind)


def _membership(ctx: Ctx, feats: dict[str, Features], layer: str, kind: str) -> np.ndarray:
    f = feats[layer]
    ok = feature_filter(ctx, f, kind)
    member = f.atom_feature.copy()
    member[member >= 0] = np.where(ok[member[member >= 0]], member[member >= 0], -1)
    return member


@dataclass
class Pair:
    cls: CheckClass
    a: int
    b: int
    atoms: np.ndarray
    minus: tuple[int, ...] = ()
    trap: str | None = None
    site: str | None = None
    designed_zero: bool = False


def enumerate_pairs(ctx: Ctx, feats: dict[str, Features]) -> list[Pair]:
    """Every overlapping pair of every class (from shared atoms), plus the designed zero-area traps."""
    pairs: list[Pair] = []
    bf = feats["basic_farmland"].atom_feature
    for cls in CLASSES:
        ma = _membership(ctx, feats, cls.a, cls.a_filter)
        mb = _membership(ctx, feats, cls.b, cls.b_filter)
        both = (ma >= 0) & (mb >= 0)
        if cls.minus:
            both &= bf < 0
        idx = np.flatnonzero(both)
        keys = ma[idx] * (len(feats[cls.b]) + 1) + mb[idx]
        order = np.argsort(keys, kind="stable")
        idx, keys = idx[order], keys[order]
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.array([], dtype=int)
        for s, e in zip(starts, np.r_[starts[1:], len(keys)], strict=True):
            atoms = idx[s:e]
            a, b = int(ma[atoms[0]]), int(mb[atoms[0]])
            minus = ()
            if cls.minus:
                region = np.flatnonzero((ma == a) & (mb == b))
                minus = tuple(sorted({int(f) for f in bf[region] if f >= 0}))
            pairs.append(Pair(cls, a, b, atoms, minus))
    _mark_sites(ctx, feats, pairs)
    return pairs


def _site_feature(feats: Features, site: str, shape: str) -> int:
    hits = [i for i, (s, n) in enumerate(zip(feats.site_name, feats.shape_name, strict=True))
            if s == site and n == shape]
    if len(hits) != 1:  # pragma: no cover - a site design error
        raise RuntimeError(f"site {site}: {len(hits)} features named {shape} in {feats.layer}")
    return hits[0]


def _mark_sites(ctx: Ctx, feats: dict[str, Features], pairs: list[Pair]) -> None:
    by_class = {c.name: c for c in CLASSES}
    index = {(p.cls.name, p.a, p.b): p for p in pairs}
    for site in SITES:
        for (cname, na, nb), trap in site.traps.items():
            cls = by_class[cname]
            a = _site_feature(feats[cls.a], site.name, na)
            b = _site_feature(feats[cls.b], site.name, nb)
            pair = index.get((cname, a, b))
            if trap in ZERO_AREA_TRAPS:
                if pair is not None:  # pragma: no cover
                    raise RuntimeError(f"{site.name} {na}/{nb} should only touch")
                pair = Pair(cls, a, b, np.array([], dtype=np.int64), designed_zero=True)
                pairs.append(pair)
            elif pair is None:  # pragma: no cover
                raise RuntimeError(f"{site.name} {na}/{nb} should overlap")
            pair.trap, pair.site = trap, site.name
    for p in pairs:
        if p.site is None and len(p.atoms) and (ctx.world.site[p.atoms] >= 0).any():
            p.site = ctx.world.sites[int(ctx.world.site[p.atoms[0]])].site.name


def _planted(ctx: Ctx, pair: Pair) -> bool:
    if pair.site is not None:
        return True
    planted = ctx.world.planted
    if pair.cls.name in planted:
        return bool(planted[pair.cls.name][pair.atoms].any())
    if pair.cls.name == "cropland":  # the planted A and C conflicts are also planned building on cropland
        return bool((planted["A"][pair.atoms] | planted["C"][pair.atoms]).any())
    return False


def compute_truth(ctx: Ctx, feats: dict[str, Features], stored: dict[str, np.ndarray],
                  bsm: dict[str, list[str]]) -> dict[str, Any]:
    """truth.json as a dict (see the module docstring for the area definitions)."""
    w = ctx.world
    pairs = enumerate_pairs(ctx, feats)
    back: dict[str, dict[int, Any]] = {}

    def planar(layer: str, i: int):
        cache = back.setdefault(layer, {})
        if i not in cache:
            cache[i] = storage_to_planar(stored[layer][i])
        return cache[i]

    town_back = storage_to_planar(stored["admin_divisions"])
    town_codes = [t.code12 for t in towns()]  # admin_divisions feature i is town i
    conflicts, problems = [], []
    counters: dict[str, int] = {}
    for p in sorted(pairs, key=lambda q: ([c.name for c in CLASSES].index(q.cls.name), q.a, q.b)):
        inter = shapely.intersection(planar(p.cls.a, p.a), planar(p.cls.b, p.b))
        if p.minus:
            inter = shapely.difference(inter, shapely.union_all([planar("basic_farmland", m) for m in p.minus]))
        poly = polygonal(inter)
        area = float(shapely.area(poly))
        ell = geodesic_area(planar_to_storage(poly)) if area > 0 else 0.0
        expected = float(w.area[p.atoms].sum())
        if abs(area - expected) > 1e-6 * max(expected, 1.0):
            problems.append(f"{p.cls.name} {p.a}/{p.b}: planar {area} but atoms {expected}")
        by_town: dict[str, float] = {}
        if area > 0:
            tset = sorted({int(t) for t in w.town[p.atoms]})
            if len(tset) == 1:
                by_town[town_codes[tset[0]]] = area
            else:
                for t in tset:
                    by_town[town_codes[t]] = float(shapely.area(polygonal(shapely.intersection(poly, town_back[t]))))
        counters[p.cls.name] = counters.get(p.cls.name, 0) + 1
        ga, gb = stored[p.cls.a][p.a], stored[p.cls.b][p.b]
        conflicts.append({
            "id": f"{p.cls.name}-{counters[p.cls.name]:05d}", "check": p.cls.check, "class": p.cls.name,
            "layers": [p.cls.a, p.cls.b], "bsm": [bsm[p.cls.a][p.a], bsm[p.cls.b][p.b]],
            "minus": {"layer": p.cls.minus, "bsm": [bsm[p.cls.minus][m] for m in p.minus]} if p.cls.minus else None,
            "area": {"planar": area_block(area), "ellipsoidal": area_block(ell)},
            "zero_area": area == 0.0, "sliver": 0.0 < area < SLIVER_M2, "expect_reported": area > 0.0,
            "planted": _planted(ctx, p), "trap": p.trap, "site": p.site,
            "multipolygon": any(shapely.get_num_geometries(g) > 1 for g in (ga, gb)),
            "has_holes": any(shapely.get_num_interior_rings(x) > 0 for g in (ga, gb) for x in shapely.get_parts(g)),
            "xzqdm": sorted(by_town), "by_town": by_town,
        })
    if problems:  # pragma: no cover - the atoms and the geometry disagree: a generator bug
        raise RuntimeError("truth self-check failed:\n  " + "\n  ".join(problems[:20]))
    return _document(ctx, feats, conflicts)


def _document(ctx: Ctx, feats: dict[str, Features], conflicts: list[dict]) -> dict[str, Any]:
    w = ctx.world
    checks: dict[str, Any] = {}
    for cls in CLASSES:
        mine = [c for c in conflicts if c["class"] == cls.name]
        positive = [c for c in mine if c["area"]["planar"]["m2"] > 0]
        unplanted = [c["id"] for c in positive if not c["planted"]]
        if cls.check != "construction-on-cropland" and unplanted:  # pragma: no cover
            raise RuntimeError(f"unplanned {cls.name} conflicts: {unplanted[:5]}")
        entry = checks.setdefault(cls.check, {"title": CHECK_TITLES[cls.check], "classes": {}})
        entry["classes"][cls.name] = {
            "title": cls.title, "layers": [cls.a, cls.b],
            "filters": {cls.a: FILTER_TEXT[cls.a_filter], cls.b: FILTER_TEXT[cls.b_filter]},
            "minus": {"layer": cls.minus, "rule": "ST_Difference with the union of the farmland the pair's "
                      "intersection overlaps"} if cls.minus else None,
            "totals": {
                "pairs": len(positive), "zero_area_pairs_listed": len(mine) - len(positive),
                "slivers": sum(c["sliver"] for c in positive), "planted": sum(c["planted"] for c in positive),
                "area": {"planar": area_block(sum(c["area"]["planar"]["m2"] for c in positive)),
                         "ellipsoidal": area_block(sum(c["area"]["ellipsoidal"]["m2"] for c in positive))},
            },
        }
    return {
        "schema": "lantu-demo-truth/1",
        "note": "合成演示数据，不得用于生产 (synthetic demo data, not for production)",
        "county": {"xzqdm": "430121", "name": "长沙县",
                   "towns": [{"xzqdm": t.code12, "name": t.name, "kind": t.kind} for t in towns()]},
        "scale": w.scale, "seed": w.seed,
        "crs": {"storage": "EPSG:4490", "planar": "EPSG:4547", "ellipsoid": "GRS80"},
        "definitions": {
            "planar": "area in the EPSG:4547 plane of ST_Intersection(ST_Transform(a.geom, 4547), "
                      "ST_Transform(b.geom, 4547)) (class A: ST_Difference of that with the union of the "
                      "'minus' features, also in EPSG:4547); only its polygonal part counts",
            "ellipsoidal": "geodesic area on GRS80 of that same geometry transformed to EPSG:4490: "
                           "ST_Area(ST_Transform(x, 4490)::geography, true)",
            "m2": "平方米", "mu": "亩, 1 亩 = 10000/15 m²", "ha": "公顷, 1 公顷 = 10000 m²",
            "pairs": "every pair of features of the two layers (after the filters) whose intersection has "
                     "positive area, planted or not; zero-area pairs are listed only where planted as traps",
            "sliver": f"0 < planar area < {SLIVER_M2} m²; still a real overlap (expect_reported true)",
            "zero_area": "the features only touch (shared edge or corner): must not be reported",
            "planted": "deliberately placed conflict (a trap site or a planted landscape conflict); "
                       "construction-on-cropland also has incidental pairs (planned growth on fields)",
            "by_town": "planar area of the conflict inside each town it falls in (XZQDM)",
        },
        "checks": checks,
        "conflicts": conflicts,
        "sites": [{"name": p.site.name, "title": p.site.title, "origin_epsg4547": list(p.origin),
                   "size_m": 400, "towns": sorted({towns()[t].code12 for t in p.towns})} for p in w.sites],
        "layers": {k: len(v) for k, v in sorted(feats.items())},
    }


# ---- the 差异图斑 ledger --------------------------------------------------------------------------------


def discrepancy_ledger(ctx: Ctx, feats: dict[str, Features]) -> Features:
    """差异图斑: one patch per class, pair and town, with the two plans' codes (CGYD / TGYT)."""
    w = ctx.world
    plu, csb, bf = (feats[k].atom_feature for k in ("planned_land_use", "construction_scale_boundary",
                                                      "basic_farmland"))
    cons = feature_filter(ctx, feats["planned_land_use"], "construction")
    is010 = feature_filter(ctx, feats["construction_scale_boundary"], "csb_010")
    has = (plu >= 0) & (csb >= 0)
    pc = np.zeros(len(w.atoms), dtype=bool)
    c010 = np.zeros(len(w.atoms), dtype=bool)
    pc[has], c010[has] = cons[plu[has]], is010[csb[has]]
    cls = np.full(len(w.atoms), "", dtype=object)
    cls[has & pc & ~c010 & (bf < 0)] = "A"
    cls[has & c010 & ~pc] = "B"
    cls[has & pc & (bf >= 0)] = "C"
    keys: dict[tuple, list[int]] = {}
    for i in np.flatnonzero(cls != ""):
        keys.setdefault((str(cls[i]), int(plu[i]), int(csb[i]), int(w.town[i])), []).append(int(i))
    rows, geoms = [], []
    for key in sorted(keys):
        idx = np.array(keys[key])
        geoms.append(w.atoms[idx[0]] if len(idx) == 1 else shapely.coverage_union_all(w.atoms[idx]))
        rows.append({"CYLX": key[0], "CGYD": feats["planned_land_use"].rows[key[1]]["YDDM"],
                     "TGYT": feats["construction_scale_boundary"].rows[key[2]]["GZQLXDM"], "XTZT": "待协调",
                     "XTYJ": DIFF_ADVICE[key[0]]})
    return Features("discrepancy_patches", rows, np.array(geoms, dtype=object))

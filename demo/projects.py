"""Planted project sites for ``control-line-check`` and a planted site-selection case, for truth.json.

Both are placed after the layers are built, deterministically, by searching the generated data; the
generator fails loudly when a placement cannot be made. Everything they record is measured, like the
conflicts of :mod:`lantu.demo.truth`, on the *stored* geometry: the EPSG:4490 doubles of the features (and of
the site itself) transformed to the EPSG:4547 plane, i.e. what ``ST_Transform(geom, 4547)`` gives PostGIS.

**Project sites** (``truth["project_sites"]``), quadrilaterals drawn on the integer-metre grid of EPSG:4547:

* ``P1`` clean — touches only 允许建设区 (``construction_scale_boundary`` with GZQLXDM '010', a layer that
  tiles the county) and keeps ≥ 100 m from everything else of the eleven control-line layers;
* ``P2`` 30 % of its planar area in permanent basic farmland, no red-line contact;
* ``P3`` 60 % inside, 40 % outside the urban development boundary, no red line or farmland;
* ``P4`` across the edge of a 蓝线 polygon (10–90 % of the site) and a 道路红线 (a line layer in this registry:
  the two edges of the road's corridor, so "crosses" means the line runs through the site);
* ``P5`` wholly inside one 生态保护红线 polygon, at least 20 m from its boundary.

Each site records, for every vector layer, whether it intersects the site (positive area for polygons, any
contact for lines and points), the overlap (area of the union of site ∩ feature, planar and ellipsoidal), its
share of the site, the BSMs hit and the planar distance to the nearest feature. A placement is refused when
any feature comes within 1 cm of the site without clearly crossing it: such contacts could be decided either
way by two GEOS builds.

**Site selection** (``truth["site_selection"]``): one region (a town), constraint layers, allowed urban-plan
codes, area bounds and a road-distance limit, with the ranked candidate parts and a few rejected examples;
:data:`SEMANTICS` is the definition, written so that it can be implemented in PostGIS.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.ops import polylabel

from lantu.demo.county import planar_to_storage, storage_to_planar, towns
from lantu.demo.features import Ctx, Features
from lantu.demo.truth import area_block, geodesic_area, polygonal

TOUCH_M = 0.01  # contacts closer than this (m, and m² of overlap) are ambiguous: the placement is refused
CLEAN_MARGIN_M = 100.0  # P1's distance to every control line but 允许建设区
INSIDE_MARGIN_M = 20.0  # P5's distance to the boundary of its red-line polygon
SHARE_AIM = 0.0005  # P2/P3 shares are hit to within this (the contract allows ± 0.002)
COUNTY_MARGIN_M = 10.0  # every site keeps this far inside the county
HEIGHT_M = 200  # north-south size of the P2/P3 sites
ANCHOR_STEP_M = 400.0  # spacing of the trial points along a layer's boundary

SEMANTICS = (
    "For each land_use_layer feature whose YDDM is in allowed_codes and which intersects the region (the "
    "admin_divisions feature with that XZQDM): piece = feature ∩ region ∩ union(inside layers) − "
    "union(outside layers), computed in the EPSG:4547 plane (every geometry ST_Transform'ed from its stored "
    "EPSG:4490 to 4547; the unions are over all features of the listed layers, which are all polygon layers); "
    "split piece into its polygon parts (ST_Dump of its polygonal part), numbered from 0 by planar area "
    "descending; a part is a candidate when min_area_m2 ≤ planar area ≤ max_area_m2 and its planar distance "
    "to the nearest road_layer feature (any feature of the layer, inside the region or not) ≤ "
    "max_road_distance_m. Rank by road distance ascending, then planar area descending, then BSM (then part). "
    "Rejected: 'outside' — feature ∩ region ∩ union(inside layers) has no area; 'control_line' — it has area "
    "but the outside layers cover all of it; 'area' — a part outside [min_area_m2, max_area_m2]; "
    "'road_distance' — a part within the area bounds but farther than max_road_distance_m from every road. "
    "Areas: planar = ST_Area in EPSG:4547; ellipsoidal = ST_Area(ST_Transform(part, 4490)::geography, true).")

# The site-selection case: industry and logistics may go on M1 M2 W1, utilities' land U11 U12 U21 U22 (which
# the 黄线 protects: 'control_line' rejections) and village construction land H14 (outside the boundary:
# 'outside' rejections); the codes absent from the generated urban plan are dropped. The numeric
# constraints are the first of THRESHOLDS[scale] — (min_area_m2, max_area_m2, max_road_distance_m) — that
# gives 3–30 candidates and every rejection reason in the town tried; towns are tried in code order (see
# site_selection for seeds where no town has all four reasons).
SELECTION_CODES = ("M1", "M2", "W1", "U11", "U12", "U21", "U22", "H14")
THRESHOLDS: dict[str, tuple[tuple[float, float, float], ...]] = {
    "small": tuple((lo, hi, road) for lo in (1e4, 5e4, 1e5, 2e5) for hi in (3e6, 2.5e6, 2e6, 1.5e6, 1e6)
                   for road in (10.0, 50.0, 100.0, 200.0, 300.0)),
    "county": tuple((lo, hi, road) for lo in (1e4, 2e4, 5e3) for hi in (1.5e5, 1e5, 2e5, 3e5)
                    for road in (60.0, 30.0, 100.0, 150.0, 200.0)),
}
SELECTION_INSIDE = ["urban_dev_boundary"]
SELECTION_OUTSIDE = ["eco_red_line", "basic_farmland", "eco_control_line", "blue_line", "green_line",
                     "purple_line", "yellow_line", "historic_block_protection"]
SELECTION_CANDIDATES = (3, 30)
REASONS = ("outside", "control_line", "area", "road_distance")


class PlacementError(RuntimeError):
    """A planted site or the site-selection case could not be placed in the generated data."""


# ---- the stored layers ---------------------------------------------------------------------------------
class Stored:
    """Every vector layer, looked up through its integer EPSG:4547 geometry (STRtree) and measured on its
    stored EPSG:4490 doubles transformed back to EPSG:4547 (cached per feature)."""

    def __init__(self, ctx: Ctx, feats: dict[str, Features], stored: dict[str, np.ndarray],
                 bsm: dict[str, list[str]]):
        self.layers = {layer.id: layer for layer in ctx.registry.vector_layers()}
        self.control = [lid for lid, layer in self.layers.items() if layer.control_line]
        self.feats, self.stored, self.bsm = feats, stored, bsm
        self.county = ctx.world.county
        self.county_inner = shapely.buffer(ctx.world.county, -COUNTY_MARGIN_M)
        shapely.prepare(self.county_inner)
        self._trees: dict[str, shapely.STRtree] = {}
        self._planar: dict[str, dict[int, Any]] = {}

    def kind(self, layer: str) -> str:
        return self.layers[layer].geometry

    def grid(self, layer: str) -> np.ndarray:
        """The features on the integer grid (for searching only)."""
        return self.feats[layer].geoms

    def tree(self, layer: str) -> shapely.STRtree:
        if layer not in self._trees:
            self._trees[layer] = shapely.STRtree(self.grid(layer))
        return self._trees[layer]

    def planar(self, layer: str, idx) -> np.ndarray:
        """Stored geometry of features ``idx`` in the EPSG:4547 plane."""
        idx = [int(i) for i in np.atleast_1d(idx)]
        cache = self._planar.setdefault(layer, {})
        missing = [i for i in idx if i not in cache]
        if missing:
            cache.update(zip(missing, storage_to_planar(self.stored[layer][missing]), strict=True))
        return np.array([cache[i] for i in idx], dtype=object)

    def near(self, layer: str, geom, distance: float) -> np.ndarray:
        """Features within ``distance`` (+ 1 m of slack for the round trip) of a grid geometry, sorted."""
        return np.sort(self.tree(layer).query(geom, predicate="dwithin", distance=distance + 1.0))

    def union_near(self, layer: str, geom, distance: float):
        idx = self.near(layer, geom, distance)
        return shapely.union_all(self.grid(layer)[idx]) if len(idx) else shapely.Polygon()


# ---- measuring a site ----------------------------------------------------------------------------------
@dataclass
class Site:
    design: shapely.Polygon  # EPSG:4547, integer vertices
    stored: shapely.Polygon  # EPSG:4490 (x = lon), what a client sends
    planar: shapely.Polygon  # the stored polygon back in EPSG:4547: every measure is taken on it
    layers: dict[str, dict[str, Any]]
    hits: dict[str, np.ndarray]  # feature indexes per layer
    problems: list[str]

    @property
    def area(self) -> float:
        return float(shapely.area(self.planar))


def measure(s: Stored, design: shapely.Polygon) -> Site:
    stored = planar_to_storage(design)
    planar = storage_to_planar(stored)
    site_area = float(shapely.area(planar))
    layers, hits, problems = {}, {}, []
    for layer in s.layers:
        entry, hit, trouble = _measure_layer(s, layer, design, planar, site_area)
        layers[layer], hits[layer] = entry, hit
        problems += trouble
    return Site(design, stored, planar, layers, hits, problems)


def _measure_layer(s: Stored, layer: str, design, planar, site_area: float):
    kind = s.kind(layer)
    empty = {"planar": area_block(0.0), "ellipsoidal": area_block(0.0)}
    if len(s.grid(layer)) == 0:
        return ({"intersects": False, "overlap": empty, "share": 0.0, "bsm": [], "distance_m": None},
                np.array([], dtype=np.int64), [])
    _, grid_d = s.tree(layer).query_nearest(design, return_distance=True)
    cand = s.near(layer, design, float(np.min(grid_d)))
    geoms = s.planar(layer, cand)
    dist = shapely.distance(planar, geoms)
    hit, pieces, trouble = [], [], []
    for i, g, d in zip(cand, geoms, dist, strict=True):
        if d > TOUCH_M:
            continue
        if kind == "Polygon":
            piece = polygonal(shapely.intersection(planar, g))
            ok = shapely.area(piece) > TOUCH_M
            pieces += [piece] if ok else []
        elif kind == "LineString":
            ok = shapely.length(shapely.intersection(planar, g)) > TOUCH_M
        else:
            ok = bool(shapely.contains(planar, g)) and shapely.distance(planar.exterior, g) > TOUCH_M
        if ok:
            hit.append(int(i))
        else:
            trouble.append(f"{layer} {s.bsm[layer][i]} only touches the site (distance {d:.3g} m)")
    overlap = polygonal(shapely.union_all(pieces)) if pieces else shapely.Polygon()
    a = float(shapely.area(overlap))
    e = geodesic_area(planar_to_storage(overlap)) if a > 0 else 0.0
    entry = {
        "intersects": bool(hit),
        "overlap": {"planar": area_block(a), "ellipsoidal": area_block(e)},
        "share": a / site_area if kind == "Polygon" else 0.0,
        "bsm": sorted(s.bsm[layer][i] for i in hit),
        "distance_m": 0.0 if hit else float(np.min(dist)),
    }
    return entry, np.array(hit, dtype=np.int64), trouble


def _quad(a: float, m_low: float, m_high: float, y0: float, h: float) -> shapely.Polygon:
    """Quadrilateral with a fixed west/east side at x = a and the other side from (m_low, y0) to (m_high, y0+h)."""
    return shapely.Polygon([(a, y0), (m_low, y0), (m_high, y0 + h), (a, y0 + h)])


# ---- the five sites ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    name: str
    kind: str
    title: str
    search: Callable[[Stored], Iterator[tuple[shapely.Polygon, str]]]
    accept: Callable[[Stored, Site], str | None]  # None if the site has the designed property, else why not


def _far_from(s: Stored, site: Site, layers, margin: float) -> str | None:
    for layer in layers:
        d = site.layers[layer]["distance_m"]
        if d is not None and d < margin:
            return f"{layer} at {d:.2f} m"
    return None


def _clean_rule(s: Stored) -> tuple[str, Callable[[int], bool]]:
    csb = s.feats["construction_scale_boundary"]
    tiles = abs(float(np.sum(shapely.area(csb.geoms))) - s.county.area) < 1e-6 * s.county.area
    ok010 = np.array([r["GZQLXDM"] == "010" for r in csb.rows], dtype=bool)
    others = [lid for lid in s.control if lid != "construction_scale_boundary"]
    text = ("construction_scale_boundary tiles the whole county (its features' areas sum to the county's), so "
            "every site touches it. " if tiles else "") + (
        f"Clean means: the site intersects no feature of the {len(others)} other control-line layers "
        f"({' '.join(others)}) and keeps ≥ 100 m (planar, EPSG:4547) from all of them; of "
        "construction_scale_boundary it intersects only features with GZQLXDM = '010' (允许建设区) and keeps "
        "≥ 100 m from every feature with GZQLXDM ≠ '010', i.e. it lies ≥ 100 m inside the 允许建设区.")
    return text, lambda i: bool(ok010[i])


def _search_clean(s: Stored) -> Iterator[tuple[shapely.Polygon, str]]:
    rule, is010 = _clean_rule(s)
    csb = s.grid("construction_scale_boundary")
    others = [lid for lid in s.control if lid != "construction_scale_boundary"]
    for f in np.flatnonzero([is010(i) for i in range(len(csb))]):
        zone = csb[f]
        inner = shapely.intersection(shapely.buffer(zone, -(CLEAN_MARGIN_M + 2)), s.county_inner)
        if shapely.is_empty(inner):
            continue
        block = [s.union_near(lid, zone, CLEAN_MARGIN_M + 2) for lid in others]
        allowed = shapely.difference(inner, shapely.buffer(shapely.union_all(block), CLEAN_MARGIN_M + 2))
        for poly in sorted(shapely.get_parts(allowed), key=lambda p: -p.area):
            if poly.geom_type != "Polygon" or poly.area < 100 * 100:
                continue
            centre = polylabel(poly, tolerance=1.0)
            radius = float(shapely.distance(centre, poly.boundary))
            side = min(200, int(math.floor(radius * math.sqrt(2))) - 4)
            if side < 100:
                continue
            x0, y0 = round(centre.x) - side // 2, round(centre.y) - side // 2
            design = shapely.box(x0, y0, x0 + side, y0 + side)
            if shapely.covered_by(design, poly):
                yield design, (f"{side} m square inside 允许建设区 {s.bsm['construction_scale_boundary'][f]}, "
                               f"centred on the pole of inaccessibility of the part of it ≥ 102 m from every other "
                               f"control line. {rule}")


def _accept_clean(s: Stored, site: Site) -> str | None:
    _, is010 = _clean_rule(s)
    others = [lid for lid in s.control if lid != "construction_scale_boundary"]
    if (why := _far_from(s, site, others, CLEAN_MARGIN_M)) is not None:
        return why
    hits = site.hits["construction_scale_boundary"]
    if not len(hits) or not all(is010(i) for i in hits):
        return "touches construction_scale_boundary other than 010"
    non010 = np.array([i for i in range(len(s.grid("construction_scale_boundary"))) if not is010(i)])
    near = non010[np.isin(non010, s.near("construction_scale_boundary", site.design, CLEAN_MARGIN_M + 5))]
    if len(near) and float(np.min(shapely.distance(site.planar, s.planar("construction_scale_boundary", near)))) \
            < CLEAN_MARGIN_M:
        return "closer than 100 m to a construction_scale_boundary feature other than 010"
    return None


def _straddle(layer: str, target: float, avoid: tuple[str, ...]):
    """Sites across ``layer``'s edge: a ``HEIGHT_M`` tall quadrilateral with one side 150 m inside the layer and
    the other moved outwards (bisection on the integer grid) until the layer covers ``target`` of it, then
    its two outer corners nudged by up to 3 m each to get within :data:`SHARE_AIM`."""
    def search(s: Stored) -> Iterator[tuple[shapely.Polygon, str]]:
        grid = s.grid(layer)
        for f in range(len(grid)):
            for ring in [grid[f].exterior] if grid[f].geom_type == "Polygon" else [p.exterior for p in grid[f].geoms]:
                for at in np.arange(ANCHOR_STEP_M / 2, ring.length, ANCHOR_STEP_M):
                    p = shapely.line_interpolate_point(ring, at)
                    found = _straddle_at(s, layer, target, avoid, round(p.x), round(p.y))
                    if found is not None:
                        design, text = found
                        yield design, f"{text}; anchored on the edge of {layer} {s.bsm[layer][f]}"
    return search


def _straddle_at(s: Stored, layer: str, target: float, avoid, bx: int, by: int):
    y0 = by - HEIGHT_M // 2
    window = shapely.box(bx - 1200, y0 - 100, bx + 1200, y0 + HEIGHT_M + 100)
    cover = s.union_near(layer, window, 0.0)
    west, east = (bool(shapely.contains_xy(cover, bx + dx, by)) for dx in (-60, 60))
    if west == east:
        return None
    sgn = 1 if west else -1  # the layer is on the side opposite to sgn: grow the site in direction sgn
    a = bx - sgn * 150

    def share(poly) -> float:
        return float(shapely.area(shapely.intersection(poly, cover)) / shapely.area(poly))

    def rect(t: int):
        m = bx + sgn * t
        return _quad(a, m, m, y0, HEIGHT_M)

    lo, hi = -50, 900
    if not (share(rect(lo)) > target > share(rect(hi))):
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if share(rect(mid)) > target else (lo, mid)
    m = bx + sgn * lo
    best = min((abs(share(_quad(a, m + i, m + j, y0, HEIGHT_M)) - target), abs(i) + abs(j), i, j)
               for i in range(-3, 4) for j in range(-3, 4))
    if best[0] > SHARE_AIM / 2:
        return None
    design = _quad(a, m + best[2], m + best[3], y0, HEIGHT_M)
    if not shapely.covered_by(design, s.county_inner) or any(len(s.near(lid, design, 2.0)) for lid in avoid):
        return None
    side = "east" if sgn == 1 else "west"
    return design, (f"{HEIGHT_M} m tall quadrilateral with its {'west' if sgn == 1 else 'east'} side 150 m inside "
                    f"{layer} and its {side} side moved out by bisection on the 1 m grid until {layer} covers "
                    f"{target:.0%} of it, the two outer corners then nudged by ≤ 3 m; no contact with "
                    f"{', '.join(avoid)}")


def _accept_share(layer: str, target: float, avoid: tuple[str, ...]):
    def accept(s: Stored, site: Site) -> str | None:
        share = site.layers[layer]["share"]
        if abs(share - target) > SHARE_AIM:
            return f"share {share}"
        return _far_from(s, site, avoid, 1.0)
    return accept


def _search_crossing(s: Stored) -> Iterator[tuple[shapely.Polygon, str]]:
    roads, water = s.grid("road_red_line"), s.grid("blue_line")
    ri, wi = s.tree("blue_line").query(roads, predicate="intersects")
    for r, w in sorted(zip(ri.tolist(), wi.tolist(), strict=True)):
        bank = shapely.intersection(roads[r], shapely.boundary(water[w]))
        for x, y in shapely.get_coordinates(bank):
            x, y = round(x), round(y)
            design = shapely.box(x - 100, y - 100, x + 100, y + 100)
            if shapely.covered_by(design, s.county_inner):
                yield design, (f"200 m square centred where road_red_line {s.bsm['road_red_line'][r]} crosses the "
                               f"edge of blue_line {s.bsm['blue_line'][w]} (rounded to the metre), so that it takes "
                               "in water and bank")


def _accept_crossing(s: Stored, site: Site) -> str | None:
    if not 0.1 <= site.layers["blue_line"]["share"] <= 0.9:
        return f"blue_line share {site.layers['blue_line']['share']:.3f}"
    if not site.layers["road_red_line"]["intersects"]:
        return "no road_red_line"
    return None


def _search_inside(s: Stored) -> Iterator[tuple[shapely.Polygon, str]]:
    erl = s.grid("eco_red_line")
    for f in np.lexsort((np.arange(len(erl)), -shapely.area(erl))):
        inner = shapely.buffer(erl[f], -(INSIDE_MARGIN_M + 2))
        for poly in sorted(shapely.get_parts(inner), key=lambda p: -p.area):
            if poly.geom_type != "Polygon" or poly.area < 100 * 100:
                continue
            centre = polylabel(poly, tolerance=1.0)
            radius = float(shapely.distance(centre, poly.boundary))
            side = min(200, int(math.floor(radius * math.sqrt(2))) - 4)
            if side < 100:
                continue
            x0, y0 = round(centre.x) - side // 2, round(centre.y) - side // 2
            design = shapely.box(x0, y0, x0 + side, y0 + side)
            if shapely.covered_by(design, poly) and shapely.covered_by(design, s.county_inner):
                yield design, (f"{side} m square centred on the pole of inaccessibility of eco_red_line "
                               f"{s.bsm['eco_red_line'][f]} shrunk by {INSIDE_MARGIN_M + 2:g} m (largest polygons "
                               "first): wholly inside that one polygon, ≥ 20 m from its boundary")


def _accept_inside(s: Stored, site: Site) -> str | None:
    hits = site.hits["eco_red_line"]
    if len(hits) != 1:
        return "not in exactly one red-line polygon"
    erl = s.planar("eco_red_line", hits)[0]
    if not shapely.within(site.planar, erl) or shapely.distance(site.planar, erl.boundary) < INSIDE_MARGIN_M:
        return "not 20 m inside"
    if abs(site.layers["eco_red_line"]["share"] - 1.0) > 1e-9:
        return "share not 1"
    return None


PLANS: tuple[Plan, ...] = (
    Plan("P1", "clean", "项目用地：不触及任何控制线（位于允许建设区内）", _search_clean, _accept_clean),
    Plan("P2", "farmland_30", "项目用地：30% 位于永久基本农田",
         _straddle("basic_farmland", 0.30, ("eco_red_line",)),
         _accept_share("basic_farmland", 0.30, ("eco_red_line",))),
    Plan("P3", "udb_60_40", "项目用地：60% 位于城镇开发边界内、40% 位于边界外",
         _straddle("urban_dev_boundary", 0.60, ("eco_red_line", "basic_farmland")),
         _accept_share("urban_dev_boundary", 0.60, ("eco_red_line", "basic_farmland"))),
    Plan("P4", "blue_and_road", "项目用地：跨越河道蓝线与道路红线", _search_crossing, _accept_crossing),
    Plan("P5", "inside_red_line", "项目用地：完全位于生态保护红线内", _search_inside, _accept_inside),
)


def _geojson_polygon(poly: shapely.Polygon, as_int: bool = False) -> dict[str, Any]:
    rings = [poly.exterior, *poly.interiors]
    conv = (lambda v: int(round(v))) if as_int else float
    return {"type": "Polygon", "coordinates": [[[conv(x), conv(y)] for x, y in shapely.get_coordinates(r)]
                                                for r in rings]}


def place_sites(s: Stored) -> list[dict[str, Any]]:
    town_codes = [t.code12 for t in towns()]  # admin_divisions feature i is town i
    out = []
    for plan in PLANS:
        refused: list[str] = []
        chosen: tuple[str, Site] | None = None
        for design, text in plan.search(s):
            site = measure(s, design)
            why = "; ".join(site.problems[:2]) if site.problems else plan.accept(s, site)
            if why is None:
                chosen = (text, site)
                break
            refused.append(why)
        if chosen is None:
            raise PlacementError(f"project site {plan.name} ({plan.kind}): no placement found; "
                                 f"{len(refused)} tried, e.g. {refused[:3]}")
        text, site = chosen
        out.append({
            "name": plan.name, "title": plan.title, "kind": plan.kind, "design": text,
            "geometry": _geojson_polygon(site.stored), "geometry_epsg4547": _geojson_polygon(site.design, True),
            "area": {"planar": area_block(site.area), "ellipsoidal": area_block(geodesic_area(site.stored))},
            "xzqdm": sorted(town_codes[i] for i in site.hits["admin_divisions"]),
            "layers": site.layers,
        })
    return out


# ---- site selection ------------------------------------------------------------------------------------
@dataclass
class Part:
    bsm: str
    part: int | None
    area: float
    ellipsoidal: float
    road: float | None
    reason: str | None  # None: a candidate


def selection_parts(s: Stored, town: int, codes: list[str]) -> list[Part]:
    """Every part (and every feature left without parts) of the case in town ``town``, before the numeric
    constraints: ``reason`` is 'outside', 'control_line' or None (a part, to be judged by area and road)."""
    region = s.planar("admin_divisions", town)[0]
    grid_region = s.grid("admin_divisions")[town]

    def union(layers) -> Any:
        geoms = [g for lid in layers for g in s.planar(lid, s.near(lid, grid_region, 0.0))]
        return shapely.union_all(geoms) if geoms else shapely.Polygon()

    inside, outside = union(SELECTION_INSIDE), union(SELECTION_OUTSIDE)
    rows = s.feats["planned_land_use"].rows
    near = s.near("planned_land_use", grid_region, 0.0)
    near = near[[rows[i]["YDDM"] in codes for i in near]]
    parts = []
    for i, g in zip(near, s.planar("planned_land_use", near), strict=True):
        if not shapely.intersects(g, region):
            continue
        bsm = s.bsm["planned_land_use"][i]
        in_region = polygonal(shapely.intersection(g, region))
        piece_in = polygonal(shapely.intersection(in_region, inside))
        piece = polygonal(shapely.difference(piece_in, outside))
        if shapely.area(piece_in) == 0 or shapely.area(piece) == 0:
            reason = "outside" if shapely.area(piece_in) == 0 else "control_line"
            kept = in_region if reason == "outside" else piece_in
            parts.append(Part(bsm, None, float(shapely.area(kept)), _ell(kept), None, reason))
            continue
        for k, p in enumerate(sorted(shapely.get_parts(piece), key=lambda q: -q.area)):
            parts.append(Part(bsm, k, float(p.area), _ell(p), _road_distance(s, p), None))
    return parts


def judge(parts: list[Part], lo: float, hi: float, road: float) -> tuple[list[Part], list[str]]:
    """The parts with their reasons under the numeric constraints, and the measures too close to a
    threshold to be decided the same way by every GEOS build."""
    out, doubtful = [], []
    for p in parts:
        if p.part is None:
            out.append(p)
            continue
        if p.area >= 1.0 and min(abs(p.area - lo), abs(p.area - hi)) < 1e-4 * p.area:
            doubtful.append(f"{p.bsm} part {p.part} area {p.area}")
        if abs(p.road - road) < 0.01:
            doubtful.append(f"{p.bsm} part {p.part} road distance {p.road}")
        reason = "area" if not lo <= p.area <= hi else "road_distance" if p.road > road else None
        out.append(Part(p.bsm, p.part, p.area, p.ellipsoidal, p.road, reason))
    return out, doubtful


def _ell(geom) -> float:
    return geodesic_area(planar_to_storage(geom)) if shapely.area(geom) > 0 else 0.0


def _road_distance(s: Stored, part) -> float:
    _, d = s.tree("road_centerline").query_nearest(part, return_distance=True)
    near = s.near("road_centerline", part, float(np.min(d)))
    return float(np.min(shapely.distance(part, s.planar("road_centerline", near))))


def site_selection(s: Stored, scale: str) -> dict[str, Any]:
    """The first town (code order) and numbers (:data:`THRESHOLDS` order) giving 3–30 candidates and every
    rejection reason; failing that (other seeds), the first giving 3–30 candidates and the most reasons."""
    present = {r["YDDM"] for r in s.feats["planned_land_use"].rows}
    codes = [c for c in SELECTION_CODES if c in present]
    lo_n, hi_n = SELECTION_CANDIDATES
    best: tuple[int, Any] | None = None
    for t in towns():
        raw = selection_parts(s, t.index, codes)
        for numbers in THRESHOLDS[scale]:
            parts, doubtful = judge(raw, *numbers)
            cands = sorted((p for p in parts if p.reason is None), key=lambda p: (p.road, -p.area, p.bsm, p.part))
            reasons = {p.reason for p in parts if p.reason and p.area >= 1.0}
            if not lo_n <= len(cands) <= hi_n or doubtful:
                continue
            if best is None or len(reasons) > best[0]:
                best = (len(reasons), (t, codes, numbers, parts, cands))
            if len(reasons) == len(REASONS):
                return _selection_entry(*best[1])
    if best is None:
        raise PlacementError(f"site selection: no town gives {lo_n}–{hi_n} candidates with any of the thresholds")
    return _selection_entry(*best[1])


def _selection_entry(t, codes: list[str], numbers: tuple[float, float, float], parts: list[Part],
                     cands: list[Part]) -> dict[str, Any]:
    lo, hi, road = numbers
    examples = []
    for reason in REASONS:
        mine = sorted((p for p in parts if p.reason == reason and p.area >= 1.0),
                      key=lambda p: (p.bsm, p.part if p.part is not None else -1))
        examples += [_rejected(p) for p in mine[:2]]
    return {
        "region": t.code12, "region_name": t.name,
        "constraints": {"inside": list(SELECTION_INSIDE), "outside": list(SELECTION_OUTSIDE),
                        "land_use_layer": "planned_land_use", "allowed_codes": codes,
                        "min_area_m2": lo, "max_area_m2": hi,
                        "road_layer": "road_centerline", "max_road_distance_m": road},
        "semantics": SEMANTICS,
        "design": ("allowed codes: industry and logistics (M1 M2 W1), utilities' land (U11 U12 U21 U22, under the "
                   "黄线) and village construction land (H14, outside the boundary), as far as present; region and "
                   f"numbers: the first town in code order and the first of a fixed list of numbers giving "
                   f"{SELECTION_CANDIDATES[0]}–{SELECTION_CANDIDATES[1]} candidates and every rejection reason "
                   "(with other seeds, if none does: the most reasons); "
                   "road_red_line is a line layer in this registry (the two edges of the road corridor), so it "
                   "cannot be subtracted and is not among the outside layers; rejected_counts and "
                   "rejected_examples leave out slivers under 1 m²"),
        "candidates": [{"bsm": p.bsm, "part": p.part, "area": _areas(p), "road_distance_m": p.road}
                       for p in cands],
        "rejected_counts": {r: sum(1 for p in parts if p.reason == r and p.area >= 1.0) for r in REASONS},
        "rejected_examples": examples,
    }


def _areas(p: Part) -> dict[str, dict[str, float]]:
    return {"planar": area_block(p.area), "ellipsoidal": area_block(p.ellipsoidal)}


def _rejected(p: Part) -> dict[str, Any]:
    return {"bsm": p.bsm, "part": p.part, "reason": p.reason, "area": _areas(p), "road_distance_m": p.road}


# ---- entry point ---------------------------------------------------------------------------------------
DEFINITIONS = {
    "project_sites": "sites a control-line check is run on; 'geometry' (CRS84 lon/lat) holds the EPSG:4490 "
                     "doubles a client sends, 'geometry_epsg4547' the integer design they were made from; every "
                     "measure is taken on 'geometry' transformed to EPSG:4547 (ST_Transform(site, 4547))",
    "project_sites.layers": "for every vector layer: intersects = positive-area overlap (polygon layers) or "
                            "any contact (line and point layers); overlap = ST_Union of ST_Intersection(site, "
                            "feature) over the features hit, polygonal part, planar and ellipsoidal; share = "
                            "planar overlap / planar site area (0 for line and point layers); bsm = the features "
                            "hit; distance_m = planar distance to the nearest feature (0 when hit)",
    "site_selection": SEMANTICS,
}


def project_truth(ctx: Ctx, feats: dict[str, Features], stored: dict[str, np.ndarray],
                  bsm: dict[str, list[str]]) -> dict[str, Any]:
    """The ``project_sites`` and ``site_selection`` entries of truth.json (see the module docstring)."""
    s = Stored(ctx, feats, stored, bsm)
    return {"project_sites": place_sites(s), "site_selection": site_selection(s, ctx.world.scale)}

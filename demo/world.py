"""The synthetic county as a planar partition of "atoms", each with its land use, plans and control lines.

Every line the demo draws — county and town borders, land-use patch edges (a Voronoi tessellation),
rivers, lakes, the airfield and the hand-drawn trap sites — is noded together once, snap-rounded to the
integer-metre grid of EPSG:4547 (``union_all(..., grid_size=1)``), and polygonised. The faces are the
atoms: the land-use survey's patches, and the bricks every other polygon layer is built from (a feature is
a coverage union of atoms). So all layers share their edges vertex for vertex, two features overlap only
where they share atoms, and "touching" really is zero area, before and after the trip through EPSG:4490.
Snap rounding keeps every vertex at least ~0.5 m from any edge it is not on, so the stored geometries stay
valid and unambiguous after the transformation.

The classes of an atom come from the terrain (relief, water, urban pull) and a few rules that keep the
plans consistent — permanent farmland outside the urban development boundary and the red line, the
land-use plan's 允许建设区 equal to the urban plan's construction land — except where conflicts are planted
on purpose (``World.planted``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import shapely

from lantu.demo.county import county_planar, seats_planar, towns
from lantu.demo.sites import BACKGROUND, BORDER_X, SITE_SIZE, SITES, Site
from lantu.demo.terrain import Terrain

Scale = Literal["small", "county"]


@dataclass(frozen=True)
class Params:
    patches: int  # land-use survey patches (atoms) wanted
    villages: int
    plant_clusters: int  # planted conflicts per class
    plant_size: int  # atoms per planted conflict (at most)
    bf_block: float  # metres: size of one permanent-farmland patch group
    erl_block: float
    parcel_block: float
    zone_block: float
    village_radius: float
    dem_arcsec: float


PARAMS: dict[str, Params] = {
    "small": Params(patches=1500, villages=30, plant_clusters=2, plant_size=1, bf_block=2400.0,
                    erl_block=2800.0, parcel_block=1300.0, zone_block=3500.0, village_radius=0.0, dem_arcsec=3.0),
    "county": Params(patches=120000, villages=520, plant_clusters=12, plant_size=4, bf_block=300.0,
                     erl_block=1750.0, parcel_block=260.0, zone_block=2200.0, village_radius=170.0,
                     dem_arcsec=1.0),
}

WATER_NONE, WATER_RIVER, WATER_LAKE, WATER_RESERVOIR, WATER_POND = 0, 1, 2, 3, 4
MIN_PATCH_M2 = 200.0  # smaller patches are merged into a neighbour (三调 上图 minimum is 200–600 m²)
PLANT_CLASSES = ("farmland_in_udb", "redline_udb", "redline_farmland", "C", "A", "B")

# Urban plan classes by kind of urban centre: (code, weight). 街道 = the central city (中心城区).
PARCEL_MIX = {
    "city": (("R2", 30), ("R1", 3), ("M1", 10), ("M2", 5), ("W1", 3), ("B1", 7), ("B2", 3), ("B3", 1), ("A1", 2),
             ("A2", 1), ("A33", 4), ("A35", 1), ("A4", 1), ("A5", 2), ("A6", 1), ("S1", 5), ("S4", 1), ("U11", 1),
             ("U12", 1), ("U21", 1), ("U22", 1), ("G1", 8), ("G2", 4), ("G3", 1)),
    "town": (("H12", 70), ("M1", 15), ("G1", 6), ("A33", 5), ("B1", 4)),
    "industry": (("M1", 40), ("M2", 25), ("W1", 10), ("W2", 4), ("R2", 6), ("B2", 3), ("S1", 4), ("U12", 2),
                 ("G2", 6)),
}
# What is on the ground today in built-up parcels of each planned class (GB/T 21010 codes).
BUILT_FROM_PLAN = {
    "R": ("0701",), "M": ("0601",), "W": ("0604",), "B1": ("0501", "0503", "0504"), "B2": ("0505",), "B3": ("0506",),
    "A1": ("0801",), "A2": ("0807",), "A3": ("0803",), "A35": ("0804",), "A4": ("0808",), "A5": ("0805",),
    "A6": ("0806",), "S1": ("1004",), "S4": ("1005",), "U": ("0809",), "G": ("0810",),
    "H12": ("0701", "0701", "0601", "0501", "1004"), "H14": ("0702",), "H24": ("1007",),
}
FOREST = (("0301", 62), ("0302", 16), ("0305", 12), ("0307", 10))
GARDEN = (("0201", 30), ("0202", 45), ("0204", 25))
CROP = (("0101", 80), ("0103", 13), ("0102", 7))
RURAL_EXTRA = (("1104", 6.0), ("1202", 1.5), ("0404", 1.5), ("1006", 1.0), ("1107", 1.0), ("1206", 0.4))


def _weighted(table, r: np.ndarray) -> np.ndarray:
    codes = np.array([c for c, _ in table], dtype=object)
    w = np.cumsum([float(w) for _, w in table])
    return codes[np.minimum(np.searchsorted(w / w[-1], r, side="right"), len(codes) - 1)]


@dataclass
class PlacedSite:
    site: Site
    origin: tuple[int, int]
    towns: tuple[int, int]  # (west, east) town indexes; equal unless the site is on a border

    @property
    def square(self) -> shapely.Polygon:
        x, y = self.origin
        return shapely.box(x, y, x + SITE_SIZE, y + SITE_SIZE)

    def shapes(self) -> list[tuple[str, str, shapely.Geometry, str | None]]:
        x, y = self.origin
        return [(s.layer, s.name, shapely.transform(s.geom, lambda c, x=x, y=y: c + np.array([x, y])), s.code)
                for s in self.site.shapes]


@dataclass
class World:
    scale: str
    seed: int
    params: Params
    terrain: Terrain
    county: shapely.Polygon  # union of the atoms (the county on the 1 m grid)
    town_polys: np.ndarray  # town polygons as built from the atoms, town order
    atoms: np.ndarray  # shapely polygons, EPSG:4547
    rep: np.ndarray  # (n, 2) interior points
    area: np.ndarray
    town: np.ndarray
    elev: np.ndarray
    u: np.ndarray
    centre: np.ndarray
    noise: np.ndarray
    water: np.ndarray
    water_name: np.ndarray
    airport: np.ndarray
    village: np.ndarray  # village number or -1
    built: np.ndarray
    lc: np.ndarray  # GB/T 21010 code (三调 DLBM)
    plu: np.ndarray  # GB 50137 code of the urban plan
    csb: np.ndarray  # 建设用地管制区 code of the land-use plan
    udb: np.ndarray
    erl: np.ndarray
    bf: np.ndarray
    eco_ctrl: np.ndarray
    site: np.ndarray  # index into sites or -1
    sites: list[PlacedSite]
    site_shape: dict[str, np.ndarray]  # layer → shape name per atom ("" = none / background)
    blocks: dict[str, np.ndarray]
    planted: dict[str, np.ndarray] = field(default_factory=dict)
    rivers: list[tuple[str, shapely.Geometry]] = field(default_factory=list)
    lakes: list[tuple[str, str, shapely.Geometry]] = field(default_factory=list)

    @property
    def spacing(self) -> float:
        return float(np.sqrt(self.county.area / self.params.patches))


# ---- towns ------------------------------------------------------------------------------------------
def _town_cells(county: shapely.Polygon) -> list[shapely.Geometry]:
    """Voronoi cells of the seats clipped to the county; stray parts go to the neighbour they share most with."""
    seats = seats_planar()
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(seats), extend_to=county.envelope))
    own = [next(c for c in cells if c.contains(shapely.Point(s))) for s in seats]
    polys = list(shapely.intersection(own, county, grid_size=1.0))
    for _ in range(5):
        changed = False
        for i, poly in enumerate(polys):
            parts = sorted(shapely.get_parts(poly), key=lambda p: -p.area)
            if len(parts) <= 1:
                continue
            polys[i] = parts[0]
            for part in parts[1:]:
                shared = [shapely.length(shapely.intersection(part.boundary, polys[j].boundary)) if j != i else -1
                          for j in range(len(polys))]
                j = int(np.argmax(shared))
                polys[j] = shapely.union(polys[j], part, grid_size=1.0)
            changed = True
        if not changed:
            break
    return polys


def _place_sites(rng, terrain: Terrain, county, town_polys, lakes, airport) -> list[PlacedSite]:
    """Rural, flat spots away from water, towns' centres and each other; one straddling a N-S town border."""
    minx, miny, maxx, maxy = county.bounds
    gx, gy = np.meshgrid(np.arange(minx + 1000, maxx - 1000, 450.0), np.arange(miny + 1000, maxy - 1000, 450.0))
    cx, cy = gx.ravel(), gy.ravel()
    u, _ = terrain.urban(cx, cy)
    ok = (u < 0.12) & (terrain.elevation(cx, cy) < 110) & (terrain.river_distance(cx, cy) > 900)
    pts = shapely.points(cx, cy)
    avoid = shapely.union_all([g for *_, g in lakes] + [airport])
    ok &= shapely.distance(pts, avoid) > 1200
    ok &= shapely.contains(county, pts) & (shapely.distance(pts, county.exterior) > 900)
    borders = shapely.union_all([p.boundary for p in town_polys])
    inner_borders = shapely.difference(borders, county.exterior.buffer(1))
    dist_border = shapely.distance(pts, inner_borders)
    placed: list[PlacedSite] = []
    half = SITE_SIZE // 2

    def far_from_others(x, y):
        return all(np.hypot(x - p.origin[0] - half, y - p.origin[1] - half) > 3000 for p in placed)

    for site in SITES:
        if not site.on_town_border:
            idx = np.flatnonzero(ok & (dist_border > 900))
            rng.shuffle(idx)
            for i in idx:
                if far_from_others(cx[i], cy[i]):
                    t = next(k for k, p in enumerate(town_polys) if p.contains(pts[i]))
                    placed.append(PlacedSite(site, (int(cx[i]) - half, int(cy[i]) - half), (t, t)))
                    break
            else:  # pragma: no cover - the county has plenty of farmland
                raise RuntimeError(f"no place for trap site {site.name}")
            continue
        placed.append(_place_border_site(rng, site, terrain, county, town_polys, avoid, far_from_others))
    return placed


def _place_border_site(rng, site, terrain, county, town_polys, avoid, far_from_others) -> PlacedSite:
    half = SITE_SIZE // 2
    candidates = []
    for i in range(len(town_polys)):
        for j in range(i + 1, len(town_polys)):
            shared = shapely.intersection(town_polys[i].boundary, town_polys[j].boundary)
            if shared.is_empty or shapely.length(shared) < 3000:
                continue
            for line in shapely.get_parts(shapely.line_merge(shared)):
                for f in np.linspace(0.3, 0.7, 5):
                    p = shapely.line_interpolate_point(line, f, normalized=True)
                    candidates.append((float(p.x), float(p.y)))
    order = rng.permutation(len(candidates))
    for k in order:
        x, y = (round(c) for c in candidates[k])
        square = shapely.box(x - half, y - half, x + half, y + half)
        u, _ = terrain.urban(x, y)
        if u > 0.15 or terrain.elevation(x, y) > 130 or terrain.river_distance(x, y) < 900:
            continue
        if shapely.distance(square, avoid) < 1000 or shapely.distance(square, county.exterior) < 800:
            continue
        if not far_from_others(x, y):
            continue
        inside = [t for t, p in enumerate(town_polys) if p.intersects(square.buffer(300))]
        if len(inside) != 2:
            continue
        west = shapely.box(x - half, y - half, x, y + half)
        east = shapely.box(x, y - half, x + half, y + half)
        w = max(inside, key=lambda t: shapely.area(shapely.intersection(town_polys[t], west)))
        e = max(inside, key=lambda t: shapely.area(shapely.intersection(town_polys[t], east)))
        # the border must cross the square from its south edge to its north edge
        border = shapely.intersection(shapely.intersection(town_polys[w].boundary, town_polys[e].boundary), square)
        if w == e or border.is_empty:
            continue
        ys = shapely.get_coordinates(border)[:, 1]
        if ys.min() > y - half + 1 or ys.max() < y + half - 1:
            continue
        return PlacedSite(site, (x - BORDER_X, y - half), (w, e))
    raise RuntimeError("no north-south town border suitable for the border trap site")  # pragma: no cover


def _straighten_border(town_polys: list, placed: PlacedSite) -> None:
    """Inside a border site the border becomes the straight line x = origin + BORDER_X."""
    w, e = placed.towns
    x, y = placed.origin
    square = placed.square
    west = shapely.box(x, y, x + BORDER_X, y + SITE_SIZE)
    east = shapely.box(x + BORDER_X, y, x + SITE_SIZE, y + SITE_SIZE)
    town_polys[w] = shapely.union(shapely.difference(town_polys[w], square, grid_size=1.0), west, grid_size=1.0)
    town_polys[e] = shapely.union(shapely.difference(town_polys[e], square, grid_size=1.0), east, grid_size=1.0)
    for t in (w, e):
        if town_polys[t].geom_type != "Polygon":  # pragma: no cover - checked when placing
            raise RuntimeError("straightening the town border split a town")


# ---- the partition -----------------------------------------------------------------------------------
def _seeds(rng, county, n: int, holes) -> np.ndarray:
    spacing = np.sqrt(county.area / n)
    minx, miny, maxx, maxy = county.bounds
    gx, gy = np.meshgrid(np.arange(minx, maxx + spacing, spacing), np.arange(miny, maxy + spacing, spacing))
    x = gx.ravel() + rng.uniform(-0.42, 0.42, gx.size) * spacing
    y = gy.ravel() + rng.uniform(-0.42, 0.42, gx.size) * spacing
    keep = shapely.contains_xy(county, x, y) & ~shapely.contains_xy(holes, x, y)
    return np.column_stack([x[keep], y[keep]])


def _partition(county, town_polys, seeds, water_polys, sites: list[PlacedSite]):
    squares = shapely.union_all([s.square for s in sites])
    voronoi = shapely.voronoi_polygons(shapely.multipoints(seeds), only_edges=True, extend_to=county.envelope)
    lines = [shapely.difference(shapely.intersection(voronoi, county), squares)]
    lines += [shapely.difference(shapely.intersection(shapely.boundary(g), county), squares) for g in water_polys]
    lines += [county.exterior] + [p.boundary for p in town_polys]
    for placed in sites:
        lines.append(placed.square.boundary)
        lines += [shapely.boundary(g) for _, _, g, _ in placed.shapes()]
    noded = shapely.union_all(lines, grid_size=1.0)
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(noded)))
    rep = shapely.point_on_surface(faces)
    faces = faces[shapely.contains(county.buffer(-0.01), rep) | shapely.within(rep, county)]
    faces = faces[shapely.area(faces) > 0]
    return faces


def _assign(atoms: np.ndarray, polys, nearest: bool = False) -> np.ndarray:
    """Index of the polygon covering most of each atom (-1 where none, or the nearest one if ``nearest``)."""
    polys = np.asarray(polys, dtype=object)
    tree = shapely.STRtree(polys)
    ai, pi = tree.query(atoms, predicate="intersects")
    out = np.full(len(atoms), -1, dtype=np.int64)
    single = np.bincount(ai, minlength=len(atoms))[ai] == 1
    out[ai[single]] = pi[single]
    ai, pi = ai[~single], pi[~single]
    if len(ai):
        share = shapely.area(shapely.intersection(atoms[ai], polys[pi]))
        order = np.lexsort((-share, ai))
        ai, pi = ai[order], pi[order]
        first = np.r_[True, ai[1:] != ai[:-1]]
        out[ai[first]] = pi[first]
    if nearest and (out < 0).any():  # slivers between the snapped county edge and the towns' edges
        lost = np.flatnonzero(out < 0)
        out[lost] = tree.query_nearest(atoms[lost], all_matches=False)[1]
    return out


def _merge_small(atoms: np.ndarray, town: np.ndarray, keep, min_area: float) -> tuple[np.ndarray, np.ndarray]:
    """Merge patches under ``min_area`` (the survey's minimum mapping unit) into the neighbour of the same town
    they share the longest edge with; atoms whose interior point is in ``keep`` (the trap sites) stay."""
    area = shapely.area(atoms)
    rep = shapely.point_on_surface(atoms)
    small = np.flatnonzero((area < min_area) & ~shapely.within(rep, keep))
    if len(small) == 0:
        return atoms, town
    tree = shapely.STRtree(atoms)
    uf = list(range(len(atoms)))  # union-find over the atoms

    def find(i: int) -> int:
        while uf[i] != i:
            uf[i] = uf[uf[i]]
            i = uf[i]
        return i

    for i in small:
        near = tree.query(atoms[i], predicate="touches")
        near = near[(town[near] == town[i]) & (near != i)]
        if len(near) == 0:
            continue
        shared = shapely.length(shapely.intersection(atoms[i].boundary, shapely.boundary(atoms[near])))
        if shared.max() > 0:
            a, b = find(int(i)), find(int(near[np.argmax(shared)]))
            if a != b:
                uf[a] = b
    roots = np.array([find(i) for i in range(len(atoms))])
    order = np.argsort(roots, kind="stable")
    starts = np.flatnonzero(np.r_[True, roots[order][1:] != roots[order][:-1]])
    groups = np.split(order, starts[1:])
    merged = [atoms[g[0]] if len(g) == 1 else shapely.coverage_union_all(atoms[g]) for g in groups]
    return np.array(merged, dtype=object), np.array([town[g[0]] for g in groups])


def _blocks(rng, rep: np.ndarray, spacing: float, bounds) -> np.ndarray:
    minx, miny, maxx, maxy = bounds
    gx, gy = np.meshgrid(np.arange(minx, maxx + spacing, spacing), np.arange(miny, maxy + spacing, spacing))
    sx = gx.ravel() + rng.uniform(-0.45, 0.45, gx.size) * spacing
    sy = gy.ravel() + rng.uniform(-0.45, 0.45, gx.size) * spacing
    tree = shapely.STRtree(shapely.points(sx, sy))
    return tree.query_nearest(shapely.points(rep[:, 0], rep[:, 1]), all_matches=False)[1]


# ---- the whole world ---------------------------------------------------------------------------------
def build_world(scale: Scale, seed: int) -> World:
    params = PARAMS[scale]
    rng = np.random.default_rng(seed)
    terrain = Terrain(rng)
    county0 = county_planar()
    town_polys = _town_cells(county0)
    rivers = [(n, shapely.intersection(g, county0, grid_size=1.0)) for n, g in terrain.river_polygons()]
    lakes = [(n, k, shapely.intersection(g, county0, grid_size=1.0)) for n, k, g in terrain.lake_polygons()]
    airport = shapely.intersection(terrain.airport_polygon(), county0, grid_size=1.0)
    sites = _place_sites(rng, terrain, county0, town_polys, lakes, airport)
    for placed in sites:
        if placed.site.on_town_border:
            _straighten_border(town_polys, placed)
    squares = shapely.union_all([s.square for s in sites])
    seeds = _seeds(rng, county0, int(params.patches * 0.965), squares)
    water_polys = [g for _, g in rivers] + [g for *_, g in lakes] + [airport]
    atoms = _partition(county0, town_polys, seeds, water_polys, sites)
    return _classify(scale, seed, params, rng, terrain, atoms, town_polys, rivers, lakes, airport, sites)


def _classify(scale, seed, params, rng, terrain, atoms, town_polys, rivers, lakes, airport, sites) -> World:
    town = _assign(atoms, town_polys, nearest=True)
    squares = shapely.union_all([p.square for p in sites])
    atoms, town = _merge_small(atoms, town, squares, MIN_PATCH_M2)
    n = len(atoms)
    rep_pts = shapely.point_on_surface(atoms)
    rep = shapely.get_coordinates(rep_pts)
    area = shapely.area(atoms)
    county = shapely.coverage_union_all(atoms)

    # sites and their hand-drawn shapes
    site = np.full(n, -1)
    site_shape: dict[str, np.ndarray] = {}
    for k, placed in enumerate(sites):
        inside = shapely.contains_xy(placed.square, rep[:, 0], rep[:, 1])
        site[inside] = k
        if placed.site.on_town_border:
            bx = placed.origin[0] + BORDER_X
            town[inside] = np.where(rep[inside, 0] < bx, placed.towns[0], placed.towns[1])
        for layer, name, geom, _ in placed.shapes():
            arr = site_shape.setdefault(layer, np.full(n, "", dtype=object))
            hit = inside & shapely.contains_xy(geom, rep[:, 0], rep[:, 1])
            if np.any(arr[hit] != ""):  # pragma: no cover - a design error
                raise RuntimeError(f"overlapping {layer} shapes in site {placed.site.name}")
            arr[hit] = name
    in_site = site >= 0
    final_towns = np.array([shapely.coverage_union_all(atoms[town == t]) for t in range(len(town_polys))])

    river_d = terrain.river_distance(rep[:, 0], rep[:, 1])
    elev = terrain.elevation(rep[:, 0], rep[:, 1], river_d)
    u, centre = terrain.urban(rep[:, 0], rep[:, 1])
    noise = terrain.landuse(rep[:, 0], rep[:, 1])
    water = np.zeros(n, dtype=np.int64)
    water_name = np.full(n, "", dtype=object)
    for name, g in rivers:
        hit = shapely.contains_xy(g, rep[:, 0], rep[:, 1]) & ~in_site
        water[hit], water_name[hit] = WATER_RIVER, name
    for name, kind, g in lakes:
        hit = shapely.contains_xy(g, rep[:, 0], rep[:, 1]) & ~in_site
        water[hit] = WATER_LAKE if kind == "lake" else WATER_RESERVOIR
        water_name[hit] = name
    is_airport = shapely.contains_xy(airport, rep[:, 0], rep[:, 1]) & ~in_site & (water == 0)

    bounds = county.bounds
    spacing = float(np.sqrt(county.area / params.patches))
    blocks = {
        "parcel": _blocks(rng, rep, params.parcel_block, bounds),
        "bf": _blocks(rng, rep, params.bf_block, bounds),
        "erl": _blocks(rng, rep, params.erl_block, bounds),
        "zone": _blocks(rng, rep, params.zone_block, bounds),
        "village_area": _blocks(rng, rep, max(2500.0, 2.2 * spacing), bounds),
    }

    # ---- urban fabric: urban plan codes, today's built-up area, villages --------------------------
    free = ~in_site & (water == 0) & ~is_airport
    n_town = len(towns())
    kind = np.where(centre < 5, "city", np.where(centre < n_town, "town", "industry"))
    parcel_r = rng.random(blocks["parcel"].max() + 1)[blocks["parcel"]]
    plu = np.full(n, "", dtype=object)
    urban = free & (u > 0.40)
    for k in ("city", "town", "industry"):
        sel = urban & (kind == k)
        plu[sel] = _weighted(PARCEL_MIX[k], parcel_r[sel])
    built = urban & (u > 0.55)
    plu[is_airport] = "H24"
    village = np.full(n, -1)
    _place_villages(rng, params, terrain, rep, atoms, free & (u < 0.25) & (elev < 180), village)
    plu[village >= 0] = "H14"

    # ---- land cover ------------------------------------------------------------------------------
    lc = np.full(n, "", dtype=object)
    r = rng.random(n)
    r2 = rng.random(n)
    forest_score = (elev - 95.0) / 55.0 + 0.7 * noise
    rural = free & ~built & (village < 0)
    lc[rural & (forest_score > 0.55)] = _weighted(FOREST, r[rural & (forest_score > 0.55)])
    mid = rural & (forest_score > 0.15) & (forest_score <= 0.55)
    lc[mid] = np.where(r2[mid] < 0.45, _weighted(GARDEN, r[mid]), _weighted(FOREST, r[mid]))
    low = rural & (forest_score <= 0.15)
    lc[low] = _weighted(CROP, r[low])
    extra_p = np.cumsum([p for _, p in RURAL_EXTRA]) / 100.0
    extra = low & (r2 < extra_p[-1])
    lc[extra] = np.array([c for c, _ in RURAL_EXTRA], dtype=object)[np.searchsorted(extra_p, r2[extra], "right")]
    water[extra & (lc == "1104")] = WATER_POND
    for b in np.flatnonzero(built | (village >= 0) | is_airport):
        choices = _built_codes(plu[b])
        lc[b] = choices[int(r[b] * len(choices)) % len(choices)]
    roads = built & (r2 < 0.07)
    lc[roads] = "1004"
    lc[water == WATER_RIVER] = "1101"
    lc[water == WATER_LAKE] = "1102"
    lc[water == WATER_RESERVOIR] = "1103"

    # ---- control lines ---------------------------------------------------------------------------
    udb = free & (u > 0.33)
    udb |= (water != 0) & ~in_site & (u > 0.33)
    cropland = np.array([c.startswith("01") for c in lc])
    forest = np.array([c.startswith("03") for c in lc])
    bf_block_on = rng.random(blocks["bf"].max() + 1) < 0.62
    bf = cropland & free & (u < 0.25) & (elev < 150) & bf_block_on[blocks["bf"]] & (village < 0)
    erl_cut = np.quantile(elev, 0.89)
    erl = ((forest & (elev >= erl_cut)) | (water == WATER_RESERVOIR)) & ~udb & ~bf & ~in_site
    eco_ctrl = (erl | (forest & (elev >= np.quantile(elev, 0.72))) | (water == WATER_RESERVOIR)) & ~udb & ~in_site

    world = World(scale, seed, params, terrain, county, final_towns, atoms, rep, area, town, elev, u, centre, noise,
                  water, water_name, is_airport, village, built, lc, plu, np.full(n, "", dtype=object), udb, erl,
                  bf, eco_ctrl, site, sites, site_shape, blocks, rivers=rivers, lakes=lakes)
    _apply_site_classes(world)
    _plant(world, rng)
    _finish_plans(world)
    return world


def _built_codes(plan: str) -> tuple[str, ...]:
    for key in (plan, plan[:2], plan[:1]):
        if key in BUILT_FROM_PLAN:
            return BUILT_FROM_PLAN[key]
    return ("0701",)


def _place_villages(rng, params: Params, terrain, rep, atoms, eligible: np.ndarray, village: np.ndarray) -> None:
    cand = np.flatnonzero(eligible)
    if len(cand) == 0:  # pragma: no cover
        return
    picks = rng.choice(cand, size=min(params.villages, len(cand)), replace=False)
    if params.village_radius <= 0:
        village[np.sort(picks)] = np.arange(len(picks))
        return
    tree = shapely.STRtree(shapely.points(rep[cand, 0], rep[cand, 1]))
    for v, a in enumerate(np.sort(picks)):
        radius = params.village_radius * rng.uniform(0.6, 1.3)
        near = cand[tree.query(shapely.Point(rep[a]).buffer(radius))]
        near = near[village[near] < 0]
        village[near] = v
        village[a] = v


def _apply_site_classes(w: World) -> None:
    """Inside the trap sites every class comes from the drawing (background where nothing is drawn)."""
    s = w.site >= 0
    shapes = {(p.site.name, name): code for p in w.sites for _, name, _, code in p.shapes()}
    site_names = np.array([w.sites[k].site.name if k >= 0 else "" for k in w.site], dtype=object)

    def coded(layer: str) -> np.ndarray:
        names = w.site_shape.get(layer, np.full(len(w.atoms), "", dtype=object))
        return np.array([shapes.get((sn, nm), BACKGROUND[layer]) if nm else BACKGROUND[layer]
                         for sn, nm in zip(site_names[s], names[s], strict=True)], dtype=object)

    w.lc[s] = coded("land_use_survey")
    w.plu[s] = coded("planned_land_use")
    w.csb[s] = coded("construction_scale_boundary")
    for layer, arr in (("basic_farmland", w.bf), ("eco_red_line", w.erl), ("urban_dev_boundary", w.udb)):
        names = w.site_shape.get(layer, np.full(len(w.atoms), "", dtype=object))
        arr[s] = names[s] != ""
    w.water[s] = 0
    w.built[s] = np.isin(w.lc[s], ["0701", "0601", "0702"])
    w.eco_ctrl[s] = w.erl[s]
    w.village[s] = -1


def _touching(w: World, region_mask: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Candidate atoms (indexes) that share an edge or a vertex with the region."""
    if not region_mask.any() or len(candidates) == 0:
        return np.array([], dtype=np.int64)
    region = shapely.coverage_union_all(w.atoms[region_mask])
    shapely.prepare(region)
    return candidates[shapely.intersects(region, w.atoms[candidates])]


def _plant(w: World, rng: np.random.Generator) -> None:
    """Plant the conflicts of the landscape (the trap sites carry their own)."""
    n = len(w.atoms)
    used = w.site >= 0
    cons = _plan_construction(w.plu)
    ok = ~used & (w.water == 0) & ~w.airport & (w.village < 0)
    cropland = np.array([c.startswith("01") for c in w.lc])
    greenish = np.array([c[:2] in ("02", "03", "04") for c in w.lc])
    w.planted = {k: np.zeros(n, dtype=bool) for k in PLANT_CLASSES}

    def pick(name: str, candidates: np.ndarray, apply) -> None:
        candidates = candidates[~used[candidates]]
        tree_c = candidates.copy()
        for _ in range(w.params.plant_clusters):
            tree_c = tree_c[~used[tree_c]]
            if len(tree_c) == 0:
                break
            first = int(rng.choice(tree_c))
            cluster = [first]
            used[first] = True
            while len(cluster) < w.params.plant_size:
                nxt = _touching(w, np.isin(np.arange(n), cluster), tree_c[~used[tree_c]])
                if len(nxt) == 0:
                    break
                cluster.append(int(nxt[0]))
                used[nxt[0]] = True
            for a in cluster:
                w.planted[name][a] = True
                apply(a)

    # 永久基本农田 inside the 城镇开发边界: paddy fields in the UDB's flexible ring get protected
    ring_crop = np.flatnonzero(ok & w.udb & ~cons & cropland)
    pick("farmland_in_udb", ring_crop, lambda a: w.bf.__setitem__(a, True))
    # 生态保护红线 inside the UDB: woodland or water of the flexible ring
    ring_green = np.flatnonzero(~used & w.udb & ~cons & ~w.bf & (greenish | (w.water == WATER_RIVER)
                                                                  | (w.water == WATER_LAKE)))
    pick("redline_udb", ring_green, lambda a: w.erl.__setitem__(a, True))
    # 生态保护红线 over 永久基本农田: farmland next to the red line (or the highest farmland)
    bf_idx = np.flatnonzero(ok & w.bf & ~w.udb)
    near = _touching(w, w.erl, bf_idx)
    if len(near) < w.params.plant_clusters:
        near = bf_idx[np.argsort(-w.elev[bf_idx])][: 5 * w.params.plant_clusters]
    pick("redline_farmland", near, lambda a: w.erl.__setitem__(a, True))
    # C: the urban plan builds on permanent farmland next to a town or village
    cons = _plan_construction(w.plu)
    bf_idx = np.flatnonzero(ok & w.bf & ~w.erl & ~w.udb)
    pick("C", _touching(w, cons, bf_idx), lambda a: w.plu.__setitem__(a, _expansion_code(w, a)))
    # A: the urban plan builds where the land-use plan does not (outside farmland)
    other = np.flatnonzero(ok & ~w.bf & ~w.erl & ~cons & (w.lc != ""))
    pick("A", _touching(w, cons, other), lambda a: w.plu.__setitem__(a, _expansion_code(w, a)))
    # B: the land-use plan allows building where the urban plan keeps land open (marked here, applied below)
    pick("B", _touching(w, cons, other), lambda a: None)


def _expansion_code(w: World, a: int) -> str:
    if w.udb[a] or w.u[a] > 0.3:
        return "M1" if w.centre[a] >= len(towns()) else "R2"
    return "H14"


def _plan_construction(plu: np.ndarray) -> np.ndarray:
    """GB 50137 construction land: every H* and city class; E* (and unset) is not."""
    return np.array([bool(c) and not c.startswith("E") for c in plu], dtype=bool)


def _finish_plans(w: World) -> None:
    """Non-construction urban-plan classes, and the land-use plan derived from the urban plan."""
    s = w.site >= 0
    open_ = (w.plu == "") & ~s
    bare = np.isin(w.lc, ["0404", "1206"])
    w.plu[open_ & (w.water == WATER_RIVER)] = "E11"
    w.plu[open_ & (w.water == WATER_LAKE)] = "E11"
    w.plu[open_ & (w.water == WATER_RESERVOIR)] = "E12"
    w.plu[open_ & (w.water == WATER_POND)] = "E13"
    w.plu[open_ & bare & (w.plu == "")] = "E9"
    w.plu[open_ & (w.plu == "")] = "E2"
    # The land-use plan agrees with the urban plan as it was before conflicts A and C were planted.
    cons = _plan_construction(w.plu) & ~w.planted["A"] & ~w.planted["C"]
    csb = np.full(len(w.atoms), "030", dtype=object)
    cond = (w.u > 0.28) & ~w.bf & ~w.erl & (w.water == 0)
    csb[cond] = "020"
    csb[w.erl] = "040"
    csb[cons | w.planted["B"]] = "010"
    w.csb[~s] = csb[~s]
    if np.any(w.bf & (w.csb == "010")):  # pragma: no cover - would break A + C = 城规有、土规无
        raise RuntimeError("permanent farmland inside a 允许建设区")

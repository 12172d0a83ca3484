"""Polygon layers built from the atoms of the world, with their own attributes.

A feature is a coverage union of atoms sharing a key (class, block, town …). Because the keys of most
layers include the town, every such feature lies in one town. Exploded layers turn each connected part into
a feature of its own. Inside the trap sites the six layers the conflict checks read (land-use survey, urban
plan, land-use plan, permanent farmland, red line, urban development boundary) take the hand-drawn shapes
instead, one feature per shape (plus one background feature per town for the layers that tile the county).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from lantu.config.registry import Registry
from lantu.demo.county import towns
from lantu.demo.sites import BACKGROUND
from lantu.demo.world import WATER_LAKE, WATER_RESERVOIR, WATER_RIVER, World

SITE_LAYERS = ("land_use_survey", "planned_land_use", "construction_scale_boundary", "basic_farmland",
               "eco_red_line", "urban_dev_boundary")

# GB 50137 class → 2023 用地用海 class (the planning office's cross-walk; E2 follows what is on the ground)
YDYH_OF_PLAN = {
    "R1": "070101", "R2": "070102", "R3": "070103", "A1": "0801", "A2": "0803", "A33": "080403", "A35": "0802",
    "A4": "0805", "A5": "0806", "A6": "0807", "A7": "1504", "B1": "0901", "B2": "0902", "B3": "0903",
    "M1": "100101", "M2": "100102", "M3": "100103", "W1": "110101", "W2": "110102", "S1": "1207", "S4": "120802",
    "U11": "1301", "U12": "1303", "U21": "1302", "U22": "1309", "G1": "1401", "G2": "1402", "G3": "1403",
    "H12": "0701", "H14": "0703", "H24": "1203", "E11": "1701", "E12": "1703", "E13": "1704",
}
YDYH_OF_COVER = {
    "0101": "0101", "0102": "0102", "0103": "0103", "0201": "0201", "0202": "0202", "0204": "0205", "0301": "0301",
    "0302": "0302", "0305": "0303", "0307": "0304", "0404": "0403", "1202": "0602", "1006": "060102",
    "1107": "1705", "1206": "2306", "1104": "1704", "1101": "1701", "1102": "1702", "1103": "1703",
}
# Built-up GB/T 21010 class → GB 50137 class, for the current urban land-use map (现状用地)
PLAN_OF_COVER = {
    "0701": "R2", "0702": "H14", "0601": "M1", "0604": "W1", "0501": "B1", "0503": "B1", "0504": "B1",
    "0505": "B2", "0506": "B3", "0801": "A1", "0803": "A33", "0804": "A35", "0805": "A5", "0806": "A6",
    "0807": "A2", "0808": "A4", "0809": "U12", "0810": "G1", "1004": "S1", "1005": "S4", "1007": "H24",
}


@dataclass
class Features:
    layer: str
    rows: list[dict[str, Any]]
    geoms: np.ndarray  # EPSG:4547, integer grid
    atom_feature: np.ndarray | None = None  # feature index of every atom (-1: none); atom-built layers only
    shape_name: list[str] = field(default_factory=list)  # trap-site shape of each feature ("" if none)
    site_name: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Ctx:
    """What the layer builders share: the world, the registry, the attribute RNG and the street network."""

    world: World
    registry: Registry
    rng: np.random.Generator
    roads: list = field(default_factory=list)  # (line, attributes) of the urban streets
    centerlines: list = field(default_factory=list)
    _inner: Any = None

    @property
    def inner_county(self):
        """The county shrunk by 2 m: lines and free-drawn shapes are clipped to it, so they stay inside."""
        if self._inner is None:
            self._inner = shapely.buffer(self.world.county, -2.0)
            shapely.prepare(self._inner)
        return self._inner

    def name(self, list_id: str, code: str) -> str:
        return self.registry.code_lists[list_id].name(code)

    def town(self, i: int):
        return towns()[int(i)]


def _sort_key(key: tuple) -> tuple:
    """Keys mix ints and strings; order ints numerically (town 2 before town 10), strings after them."""
    return tuple((0, f"{k:012d}") if isinstance(k, int | np.integer) else (1, str(k)) for k in key)


def from_atoms(ctx: Ctx, layer: str, keys: Sequence[Hashable | None],
               attrs: Callable[[np.ndarray, tuple], dict[str, Any]], explode: bool = False) -> Features:
    """Group atoms by key (None = not in the layer) and union each group; optionally one feature per part."""
    w = ctx.world
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        if k is not None:
            groups.setdefault(k, []).append(i)
    rows, geoms, shapes, sites = [], [], [], []
    atom_feature = np.full(len(w.atoms), -1, dtype=np.int64)
    for key in sorted(groups, key=_sort_key):
        idx = np.asarray(groups[key])
        geom = w.atoms[idx[0]] if len(idx) == 1 else shapely.coverage_union_all(w.atoms[idx])
        is_site = isinstance(key, tuple) and key[0] == "~site"
        parts = [geom] if (not explode or is_site or geom.geom_type == "Polygon") else shapely.get_parts(geom)
        for part in parts:
            sub = idx if len(parts) == 1 else idx[shapely.contains_xy(part, w.rep[idx, 0], w.rep[idx, 1])]
            atom_feature[sub] = len(rows)
            rows.append(attrs(sub, key))
            geoms.append(part)
            shapes.append(key[2] if is_site else "")
            sites.append(key[1] if is_site else "")
    return Features(layer, rows, np.array(geoms, dtype=object), atom_feature, shapes, sites)


def site_keys(w: World, layer: str) -> list[tuple | None]:
    """Keys of the trap sites' atoms for one of the six conflict layers (None outside the sites)."""
    names = w.site_shape.get(layer)
    keys: list[tuple | None] = [None] * len(w.atoms)
    for i in np.flatnonzero(w.site >= 0):
        shape = names[i] if names is not None else ""
        site = w.sites[w.site[i]].site.name
        if shape:
            keys[i] = ("~site", site, shape)
        elif layer in BACKGROUND:
            keys[i] = ("~site", site, "bg", int(w.town[i]))
    return keys


def _merge(landscape: list, sites: list) -> list:
    return [s if s is not None else k for k, s in zip(landscape, sites, strict=True)]


def _dominant(values: np.ndarray, weights: np.ndarray) -> str:
    uniq, inv = np.unique(values, return_inverse=True)
    return str(uniq[np.argmax(np.bincount(inv, weights=weights))])


# ---- the six layers of the conflict checks -----------------------------------------------------------
def land_use_survey(ctx: Ctx) -> Features:
    w = ctx.world
    town_kind = np.array([ctx.town(t).kind for t in w.town])
    village_no = _village_numbers(w)
    counters: dict[int, int] = {}

    def attrs(idx, key):
        i = idx[0]
        t = int(w.town[i])
        counters[t] = counters.get(t, 0) + 1
        code = str(w.lc[i])
        if code in ("0702",):
            qsxz = "30"
        elif town_kind[i] == "街道" and (w.built[i] or w.udb[i]) or code in ("1101", "1102", "1007"):
            qsxz = "10"
        else:
            qsxz = "20"
        return {"DLBM": code, "DLMC": ctx.name("gbt21010", code), "QSXZ": qsxz,
                "ZLDWDM": f"{ctx.town(t).code9}{village_no[i]:03d}0000000", "TBBH": str(counters[t])}

    keys = _merge([("atom", i) for i in range(len(w.atoms))], site_keys(w, "land_use_survey"))
    return from_atoms(ctx, "land_use_survey", keys, attrs)


def _village_numbers(w: World) -> np.ndarray:
    """Administrative village (or community) number of each atom inside its town: 001–199 街道, 201+ 镇."""
    out = np.zeros(len(w.atoms), dtype=np.int64)
    for t in range(len(towns())):
        sel = np.flatnonzero(w.town == t)
        uniq, inv = np.unique(w.blocks["village_area"][sel], return_inverse=True)
        base = 1 if towns()[t].kind == "街道" else 201
        out[sel] = base + inv
    return out


def planned_land_use(ctx: Ctx) -> Features:
    w = ctx.world
    urban = np.array([bool(c) and not c.startswith("E") for c in w.plu])
    keys = [(str(w.plu[i]), int(w.blocks["parcel" if urban[i] else "zone"][i]), int(w.town[i]))
            for i in range(len(w.atoms))]
    keys = _merge(keys, site_keys(w, "planned_land_use"))

    def attrs(idx, key):
        code = str(w.plu[idx[0]])
        ydyh = YDYH_OF_PLAN.get(code) or YDYH_OF_COVER.get(_dominant(w.lc[idx], w.area[idx]), "0101")
        return {"YDDM": code, "YDMC": ctx.name("gb50137", code), "YDYHFLDM": ydyh,
                "YDYHFLMC": ctx.name("ydyh2023", ydyh)}

    return from_atoms(ctx, "planned_land_use", keys, attrs, explode=True)


def construction_scale_boundary(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(str(w.csb[i]), int(w.blocks["zone"][i]), int(w.town[i])) for i in range(len(w.atoms))]
    keys = _merge(keys, site_keys(w, "construction_scale_boundary"))

    def attrs(idx, key):
        code = str(w.csb[idx[0]])
        return {"GZQLXDM": code, "GZQLXMC": ctx.name("tdgh_jsydgzq", code)}

    return from_atoms(ctx, "construction_scale_boundary", keys, attrs, explode=True)


def basic_farmland(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(int(w.blocks["bf"][i]), int(w.town[i])) if w.bf[i] else None for i in range(len(w.atoms))]
    keys = _merge(keys, site_keys(w, "basic_farmland"))
    counters: dict[int, int] = {}

    def attrs(idx, key):
        code = _dominant(w.lc[idx], w.area[idx])
        if not code.startswith("01"):  # pragma: no cover - farmland is drawn on cropland only
            raise RuntimeError(f"permanent farmland on {code}")
        t = int(w.town[idx[0]])
        counters[t] = counters.get(t, 0) + 1
        grade = int(np.clip(round(5 + (w.elev[idx].mean() - 30) / 25 + 1.5 * w.noise[idx[0]]), 3, 11))
        return {"DLBM": code, "DLMC": ctx.name("gbt21010", code), "JBNTTBBH": f"{counters[t]:06d}",
                "ZLDJ": grade}

    return from_atoms(ctx, "basic_farmland", keys, attrs, explode=True)


def eco_red_line(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(int(w.blocks["erl"][i]), int(w.town[i])) if w.erl[i] else None for i in range(len(w.atoms))]
    keys = _merge(keys, site_keys(w, "eco_red_line"))
    hills = [(name, x, y) for name, x, y, _, _ in w.terrain.hills]

    def attrs(idx, key):
        i = idx[0]
        t = ctx.town(w.town[i])
        if (w.water[idx] == WATER_RESERVOIR).any():
            name, kind = f"{w.water_name[idx][w.water[idx] == WATER_RESERVOIR][0]}水源涵养", "生态功能极重要区"
        elif (w.water[idx] != 0).any() or (w.lc[idx] == "0101").any():
            name, kind = f"{t.short}湿地", "生态极敏感脆弱区"
        else:
            hill = min(hills, key=lambda h: (h[1] - w.rep[i, 0]) ** 2 + (h[2] - w.rep[i, 1]) ** 2)[0]
            name = f"{hill}水土保持"
            kind = "生态功能极重要区" if w.elev[idx].max() > 250 else "其他"
        prefix = "" if name.startswith(t.short) else t.short
        return {"KZXMC": f"{prefix}{name}生态保护红线", "KZXLX": "生态保护红线", "HXLX": kind}

    return from_atoms(ctx, "eco_red_line", keys, attrs)


def urban_dev_boundary(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(int(w.town[i]),) if w.udb[i] else None for i in range(len(w.atoms))]
    keys = _merge(keys, site_keys(w, "urban_dev_boundary"))

    def attrs(idx, key):
        t = ctx.town(w.town[idx[0]])
        return {"KZXMC": f"{t.name}城镇开发边界", "KZXLX": "城镇开发边界"}

    return from_atoms(ctx, "urban_dev_boundary", keys, attrs)


# ---- other planning and status polygons --------------------------------------------------------------
def admin_divisions(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(int(t),) for t in w.town]
    return from_atoms(ctx, "admin_divisions", keys, lambda idx, key: {})


def three_zones(ctx: Ctx) -> Features:
    w = ctx.world
    urban = w.udb | np.isin(w.plu, ["H24"])
    eco = w.erl | w.eco_ctrl | np.isin(w.water, [WATER_RIVER, WATER_LAKE, WATER_RESERVOIR])
    kind = np.where(urban, "城镇空间", np.where(eco, "生态空间", "农业空间"))
    keys = [(str(kind[i]), int(w.town[i])) for i in range(len(w.atoms))]
    return from_atoms(ctx, "three_zones", keys, lambda idx, key: {"KJLX": key[0]})


def eco_control_line(ctx: Ctx) -> Features:
    w = ctx.world
    keys = [(int(w.blocks["zone"][i]), int(w.town[i])) if w.eco_ctrl[i] else None for i in range(len(w.atoms))]

    def attrs(idx, key):
        return {"KZXMC": f"{ctx.town(key[1]).short}生态控制线", "KZXLX": "生态保护红线"}

    return from_atoms(ctx, "eco_control_line", keys, attrs)


def main_function_zone(ctx: Ctx) -> Features:
    w = ctx.world
    kinds = {}
    for t in towns():
        sel = w.town == t.index
        eco = w.area[sel & (w.erl | w.eco_ctrl)].sum() / w.area[sel].sum()
        urban = w.area[sel & w.udb].sum() / w.area[sel].sum()
        kinds[t.index] = "城市化发展区" if (t.kind == "街道" or urban > 0.25) else (
            "重点生态功能区" if eco > 0.3 else "农产品主产区")
    keys = [(int(t),) for t in w.town]
    return from_atoms(ctx, "main_function_zone", keys, lambda idx, key: {"ZTGNQLX": kinds[key[0]]})


def functional_area_plan(ctx: Ctx) -> Features:
    w = ctx.world
    cons = np.array([bool(c) and not c.startswith("E") for c in w.plu])
    forest = np.array([c[:2] in ("03", "04") for c in w.lc])
    code = np.full(len(w.atoms), "052", dtype=object)
    code[forest] = "053"
    code[w.village >= 0] = "051"
    code[w.udb & ~cons] = "042"
    code[w.udb & cons] = "041"
    code[w.plu == "H24"] = "043"
    code[w.bf] = "030"
    code[w.eco_ctrl | (w.water != 0) & ~w.udb] = "020"
    code[w.erl] = "010"
    keys = [(str(code[i]), int(w.blocks["zone"][i]), int(w.town[i])) for i in range(len(w.atoms))]

    def attrs(idx, key):
        return {"GHFQDM": key[0], "GHFQMC": ctx.name("ghfq", key[0])}

    return from_atoms(ctx, "functional_area_plan", keys, attrs)


def current_land_use(ctx: Ctx) -> Features:
    w = ctx.world
    plan = np.array([PLAN_OF_COVER.get(c, "") for c in w.lc], dtype=object)
    keep = (plan != "") & (w.udb | (w.plu == "H24") | (w.village >= 0))
    keys = [(str(plan[i]), int(w.blocks["parcel"][i]), int(w.town[i])) if keep[i] else None
            for i in range(len(w.atoms))]
    return from_atoms(ctx, "current_land_use", keys,
                      lambda idx, key: {"YDDM": key[0], "YDMC": ctx.name("gb50137", key[0])}, explode=True)


def blue_line(ctx: Ctx) -> Features:
    w = ctx.world
    on = np.isin(w.water, [WATER_RIVER, WATER_LAKE, WATER_RESERVOIR])
    keys = [(str(w.water_name[i]), int(w.town[i])) if on[i] else None for i in range(len(w.atoms))]
    return from_atoms(ctx, "blue_line", keys,
                      lambda idx, key: {"KZXMC": f"{key[0]}（{ctx.town(key[1]).short}段）蓝线", "SYMC": key[0]})


def _plan_parcels(ctx: Ctx, layer: str, codes: Sequence[str], attrs, fallback_codes: Sequence[str] = ()):
    w = ctx.world
    on = np.isin(w.plu, list(codes)) & (w.site < 0)
    if not on.any():
        on = np.isin(w.plu, list(fallback_codes)) & (w.site < 0)
    keys = [(str(w.plu[i]), int(w.blocks["parcel"][i]), int(w.town[i])) if on[i] else None
            for i in range(len(w.atoms))]
    return from_atoms(ctx, layer, keys, attrs, explode=True)


def green_line(ctx: Ctx) -> Features:
    kinds = {"G1": "公园绿地", "G2": "防护绿地", "G3": "广场用地"}

    def attrs(idx, key):
        return {"KZXMC": f"{ctx.town(key[2]).short}{kinds.get(key[0], '公园绿地')}绿线",
                "LDLX": kinds.get(key[0], "公园绿地")}

    return _plan_parcels(ctx, "green_line", ("G1", "G2", "G3"), attrs, ("R2", "H12"))


def yellow_line(ctx: Ctx) -> Features:
    kinds = {"U11": "供水设施", "U12": "供电设施", "U21": "排水设施", "U22": "环卫设施", "S4": "交通场站",
             "H24": "机场"}

    def attrs(idx, key):
        kind = kinds.get(key[0], "交通场站")
        return {"KZXMC": f"{ctx.town(key[2]).short}{kind}黄线", "SSLX": kind}

    return _plan_parcels(ctx, "yellow_line", tuple(kinds), attrs, ("M1", "H12"))


def affordable_housing(ctx: Ctx) -> Features:
    w = ctx.world
    r = np.random.default_rng(w.seed + 58).random(len(w.atoms))
    on = np.isin(w.plu, ["R2", "R1", "H12"]) & (w.site < 0) & (r < 0.12)
    if not on.any():
        on = np.isin(w.plu, ["R2", "R1", "H12"]) & (w.site < 0)
    keys = [(int(w.blocks["parcel"][i]), int(w.town[i])) if on[i] else None for i in range(len(w.atoms))]
    kinds = ("公租房", "保障性租赁住房", "安置房", "共有产权住房")
    rng = ctx.rng

    def attrs(idx, key):
        t = ctx.town(key[1])
        kind = kinds[int(rng.integers(len(kinds)))]
        units = int(w.area[idx].sum() / 1e4 * rng.uniform(80, 160))
        return {"XMMC": f"{t.short}{kind}{int(rng.integers(1, 9))}期项目", "TS": max(units, 40), "LX": kind}

    return from_atoms(ctx, "affordable_housing", keys, attrs, explode=True)


def _zones_by_class(ctx: Ctx, layer: str, cls: np.ndarray, attrs, block: str = "zone") -> Features:
    w = ctx.world
    keys = [(str(cls[i]), int(w.blocks[block][i]), int(w.town[i])) if cls[i] else None for i in range(len(w.atoms))]
    return from_atoms(ctx, layer, keys, attrs)


def geohazard_prone_areas(ctx: Ctx) -> Features:
    w = ctx.world
    q60, q78, q90 = np.quantile(w.elev, [0.60, 0.78, 0.90])
    cls = np.full(len(w.atoms), "", dtype=object)
    cls[w.elev >= q60] = "低易发"
    cls[w.elev >= q78] = "中易发"
    cls[w.elev >= q90] = "高易发"
    return _zones_by_class(ctx, "geohazard_prone_areas", cls, lambda idx, key: {"YFCD": key[0]})


def flood_detention_areas(ctx: Ctx) -> Features:
    w = ctx.world
    d = w.terrain.river_distance(w.rep[:, 0], w.rep[:, 1])
    low = (d < max(1500.0, 1.5 * w.spacing)) & ~w.udb & (w.water == 0) & (w.site < 0)
    if low.any():  # the lower half of the riverside land
        low &= w.elev < np.quantile(w.elev[low], 0.5)
    names = np.array([min(w.terrain.river_lines, key=lambda r, p=p: shapely.distance(r[1], shapely.Point(p)))[0]
                      if on else "" for p, on in zip(w.rep, low, strict=True)], dtype=object)

    def attrs(idx, key):
        volume = round(float(w.area[idx].sum()) * 2.5 / 1e4, 1)  # 万 m³ at 2.5 m design depth
        return {"MC": f"{key[0]}{ctx.town(key[2]).short}蓄滞洪区", "XHRL": volume}

    return _zones_by_class(ctx, "flood_detention_areas", names, attrs)


def forest_resources(ctx: Ctx) -> Features:
    w = ctx.world
    forest = np.array([c.startswith("03") for c in w.lc], dtype=bool)
    cls = np.where(forest, "林", "").astype(object)
    rng = ctx.rng
    kinds = {"0301": "乔木林地", "0302": "竹林地", "0305": "灌木林地", "0307": "其他林地"}
    trees = {"0301": ("马尾松", "杉木", "樟树", "湿地松", "枫香"), "0302": ("毛竹",), "0305": ("油茶", "栎类"),
             "0307": ("杉木", "马尾松")}

    def attrs(idx, key):
        code = _dominant(w.lc[idx], w.area[idx])
        level = "I级" if w.erl[idx].any() else ("II级" if w.eco_ctrl[idx].any() else
                                               ("III级" if rng.random() < 0.7 else "IV级"))
        pool = trees.get(code, ("杉木",))
        return {"LDLX": kinds.get(code, "乔木林地"), "SZ": pool[int(rng.integers(len(pool)))], "LDBHDJ": level}

    return _zones_by_class(ctx, "forest_resources", cls, attrs)


def _areas_near(ctx: Ctx, layer: str, places, mask: np.ndarray, attrs) -> Features:
    """One feature per (place, town): atoms of ``mask`` within each place's radius of its centre."""
    w = ctx.world
    label = np.full(len(w.atoms), "", dtype=object)
    for name, x, y, radius in places:
        near = mask & (np.hypot(w.rep[:, 0] - x, w.rep[:, 1] - y) < max(radius, 1.2 * w.spacing)) & (label == "")
        if not near.any():  # the nearest eligible atom at least
            cand = np.flatnonzero(mask & (label == ""))
            near = np.zeros(len(w.atoms), dtype=bool)
            near[cand[np.argmin(np.hypot(w.rep[cand, 0] - x, w.rep[cand, 1] - y))]] = True
        label[near] = name
    keys = [(str(label[i]), int(w.town[i])) if label[i] else None for i in range(len(w.atoms))]
    return from_atoms(ctx, layer, keys, attrs)


def _place(name: str, lonlat, radius: float):
    from lantu.demo.county import lonlat_to_planar

    x, y = lonlat_to_planar(*lonlat)
    return (name, float(x), float(y), radius)


def scenic_areas(ctx: Ctx) -> Features:
    w = ctx.world
    places = [_place("影珠山风景名胜区", (113.31, 28.62), 3500.0),
              _place("松雅湖风景名胜区", (113.108, 28.276), 1800.0)]
    level = {"影珠山风景名胜区": "省级", "松雅湖风景名胜区": "市级"}
    mask = (w.site < 0) & (w.eco_ctrl | (w.water != 0) | w.udb)
    return _areas_near(ctx, "scenic_areas", places, mask,
                       lambda idx, key: {"MC": f"{key[0]}（{ctx.town(key[1]).short}片区）", "JB": level[key[0]]})


def forest_parks(ctx: Ctx) -> Features:
    w = ctx.world
    places = [_place("影珠山森林公园", (113.30, 28.63), 2500.0), _place("福临岭森林公园", (113.45, 28.57), 2200.0),
              _place("北山森林公园", (113.215, 28.52), 1800.0)]
    level = {"影珠山森林公园": "省级", "福临岭森林公园": "县级", "北山森林公园": "市级"}
    forest = np.array([c.startswith("03") for c in w.lc]) & (w.site < 0)
    return _areas_near(ctx, "forest_parks", places, forest,
                       lambda idx, key: {"MC": key[0], "JB": level[key[0]]})


def wetland_parks(ctx: Ctx) -> Features:
    w = ctx.world
    places = [_place("松雅湖国家湿地公园", (113.108, 28.276), 1700.0),
              _place("捞刀河湿地公园", (113.20, 28.352), 2000.0)]
    level = {"松雅湖国家湿地公园": "国家级", "捞刀河湿地公园": "市级"}
    mask = (w.site < 0) & (np.isin(w.water, [WATER_RIVER, WATER_LAKE]) | (w.terrain.river_distance(
        w.rep[:, 0], w.rep[:, 1]) < max(300.0, w.spacing)))
    return _areas_near(ctx, "wetland_parks", places, mask, lambda idx, key: {"MC": key[0], "JB": level[key[0]]})


def tourism_resources(ctx: Ctx) -> Features:
    w = ctx.world
    places = [_place("浔龙河生态艺术小镇", (113.185, 28.365), 1200.0),
              _place("板仓红色旅游区", (113.262, 28.603), 1000.0),
              _place("金井茶园", (113.34, 28.55), 1500.0), _place("松雅湖", (113.108, 28.276), 1500.0)]
    grade = {"浔龙河生态艺术小镇": "4A", "板仓红色旅游区": "4A", "金井茶园": "3A", "松雅湖": "4A"}
    return _areas_near(ctx, "tourism_resources", places, w.site < 0,
                       lambda idx, key: {"MC": key[0], "DJ": grade[key[0]]})


POLYGON_BUILDERS: dict[str, Callable[[Ctx], Features]] = {
    "land_use_survey": land_use_survey, "planned_land_use": planned_land_use,
    "construction_scale_boundary": construction_scale_boundary, "basic_farmland": basic_farmland,
    "eco_red_line": eco_red_line, "urban_dev_boundary": urban_dev_boundary, "admin_divisions": admin_divisions,
    "three_zones": three_zones, "eco_control_line": eco_control_line, "main_function_zone": main_function_zone,
    "functional_area_plan": functional_area_plan, "current_land_use": current_land_use, "blue_line": blue_line,
    "green_line": green_line, "yellow_line": yellow_line, "affordable_housing": affordable_housing,
    "geohazard_prone_areas": geohazard_prone_areas, "flood_detention_areas": flood_detention_areas,
    "forest_resources": forest_resources, "scenic_areas": scenic_areas, "forest_parks": forest_parks,
    "wetland_parks": wetland_parks, "tourism_resources": tourism_resources,
}

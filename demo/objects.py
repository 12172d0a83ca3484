"""Point, line and free-drawn polygon layers: facilities, networks, buildings, projects, heritage.

These do not take part in the planted conflicts, so they are drawn directly on the 1 m grid rather than
from atoms: points strictly inside an atom of the right kind, lines along the generated roads and rivers,
rectangles for buildings. Counts are given per scale as (small, county).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from shapely.ops import substring

from lantu.demo import names
from lantu.demo.county import COUNTY_CODE, lonlat_to_planar, seats_planar, towns
from lantu.demo.features import YDYH_OF_PLAN, Ctx, Features

COUNTY_XZQ = "430121"  # admin boundary lines belong to two towns: they carry the county's code


def _grid(geom):
    return shapely.set_precision(geom, 1.0)


def _count(ctx: Ctx, pair: tuple[int, int]) -> int:
    return pair[0] if ctx.world.scale == "small" else pair[1]


def _inner_county(ctx: Ctx):
    return ctx.inner_county


# ---- points -------------------------------------------------------------------------------------------
def points_in_atoms(ctx: Ctx, mask: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` integer points, each strictly inside (≥ 1 m from the edge of) a random atom of ``mask``."""
    w, rng = ctx.world, ctx.rng
    cand = np.flatnonzero(mask & (w.site < 0))
    if len(cand) == 0:
        cand = np.flatnonzero(w.site < 0)
    chosen = rng.choice(cand, size=n, replace=len(cand) < n)
    pts, atoms = [], []
    for a in chosen:
        atom = w.atoms[a]
        minx, miny, maxx, maxy = atom.bounds
        for attempt in range(30):
            if attempt == 0:
                x, y = np.round(w.rep[a])
            else:
                x, y = np.round(rng.uniform(minx, maxx)), np.round(rng.uniform(miny, maxy))
            p = shapely.Point(x, y)
            if atom.contains(p) and atom.exterior.distance(p) >= 1.0 and all(
                    r.distance(p) >= 1.0 for r in atom.interiors):
                pts.append(p)
                atoms.append(a)
                break
    return np.array(pts, dtype=object), np.array(atoms, dtype=np.int64)


def _urban(w):
    return (w.built | w.udb) & (w.water == 0)


def _land(w):
    return w.water == 0


def _rural(w):
    return (w.village >= 0) | ((w.water == 0) & ~w.udb & (w.u < 0.3))


def _industrial(w):
    return np.isin(w.lc, ["0601", "0604"]) | np.array([c[:1] in ("M", "W") for c in w.plu])


def _hills(w):
    return (w.water == 0) & (w.elev > np.quantile(w.elev, 0.7))


def _riverside(w):
    d = w.terrain.river_distance(w.rep[:, 0], w.rep[:, 1])
    return (w.water == 0) & (d < max(400.0, 1.2 * w.spacing))


def _seq_name(ctx: Ctx, atom: int, stem: str, counters: dict) -> str:
    t = ctx.town(ctx.world.town[atom])
    counters[(t.index, stem)] = counters.get((t.index, stem), 0) + 1
    k = counters[(t.index, stem)]
    return f"{t.short}{stem}" if k == 1 else f"{t.short}第{_cn(k)}{stem}"


def _cn(k: int) -> str:
    digits = "零一二三四五六七八九十"
    return digits[k] if k <= 10 else f"{k}"


def _facility(kinds: tuple[tuple[str, str], ...], extra: Callable[[Ctx, str], dict] | None = None,
              name_field: str = "SSMC", type_field: str = "SSLX"):
    """Attribute maker for facility points: kinds are (type, name stem)."""
    def make(ctx: Ctx, atom: int, counters: dict) -> dict[str, Any]:
        kind, stem = kinds[int(ctx.rng.integers(len(kinds)))]
        row = {type_field: kind, name_field: _seq_name(ctx, atom, stem, counters)}
        if extra:
            row.update(extra(ctx, kind))
        return row
    return make


def _r(ctx: Ctx, lo: int, hi: int) -> int:
    return int(ctx.rng.integers(lo, hi + 1))


def _choice(ctx: Ctx, pool):
    return pool[int(ctx.rng.integers(len(pool)))]


def _key_project(ctx: Ctx, atom: int, counters: dict) -> dict[str, Any]:
    theme, kind = _choice(ctx, names.PROJECT_THEMES)
    t = ctx.town(ctx.world.town[atom])
    counters["xm"] = counters.get("xm", 0) + 1
    year = _r(ctx, 2021, 2027)
    return {"XMMC": f"{t.short}{theme}项目", "XMDM": f"{year}-{COUNTY_CODE}-{_r(ctx, 10, 78):02d}-01-"
            f"{counters['xm']:06d}", "XMLX": kind if kind in ("交通", "水利", "能源", "产业", "公共服务", "市政")
            else "产业", "JSND": year}


def _power(ctx: Ctx, kind: str) -> dict:
    return {"DYDJ": {"220kV变电站": "220kV", "110kV变电站": "110kV", "35kV变电站": "35kV"}.get(kind, "10kV")}


def _gas(ctx: Ctx, kind: str) -> dict:
    return {"YLJB": {"天然气门站": "高压", "LNG储配站": "次高压", "调压站": "中压"}.get(kind, "中压")}


def _fz(ctx: Ctx, kind: str) -> dict:
    return {"FZLX": {"消防站": "消防", "应急避难场所": "应急避难", "人防工程": "人防", "排涝泵站": "防洪",
                     "地震监测站": "抗震"}[kind]}


def _relic(ctx: Ctx, atom: int, counters: dict) -> dict[str, Any]:
    t = ctx.town(ctx.world.town[atom])
    kind = _choice(ctx, ("遗址", "古墓葬", "古建筑", "石刻", "近现代重要史迹"))
    return {"MC": f"{t.short}{names.village_name(ctx.rng)[:-1]}{kind}", "BHJB": _choice(ctx, ("市级", "县级", "县级")),
            "GBPC": f"第{_cn(_r(ctx, 3, 8))}批"}


def _company(ctx: Ctx, atom: int, name_field: str, kind_field: str, kinds) -> dict[str, Any]:
    t = ctx.town(ctx.world.town[atom])
    return {name_field: names.company(ctx.rng, t.short), "TYSHXYDM": names.credit_code(ctx.rng),
            kind_field: _choice(ctx, kinds)}


def _school(ctx: Ctx, atom: int, counters: dict) -> dict[str, Any]:
    kind, stem, classes, per_class = _choice(ctx, (
        ("小学", "小学", (12, 36), 45), ("小学", "中心小学", (18, 48), 45), ("初级中学", "中学", (12, 36), 50),
        ("幼儿园", "幼儿园", (6, 15), 30), ("九年一贯制学校", "学校", (27, 54), 45),
        ("高级中学", "高级中学", (24, 60), 50)))
    return {"MC": _seq_name(ctx, atom, stem, counters), "XXLX": kind, "XWS": _r(ctx, *classes) * per_class}


POINT_LAYERS: dict[str, tuple[tuple[int, int], Callable, Callable]] = {
    "key_projects": ((8, 120), _urban, _key_project),
    "regional_infrastructure": ((6, 60), _land, _facility(
        (("变电站", "220kV变电站"), ("水厂", "水厂"), ("污水处理厂", "污水处理厂"),
         ("垃圾焚烧发电厂", "垃圾焚烧发电厂"),
         ("天然气门站", "天然气门站"), ("通信枢纽", "通信枢纽楼")))),
    "regional_public_services": ((6, 80), _urban, _facility(
        (("综合医院", "人民医院"), ("高级中学", "高级中学"), ("体育中心", "体育中心"), ("文化中心", "文化中心"),
         ("养老服务中心", "养老服务中心"), ("职业学校", "职业技术学校")),
        lambda ctx, k: {"FWBJ": float(_r(ctx, 15, 80) * 100)})),
    "historic_buildings": ((5, 40), _rural, lambda ctx, a, c: {
        "MC": f"{names.village_name(ctx.rng)[:-1]}{_choice(ctx, ('老屋', '祠堂', '古民居', '书院'))}",
        "JZND": _r(ctx, 1820, 1949), "BHJB": _choice(ctx, ("市级", "县级", "未定级"))}),
    "water_supply_facilities": ((4, 25), _urban, _facility(
        (("水厂", "水厂"), ("加压泵站", "加压泵站"), ("高位水池", "高位水池")),
        lambda ctx, k: {"GM": f"{_r(ctx, 1, 20)}万m³/d"})),
    "drainage_facilities": ((4, 30), _urban, _facility(
        (("污水处理厂", "污水处理厂"), ("雨水泵站", "雨水泵站"), ("污水泵站", "污水泵站")),
        lambda ctx, k: {"GM": f"{_r(ctx, 1, 15)}万m³/d"})),
    "power_facilities": ((5, 45), _land, _facility(
        (("220kV变电站", "220kV变电站"), ("110kV变电站", "110kV变电站"), ("35kV变电站", "35kV变电站"),
         ("开闭所", "开闭所")), _power)),
    "telecom_facilities": ((5, 60), _land, _facility(
        (("通信基站", "通信基站"), ("通信机房", "通信机房"), ("邮政支局", "邮政支局")))),
    "gas_facilities": ((3, 25), _urban, _facility(
        (("天然气门站", "天然气门站"), ("调压站", "调压站"), ("LNG储配站", "LNG储配站"), ("加气站", "加气站")), _gas)),
    "heating_facilities": ((2, 8), _urban, _facility((("区域能源站", "区域能源站"), ("热源厂", "热源厂")))),
    "sanitation_facilities": ((5, 60), _land, _facility(
        (("垃圾转运站", "垃圾转运站"), ("公共厕所", "公共厕所"), ("环卫停车场", "环卫停车场")),
        lambda ctx, k: {"GM": f"{_r(ctx, 20, 400)}t/d" if k == "垃圾转运站" else ""})),
    "disaster_prevention_facilities": ((5, 60), _land, _facility(
        (("消防站", "消防站"), ("应急避难场所", "应急避难场所"), ("人防工程", "人防工程"), ("排涝泵站", "排涝泵站"),
         ("地震监测站", "地震监测站")), _fz)),
    "geohazard_points": ((5, 80), _hills, lambda ctx, a, c: {
        "ZHLX": _choice(ctx, ("滑坡", "滑坡", "崩塌", "泥石流", "地面塌陷")),
        "WXDJ": _choice(ctx, ("小型", "小型", "小型", "中型", "大型")), "WXRS": _r(ctx, 0, 120)}),
    "ports": ((2, 6), _riverside, lambda ctx, a, c: {
        "MC": f"{ctx.world.water_name[a] or '浏阳河'}{_seq_name(ctx, a, '码头', c)}", "TTS": _r(ctx, 2, 12)}),
    "cultural_facilities": ((5, 50), _urban, _facility(
        (("文化站", "综合文化站"), ("图书馆", "图书馆"), ("博物馆", "博物馆"), ("文化馆", "文化馆")),
        name_field="MC", type_field="LX")),
    "education_facilities": ((12, 220), _land, lambda ctx, a, c: _school(ctx, a, c)),
    "sports_facilities": ((5, 60), _urban, _facility(
        (("体育场", "体育场"), ("体育馆", "体育馆"), ("全民健身中心", "全民健身中心"), ("游泳馆", "游泳馆")),
        name_field="MC", type_field="LX")),
    "medical_facilities": ((8, 120), _land, lambda ctx, a, c: {
        "MC": _seq_name(ctx, a, _choice(ctx, ("卫生院", "社区卫生服务中心", "医院", "中医医院")), c),
        "YYDJ": _choice(ctx, ("一级", "一级", "二级", "二级", "三级", "未定级")), "CWS": _r(ctx, 2, 60) * 10}),
    "welfare_facilities": ((4, 50), _land, lambda ctx, a, c: {
        "MC": _seq_name(ctx, a, _choice(ctx, ("敬老院", "养老服务中心", "儿童福利院", "残疾人康复中心")), c),
        "LX": _choice(ctx, ("养老", "养老", "儿童福利", "残疾人服务")), "CWS": _r(ctx, 3, 40) * 10}),
    "funeral_facilities": ((2, 12), _rural, lambda ctx, a, c: {
        "MC": _seq_name(ctx, a, _choice(ctx, ("公墓", "殡仪馆", "骨灰堂")), c),
        "LX": _choice(ctx, ("公墓", "殡仪馆", "骨灰堂"))}),
    "hazard_sources": ((3, 40), _industrial, lambda ctx, a, c: {
        "MC": f"{names.company(ctx.rng, ctx.town(ctx.world.town[a]).short)}储罐区",
        "WXYDJ": _choice(ctx, ("一级", "二级", "三级", "四级"))}),
    "hazchem_enterprises": ((3, 50), _industrial, lambda ctx, a, c: _company(
        ctx, a, "QYMC", "WHPLX", ("易燃液体", "腐蚀品", "压缩气体", "氧化剂", "有毒品"))),
    "transport_facilities": ((5, 60), _urban, lambda ctx, a, c: {
        "MC": _seq_name(ctx, a, _choice(ctx, ("汽车站", "公交首末站", "公交停保场", "社会停车场")), c),
        "LX": _choice(ctx, ("客运站", "公交场站", "停车场"))}),
    "key_polluters": ((3, 60), _industrial, lambda ctx, a, c: _company(
        ctx, a, "DWMC", "PWLX", ("废水", "废气", "废水废气", "固废"))),
}


def point_layer(ctx: Ctx, layer: str) -> Features:
    counts, mask_fn, make = POINT_LAYERS[layer]
    pts, atoms = points_in_atoms(ctx, mask_fn(ctx.world), _count(ctx, counts))
    counters: dict = {}
    rows = [make(ctx, int(a), counters) for a in atoms]
    return Features(layer, rows, pts)


def relic_points(ctx: Ctx, layer: str) -> Features:
    """文物保护单位: the famous sites of the county first, then lesser synthetic ones."""
    w = ctx.world
    rows, pts = [], []
    for name, lon, lat, level in names.HISTORIC:
        x, y = (float(np.round(v)) for v in lonlat_to_planar(lon, lat))
        p = shapely.Point(x, y)
        if _inner_county(ctx).contains(p):
            rows.append({"MC": name, "BHJB": level, "GBPC": "第六批" if level == "全国重点" else "第四批"})
            pts.append(p)
    extra, atoms = points_in_atoms(ctx, _rural(w), max(0, _count(ctx, (0, 24))))
    counters: dict = {}
    rows += [_relic(ctx, int(a), counters) for a in atoms]
    return Features(layer, rows, np.array(pts + list(extra), dtype=object))


# ---- free-drawn polygons -------------------------------------------------------------------------------
def buildings(ctx: Ctx) -> Features:
    w, rng = ctx.world, ctx.rng
    builtish = np.isin(np.array([c[:2] for c in w.lc]), ["05", "06", "07", "08"]) & (w.site < 0)
    cand = np.flatnonzero(builtish)
    take = rng.choice(cand, size=min(len(cand), _count(ctx, (150, 14000))), replace=False)
    rows, geoms = [], []
    counters: dict = {}
    for a in np.sort(take):
        atom = w.atoms[a]
        cx, cy = w.rep[a]
        for _ in range(2):
            bw, bh = rng.uniform(12, 45), rng.uniform(10, 30)
            x0 = np.round(cx + rng.uniform(-0.25, 0.25) * min(w.spacing, 150) - bw / 2)
            y0 = np.round(cy + rng.uniform(-0.25, 0.25) * min(w.spacing, 150) - bh / 2)
            rect = shapely.box(x0, y0, x0 + np.round(bw), y0 + np.round(bh))
            if atom.contains(rect) and not any(g.intersects(rect) for g in geoms[-2:]):
                code = w.lc[a]
                floors = (_r(ctx, 6, 33) if code == "0701" else _r(ctx, 1, 3) if code == "0702" else _r(ctx, 1, 5))
                structure = "钢混" if floors > 6 else _choice(ctx, ("砖混", "钢", "钢混", "砖木", "其他"))
                counters[int(w.town[a])] = counters.get(int(w.town[a]), 0) + 1
                rows.append({"JZWMC": f"{ctx.town(w.town[a]).short}{counters[int(w.town[a])]}号楼", "JZCS": floors,
                             "JZJG": structure})
                geoms.append(rect)
                break
    return Features("buildings", rows, np.array(geoms, dtype=object))


def _octagon(x: float, y: float, r: float):
    return _grid(shapely.buffer(shapely.Point(round(x), round(y)), r, quad_segs=2))


def purple_line(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for name, lon, lat, level in names.HISTORIC:
        x, y = lonlat_to_planar(lon, lat)
        g = _grid(shapely.intersection(_octagon(float(x), float(y), 160.0), _inner_county(ctx)))
        if not g.is_empty and g.geom_type == "Polygon":
            rows.append({"KZXMC": f"{name}紫线", "BHJB": level})
            geoms.append(g)
    return Features("purple_line", rows, np.array(geoms, dtype=object))


def _langli_centre() -> tuple[float, float]:
    t = next(t for t in towns() if t.code9 == "430121004")
    x, y = seats_planar()[t.index]
    return float(x) + 150.0, float(y) - 250.0


def historic_city_area(ctx: Ctx) -> Features:
    x, y = _langli_centre()
    g = _grid(shapely.intersection(_octagon(x, y, 650.0), _inner_county(ctx)))
    return Features("historic_city_area", [{"MC": "㮾梨古镇历史城区"}], np.array([g], dtype=object))


def historic_block_protection(ctx: Ctx) -> Features:
    x, y = _langli_centre()
    core = _octagon(x, y, 180.0)
    control = _grid(shapely.difference(_octagon(x, y, 400.0), core))
    rows = [{"MC": "㮾梨老街历史文化街区", "BHFWLX": "核心保护范围"},
            {"MC": "㮾梨老街历史文化街区", "BHFWLX": "建设控制地带"}]
    return Features("historic_block_protection", rows, np.array([core, control], dtype=object))


PROJECT_THEMES_BY_PLAN = {
    "R": ("安置小区", "保障性住房", "人才公寓"), "M": ("产业园", "智能制造基地", "标准厂房"),
    "W": ("物流园", "冷链物流中心"),
    "A": ("中学", "小学", "社区卫生服务中心", "文体中心"), "B": ("商业综合体", "商务中心"),
    "U": ("污水处理厂扩建", "220kV变电站", "天然气门站"), "S": ("道路提质改造", "公交枢纽"),
    "G": ("城市公园", "防护绿带"),
}


def _themes_for(plan: str) -> tuple[str, ...]:
    if plan == "H12":
        return ("集镇提质改造", "标准厂房", "安置小区")
    return PROJECT_THEMES_BY_PLAN.get(plan[:1], ("产业园",))


def projects(ctx: Ctx) -> dict[str, Features]:
    """One chain of projects: 生成 → 选址 → 用地红线 → 供地; plus linear works with an 工程红线."""
    w, rng = ctx.world, ctx.rng
    cons = np.array([c[:1] in "RMWBAGSU" or c in ("H12",) for c in w.plu]) & (w.site < 0) & (w.water == 0)
    cand = np.flatnonzero(cons)
    n = _count(ctx, (8, 90))
    chosen = np.sort(rng.choice(cand, size=min(n, len(cand)), replace=False))
    stages = ("谋划", "储备", "生成", "审批中", "已批")
    out = {k: Features(k, [], np.array([], dtype=object)) for k in (
        "project_generation", "site_selection_area", "land_use_red_line", "land_supply_red_line",
        "engineering_red_line")}
    lists: dict[str, tuple[list, list]] = {k: ([], []) for k in out}
    for k, a in enumerate(chosen):
        t = ctx.town(w.town[a])
        theme = _choice(ctx, _themes_for(str(w.plu[a])))
        year = _r(ctx, 2021, 2026)
        base = {"XMMC": f"{t.short}{theme}项目", "XMDM": f"{year}-{COUNTY_CODE}-{_r(ctx, 10, 78):02d}-01-{k + 1:06d}"}
        stage = stages[k % len(stages)]
        atom = w.atoms[a]
        lists["project_generation"][0].append(base | {"JSDW": names.company(rng, t.short, "城建投资"), "XMZT": stage})
        lists["project_generation"][1].append(atom)
        if stage in ("生成", "审批中", "已批"):
            area = _grid(shapely.buffer(atom, 25.0, join_style="mitre"))
            area = _grid(shapely.intersection(area, _inner_county(ctx)))
            lists["site_selection_area"][0].append(base | {"XZYJSH": f"选字第{COUNTY_CODE}{year}{k + 1:05d}号"})
            lists["site_selection_area"][1].append(area)
        if stage in ("审批中", "已批"):
            date = dt.date(year, _r(ctx, 1, 12), _r(ctx, 1, 28))
            lists["land_use_red_line"][0].append(base | {"PFWH": f"长县资规字〔{year}〕{k + 1:03d}号", "PFSJ": date,
                                                         "YDMJ": round(float(w.area[a]), 2)})
            lists["land_use_red_line"][1].append(atom)
            if stage == "已批":
                ydyh = YDYH_OF_PLAN.get(str(w.plu[a]), "0701")
                lists["land_supply_red_line"][0].append(base | {
                    "GDFS": "划拨" if str(w.plu[a])[:1] in "AGSU" else "出让",
                    "GDSJ": date + dt.timedelta(days=_r(ctx, 30, 300)), "TDYT": ydyh})
                lists["land_supply_red_line"][1].append(atom)
    for k, (line, props) in enumerate(ctx.roads[: _count(ctx, (3, 30))]):
        seg = substring(line, 0, min(line.length, 1500.0))
        corridor = _grid(shapely.intersection(shapely.buffer(seg, 16.0, cap_style="flat"), _inner_county(ctx)))
        if corridor.geom_type != "Polygon" or corridor.area < 100:
            continue
        year = _r(ctx, 2021, 2026)
        lists["engineering_red_line"][0].append({
            "XMMC": f"{props['DLMC']}道路工程", "XMDM": f"{year}-{COUNTY_CODE}-48-01-{900000 + k:06d}",
            "PFWH": f"长县资规工字〔{year}〕{k + 1:03d}号", "PFSJ": dt.date(year, _r(ctx, 1, 12), _r(ctx, 1, 28))})
        lists["engineering_red_line"][1].append(corridor)
    for key, (rows, geoms) in lists.items():
        out[key] = Features(key, rows, np.array(geoms, dtype=object))
    return out


# ---- lines ---------------------------------------------------------------------------------------------
def _clip_lines(ctx: Ctx, line) -> list:
    inside = _grid(shapely.intersection(line, _inner_county(ctx)))
    parts = [p for p in shapely.get_parts(shapely.line_merge(inside)) if p.geom_type == "LineString"]
    return [p for p in parts if p.length >= 50.0]


def _polyline(ctx: Ctx, pts, wiggle: float) -> shapely.LineString:
    pts = np.asarray(pts, dtype=float)
    out = [pts[0]]
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        for f in (0.33, 0.67):
            mid = a + (b - a) * f
            normal = np.array([-(b - a)[1], (b - a)[0]]) / max(np.hypot(*(b - a)), 1.0)
            out.append(mid + normal * ctx.rng.uniform(-wiggle, wiggle))
        out.append(b)
    return shapely.LineString(np.round(out))


def _ll(lon: float, lat: float) -> tuple[float, float]:
    x, y = lonlat_to_planar(lon, lat)
    return float(x), float(y)


EXPRESSWAYS = (
    ("京港澳高速", "高速公路", ((113.075, 28.70), (113.07, 28.45), (113.06, 28.30), (113.09, 28.00))),
    ("长浏高速", "高速公路", ((113.00, 28.225), (113.20, 28.235), (113.35, 28.26), (113.55, 28.28))),
    ("机场高速", "高速公路", ((113.00, 28.205), (113.12, 28.205), (113.215, 28.19))),
    ("长沙绕城高速", "高速公路", ((113.00, 28.38), (113.12, 28.36), (113.19, 28.24), (113.17, 28.10))),
    ("开元东路快速路", "快速路", ((113.04, 28.25), (113.15, 28.255), (113.22, 28.23))),
    ("G107国道", "一级公路", ((113.10, 28.70), (113.11, 28.45), (113.09, 28.30), (113.10, 28.00))),
    ("S207省道", "二级公路", ((113.17, 28.36), (113.28, 28.47), (113.34, 28.55), (113.30, 28.68))),
)


def regional_transport(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for name, grade, pts in EXPRESSWAYS:
        line = _polyline(ctx, [_ll(*p) for p in pts], 300.0)
        for part in _clip_lines(ctx, line):
            rows.append({"DLDJ": grade, "DLMC": name})
            geoms.append(part)
    return Features("regional_transport", rows, np.array(geoms, dtype=object))


def highways(ctx: Ctx) -> Features:
    """Existing roads between neighbouring town seats (a spanning tree plus a few cross links)."""
    seats = seats_planar()
    n = len(seats)
    d = np.hypot(*(seats[:, None, :] - seats[None, :, :]).transpose(2, 0, 1))
    in_tree, edges = {0}, []
    while len(in_tree) < n:  # Prim's minimum spanning tree
        i, j = min(((i, j) for i in in_tree for j in range(n) if j not in in_tree), key=lambda e: d[e])
        edges.append((i, j))
        in_tree.add(j)
    extra = sorted(((i, j) for i in range(n) for j in range(i + 1, n) if (i, j) not in edges and (j, i) not in edges),
                   key=lambda e: d[e])[:4]
    rows, geoms = [], []
    codes = ("X0", "Y0")
    for k, (i, j) in enumerate(edges + extra):
        a, b = towns()[i], towns()[j]
        line = _polyline(ctx, [seats[i], seats[j]], 250.0)
        code = f"{codes[k % 2]}{k + 11:02d}" if k >= 4 else f"S{207 + 2 * k}"
        for part in _clip_lines(ctx, line):
            rows.append({"LXBM": code, "LXMC": f"{a.short}—{b.short}公路", "JSDJ": "二级" if k < 8 else "三级"})
            geoms.append(part)
    return Features("highways", rows, np.array(geoms, dtype=object))


def road_network(ctx: Ctx) -> Features:
    """Urban street grids clipped to each town's urban development boundary (stored on ``ctx.roads``)."""
    w, rng = ctx.world, ctx.rng
    step = 900.0 if w.scale == "small" else 420.0
    rows, geoms = [], []
    for t in towns():
        sel = w.udb & (w.town == t.index) & (w.site < 0)
        if not sel.any():
            continue
        area = shapely.buffer(shapely.coverage_union_all(w.atoms[sel]), -3.0)
        if area.is_empty:
            continue
        angle = rng.uniform(-20, 20)
        minx, miny, maxx, maxy = area.bounds
        cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
        span = max(maxx - minx, maxy - miny)
        offsets = np.arange(-span, span + step, step) + rng.uniform(0, step)
        for axis in (0, 1):
            for k, o in enumerate(offsets):
                if axis == 0:
                    line = shapely.LineString([(cx + o, cy - span), (cx + o, cy + span)])
                else:
                    line = shapely.LineString([(cx - span, cy + o), (cx + span, cy + o)])
                line = affinity.rotate(line, angle, origin=(cx, cy))
                grade = "主干路" if k % 3 == 0 else ("次干路" if k % 3 == 1 else "支路")
                name = names.road_name(rng)
                for part in _clip_lines(ctx, shapely.intersection(line, area)):
                    rows.append({"DLMC": name, "DLDJ": grade})
                    geoms.append(part)
    ctx.roads = list(zip(geoms, rows, strict=True))
    return Features("road_network", rows, np.array(geoms, dtype=object))


def road_centerline(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for line, props in ctx.roads:
        if props["DLDJ"] == "主干路":
            rows.append(props | {"HXKD": float(_choice(ctx, (40, 50, 60)))})
            geoms.append(line)
    ctx.centerlines = list(zip(geoms, rows, strict=True))
    return Features("road_centerline", rows, np.array(geoms, dtype=object))


def road_red_line(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for line, props in ctx.centerlines:
        for side in (1, -1):
            off = _grid(shapely.offset_curve(line, side * props["HXKD"] / 2))
            for part in _clip_lines(ctx, off):
                rows.append(dict(props))
                geoms.append(part)
    return Features("road_red_line", rows, np.array(geoms, dtype=object))


def _pipes(ctx: Ctx, layer: str, offset: float, share: float, attrs) -> Features:
    rows, geoms = [], []
    for line, props in ctx.roads:
        if ctx.rng.random() > share:
            continue
        for part in _clip_lines(ctx, _grid(shapely.offset_curve(line, offset))):
            rows.append(attrs(props))
            geoms.append(part)
    if not rows and ctx.roads:
        line, props = ctx.roads[0]
        for part in _clip_lines(ctx, _grid(shapely.offset_curve(line, offset)))[:1]:
            rows.append(attrs(props))
            geoms.append(part)
    return Features(layer, rows, np.array(geoms, dtype=object))


def network_layers(ctx: Ctx) -> dict[str, Features]:
    big = {"主干路": 2, "次干路": 1, "支路": 0}
    return {
        "water_supply_network": _pipes(ctx, "water_supply_network", 6.0, 0.8, lambda p: {
            "GJ": (300, 600, 1000)[big[p["DLDJ"]]], "GC": _choice(ctx, ("球墨铸铁管", "PE管", "钢管"))}),
        "drainage_network": _pipes(ctx, "drainage_network", -6.0, 0.9, lambda p: {
            "GJ": (400, 800, 1500)[big[p["DLDJ"]]], "GC": _choice(ctx, ("钢筋混凝土管", "HDPE管")),
            "PSTZ": _choice(ctx, ("雨水", "污水", "雨水", "污水", "合流"))}),
        "gas_network": _pipes(ctx, "gas_network", 9.0, 0.5, lambda p: {
            "GJ": (110, 200, 315)[big[p["DLDJ"]]], "YLJB": ("低压", "中压", "次高压")[big[p["DLDJ"]]]}),
        "heating_network": _pipes(ctx, "heating_network", -9.0, 0.08,
                                  lambda p: {"GJ": (200, 300, 500)[big[p["DLDJ"]]]}),
        "telecom_network": _pipes(ctx, "telecom_network", 3.0, 0.6, lambda p: {"GKS": (6, 12, 24)[big[p["DLDJ"]]]}),
    }


def power_network(ctx: Ctx, substations: Features) -> Features:
    """High-voltage lines from each substation to its nearest higher-voltage neighbour, and a 500 kV line."""
    rows, geoms = [], []
    pts = [(g, r) for g, r in zip(substations.geoms, substations.rows, strict=True) if r["DYDJ"] in ("220kV", "110kV")]
    for i, (g, r) in enumerate(pts):
        others = [(h, s) for j, (h, s) in enumerate(pts) if j != i]
        if not others:
            break
        h, _ = min(others, key=lambda o: g.distance(o[0]))
        for part in _clip_lines(ctx, _polyline(ctx, [shapely.get_coordinates(g)[0], shapely.get_coordinates(h)[0]],
                                               120.0)):
            rows.append({"DYDJ": r["DYDJ"], "HLS": _r(ctx, 1, 2)})
            geoms.append(part)
    trunk = _polyline(ctx, [_ll(113.00, 28.40), _ll(113.25, 28.33), _ll(113.55, 28.20)], 400.0)
    for part in _clip_lines(ctx, trunk):
        rows.append({"DYDJ": "500kV", "HLS": 2})
        geoms.append(part)
    return Features("power_network", rows, np.array(geoms, dtype=object))


def waterways(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for name, line, _ in ctx.world.terrain.river_lines:
        for part in _clip_lines(ctx, _grid(line)):
            rows.append({"HDMC": f"{name}航道", "HDDJ": "六级" if name == "浏阳河" else "七级"})
            geoms.append(part)
    return Features("waterways", rows, np.array(geoms, dtype=object))


RAIL = (
    ("长沙地铁3号线", "地铁", ((113.02, 28.22), (113.08, 28.245), (113.10, 28.30), (113.12, 28.33))),
    ("长沙地铁6号线", "地铁", ((113.00, 28.20), (113.12, 28.205), (113.221, 28.19))),
    ("长沙磁浮快线", "磁浮", ((113.02, 28.15), (113.10, 28.155), (113.20, 28.18), (113.221, 28.188))),
    ("长沙地铁10号线", "地铁", ((113.05, 28.38), (113.09, 28.30), (113.15, 28.24))),
)


def rail_transit(ctx: Ctx) -> Features:
    rows, geoms = [], []
    for name, kind, pts in RAIL:
        for part in _clip_lines(ctx, _polyline(ctx, [_ll(*p) for p in pts], 150.0)):
            rows.append({"XLMC": name, "LX": kind})
            geoms.append(part)
    return Features("rail_transit", rows, np.array(geoms, dtype=object))


def admin_boundaries(ctx: Ctx, divisions: Features) -> Features:
    """乡镇界 between each pair of neighbouring towns and 县界 segments, from the town polygons."""
    polys = divisions.geoms
    county_ring = ctx.world.county.exterior
    rows, geoms = [], []
    for i in range(len(polys)):
        for j in range(i + 1, len(polys)):
            shared = shapely.intersection(polys[i].boundary, polys[j].boundary)
            for part in shapely.get_parts(shapely.line_merge(shared)):
                if part.geom_type == "LineString" and part.length > 0:
                    rows.append({"JXLX": "乡镇界", "JXXZ": "已定界"})
                    geoms.append(part)
        outer = shapely.intersection(polys[i].boundary, county_ring)
        for part in shapely.get_parts(shapely.line_merge(outer)):
            if part.geom_type == "LineString" and part.length > 0:
                rows.append({"JXLX": "县界", "JXXZ": "已定界" if ctx.rng.random() < 0.9 else "未定界"})
                geoms.append(part)
    return Features("admin_boundaries", rows, np.array(geoms, dtype=object))


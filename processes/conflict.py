"""``conflict-check`` (规划冲突检测): overlaps that the plans forbid, as patches with both areas.

Rule sets (their classes never overlap one another):

* ``three-control-lines`` — 三条控制线: permanent basic farmland inside the urban development boundary,
  ecological red line × urban development boundary, ecological red line × basic farmland;
* ``urban-vs-landuse`` — 两规差异图斑 (``../shared/code-lists/diff-classes.csv``): **A** urban-plan construction
  land (GB 50137) on the land-use plan's non-construction land, outside basic farmland; **B** the land-use
  plan's 允许建设区 (GZQLXDM 010) that the urban plan keeps non-construction; **C** urban-plan construction
  land on permanent basic farmland;
* ``construction-on-cropland`` — planned construction land on current cropland (GB/T 21010 01xx);
* or any two polygon layers (``layers``: every overlap of their features).

Patches smaller than ``min_area`` (planar m², default 1) are dropped as slivers; edge or corner contacts
have no area and never appear.
"""

from __future__ import annotations

from dataclasses import replace

from lantu.config.registry import Registry
from lantu.processes.base import (
    Env,
    InvalidInput,
    LantuProcessor,
    RunContext,
    bool_input,
    json_output,
    number_input,
    plain_value,
    reject_unknown,
)
from lantu.processes.jobs import Output
from lantu.processes.overlay import Filter, OverlayClass, Patch, area_block, areas, overlay_sql
from lantu.processes.region import aoi_input

RULE_SET_TITLES = {
    "three-control-lines": "三条控制线冲突检查 (three control lines)",
    "urban-vs-landuse": "两规差异图斑 (urban plan vs land-use plan)",
    "construction-on-cropland": "规划建设用地占用现状耕地 (planned construction on cropland)",
}


def construction_codes(registry: Registry) -> tuple[str, ...]:
    return tuple(sorted(c for c, v in registry.code_lists["gb50137"].codes.items() if v.is_construction))


def rule_set_classes(registry: Registry, name: str) -> list[OverlayClass]:
    cons = construction_codes(registry)
    is_cons = Filter("yddm", cons, text="YDDM 为 GB 50137 建设用地 (construction land)")
    not_cons = replace(is_cons, negate=True, text="YDDM 为非建设用地 (non-construction land)")
    csb_010 = Filter("gzqlxdm", ("010",), text="GZQLXDM = 010 允许建设区")
    csb_not_010 = replace(csb_010, negate=True, text="GZQLXDM ≠ 010 (土规非建设用地)")
    cropland = Filter("dlbm", prefix="01", text="DLBM 01xx 耕地 (cropland)")
    if name == "three-control-lines":
        return [OverlayClass("farmland_in_udb", "永久基本农田位于城镇开发边界内", "basic_farmland",
                             "urban_dev_boundary"),
                OverlayClass("redline_udb", "生态保护红线与城镇开发边界重叠", "eco_red_line", "urban_dev_boundary"),
                OverlayClass("redline_farmland", "生态保护红线与永久基本农田重叠", "eco_red_line", "basic_farmland")]
    if name == "urban-vs-landuse":
        return [OverlayClass("A", "A类：城规建设、土规非建设（不含永久基本农田）", "planned_land_use",
                             "construction_scale_boundary", is_cons, csb_not_010, minus="basic_farmland"),
                OverlayClass("B", "B类：土规建设、城规非建设", "construction_scale_boundary", "planned_land_use",
                             csb_010, not_cons),
                OverlayClass("C", "C类：城规建设占永久基本农田", "planned_land_use", "basic_farmland", is_cons)]
    if name == "construction-on-cropland":
        return [OverlayClass("cropland", "规划建设用地占用现状耕地", "planned_land_use", "land_use_survey",
                             is_cons, cropland)]
    raise KeyError(name)


# The code each class reports from its two layers (城规用地 / 土规用途 for the 差异图斑 ledger).
CODE_COLUMNS = {"planned_land_use": "yddm", "construction_scale_boundary": "gzqlxdm", "land_use_survey": "dlbm",
                "basic_farmland": "dlbm"}


def run_classes(env: Env, classes: list[OverlayClass], *, aoi_ewkb: bytes | None, min_area: float,
                progress=None) -> list[Patch]:
    """The overlay Lantu uses: shapely 2 on geometries streamed from PostGIS, both cores, containment
    short-cut (``overlay_fast``; bench/processes: 0.31× the hand-written PostGIS overlay). The SQL path below
    gives the same patches and stays as the cross-check (tests compare them)."""
    from lantu.processes import overlay_fast  # lazy: overlay_fast imports CODE_COLUMNS from this module

    return overlay_fast.run_classes(env, classes, aoi_ewkb=aoi_ewkb, min_area=min_area, progress=progress)


def run_classes_sql(env: Env, classes: list[OverlayClass], *, aoi_ewkb: bytes | None, min_area: float,
                    progress=None) -> list[Patch]:
    """The overlay in PostGIS alone (one statement per class)."""
    srid = env.settings.planar_srid
    patches: list[Patch] = []
    for k, cls in enumerate(classes):
        if progress:
            progress(10 + int(80 * k / len(classes)), f"正在计算 {cls.title} ({cls.name})")
        query, params = overlay_sql(env.registry, cls, srid, with_aoi=aoi_ewkb is not None,
                                    code_columns=(CODE_COLUMNS.get(cls.a), CODE_COLUMNS.get(cls.b)))
        with env.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cur.execute(query, ([aoi_ewkb] if aoi_ewkb is not None else []) + params)
            for afid, bfid, absm, bbsm, acode, bcode, planar, ell, geojson, by_town in cur:
                if planar < min_area:
                    continue
                patches.append(Patch(cls.name, afid, bfid, absm, bbsm, planar, ell, geojson, by_town or {},
                                     acode, bcode))
    return patches


def summarise(classes: list[OverlayClass], patches: list[Patch], srid: int) -> dict:
    by_class = {}
    for cls in classes:
        mine = [p for p in patches if p.cls == cls.name]
        by_class[cls.name] = {"title": cls.title, "layers": [cls.a, cls.b], "count": len(mine),
                              "area": areas(sum(p.planar_m2 for p in mine), sum(p.ellipsoidal_m2 for p in mine), srid)}
    by_town: dict[str, dict[str, float]] = {}
    for p in patches:
        for town, m2 in p.by_town.items():
            row = by_town.setdefault(town, {})
            row[p.cls] = row.get(p.cls, 0.0) + m2
    return {"by_class": by_class,
            "by_town": {t: {c: area_block(m2) | {"crs": f"EPSG:{srid}"} for c, m2 in sorted(row.items())}
                        for t, row in sorted(by_town.items())},
            "total": areas(sum(p.planar_m2 for p in patches), sum(p.ellipsoidal_m2 for p in patches), srid)}


def patches_geojson(classes: list[OverlayClass], patches: list[Patch], srid: int) -> str:
    """A GeoJSON FeatureCollection, written as text so each geometry is PostGIS's own output."""
    import json

    titles = {c.name: c for c in classes}
    parts = []
    for n, p in enumerate(patches, start=1):
        cls = titles[p.cls]
        props = {"class": p.cls, "class_title": cls.title, "layers": [cls.a, cls.b], "bsm": [p.a_bsm, p.b_bsm],
                 "fid": [p.a_fid, p.b_fid], "codes": [p.a_code, p.b_code],
                 "area": areas(p.planar_m2, p.ellipsoidal_m2, srid), "xzqdm": sorted(p.by_town),
                 "by_town": p.by_town}
        parts.append(f'{{"type":"Feature","id":{n},"geometry":{p.geojson},'
                     f'"properties":{json.dumps(props, ensure_ascii=False)}}}')
    return '{"type":"FeatureCollection","features":[' + ",".join(parts) + "]}"


class ConflictCheck(LantuProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "conflict-check",
        "title": {"zh": "规划冲突检测", "en": "Planning conflict check"},
        "description": {
            "zh": "按规则集（三条控制线、两规差异图斑 A/B/C、规划建设占用耕地）或任意两个图层检测冲突图斑，"
                  "给出椭球面积与高斯-克吕格平面面积（平方米、亩、公顷），并按类别、乡镇汇总。",
            "en": "Conflict patches of a rule set (three control lines, urban-vs-land-use plan classes A/B/C, "
                  "construction on cropland) or of any two layers, with ellipsoidal and Gauss-Kruger planar "
                  "areas in m², mu and ha, summarised by class and by town."},
        "keywords": ["多规合一", "冲突检测", "差异图斑", "三条控制线"],
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value", "reference"],
        "links": [],
        "inputs": {
            "rule_set": {"title": "规则集 (rule set)", "description": "three-control-lines, urban-vs-landuse or "
                         "construction-on-cropland; or give `layers` instead",
                         "schema": {"type": "string", "enum": list(RULE_SET_TITLES)}, "minOccurs": 0, "maxOccurs": 1},
            "layers": {"title": "两个图层 (two layer ids)", "schema": {"type": "array", "items": {"type": "string"},
                       "minItems": 2, "maxItems": 2}, "minOccurs": 0, "maxOccurs": 1},
            "aoi": {"title": "检测范围 (area of interest)", "description": "GeoJSON polygon (crs input for its CRS) "
                    "or an XZQDM (county or town code)", "schema": {"oneOf": [
                        {"type": "string"}, {"type": "object", "format": "geojson-geometry"}]},
                    "minOccurs": 0, "maxOccurs": 1},
            "crs": {"title": "aoi 的坐标参照系 (CRS of aoi)", "schema": {"type": "string", "format": "uri",
                    "default": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}, "minOccurs": 0, "maxOccurs": 1},
            "min_area": {"title": "最小图斑面积 (minimum patch area, planar m²)",
                         "schema": {"type": "number", "minimum": 0, "default": 1.0}, "minOccurs": 0, "maxOccurs": 1},
            "save": {"title": "保存为差异图斑图层 (save as the 差异图斑 layer)", "description": "replace the "
                     "discrepancy_patches layer (within aoi) with the result, each patch 待解决",
                     "schema": {"type": "boolean", "default": False}, "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {
            "patches": {"title": "冲突图斑 (conflict patches)", "schema": {"type": "object",
                        "contentMediaType": "application/geo+json"}},
            "summary": {"title": "按类别、乡镇汇总 (summary by class and town)",
                        "schema": {"type": "object", "contentMediaType": "application/json"}},
        },
        "example": {"inputs": {"rule_set": "three-control-lines", "aoi": "430121104000"}},
    }

    def validate(self, inputs: dict, env: Env) -> dict:
        reject_unknown(inputs, set(self.METADATA["inputs"]))
        rule_set, layers = plain_value(inputs, "rule_set"), plain_value(inputs, "layers")
        if (rule_set is None) == (layers is None):
            raise InvalidInput("rule_set", "give either rule_set or layers (two layer ids), not both or neither")
        if rule_set is not None and rule_set not in RULE_SET_TITLES:
            raise InvalidInput("rule_set", f"unknown rule set {str(rule_set)[:60]!r}; known: "
                                           f"{', '.join(RULE_SET_TITLES)}")
        if layers is not None:
            if not (isinstance(layers, list) and len(layers) == 2 and all(isinstance(x, str) for x in layers)):
                raise InvalidInput("layers", "must be a list of two layer ids")
            for lid in layers:
                layer = env.registry.get(lid)
                if layer is None or not layer.is_vector:
                    raise InvalidInput("layers", f"unknown layer {lid[:60]!r}")
                if layer.geometry not in ("Polygon", "MultiPolygon"):
                    raise InvalidInput("layers", f"{lid} is a {layer.geometry} layer; overlaps need polygons")
        aoi = aoi_input(inputs, "aoi", env)
        min_area = number_input(inputs, "min_area", 1.0)
        save = bool_input(inputs, "save", False)
        return {"rule_set": rule_set, "layers": layers, "aoi": aoi, "min_area": min_area, "save": save}

    def layers_needed(self, inputs: dict, registry: Registry) -> dict[str, list[str]]:
        layers = {lid for c in self.classes(inputs, registry) for lid in (c.a, c.b, c.minus) if lid}
        return {"download": sorted(layers)}

    def prefers_async(self, inputs: dict) -> bool:
        return inputs.get("aoi") is None  # the whole county

    def classes(self, inputs: dict, registry: Registry) -> list[OverlayClass]:
        if inputs["rule_set"]:
            return rule_set_classes(registry, inputs["rule_set"])
        a, b = inputs["layers"]
        return [OverlayClass("overlap", f"{registry.get(a).name_zh} × {registry.get(b).name_zh}", a, b)]

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:
        from lantu.processes.region import aoi_ewkb

        classes = self.classes(inputs, ctx.registry)
        srid = ctx.settings.planar_srid
        patches = run_classes(ctx.env, classes, aoi_ewkb=aoi_ewkb(inputs["aoi"]), min_area=inputs["min_area"],
                              progress=ctx.progress)
        ctx.progress(92, "正在汇总 (summarising)")
        summary = summarise(classes, patches, srid)
        summary["rule_set"] = inputs["rule_set"] or "layers"
        summary["min_area_m2"] = inputs["min_area"]
        if inputs["save"]:
            from lantu.processes.discrepancy import save_patches

            ctx.progress(95, "正在保存差异图斑 (saving the discrepancy patches)")
            summary["saved"] = save_patches(ctx, classes, patches, inputs["aoi"])
        collection = patches_geojson(classes, patches, srid)
        return [Output("patches", "application/geo+json", collection.encode()), json_output("summary", summary)]


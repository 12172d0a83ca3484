"""``control-line-check`` (控制线检测 / 合规性审查) of a project site, with the 空间预审报告.

For every control line of the registry and every layer ``config/checks.yaml`` names as relevant: does the
site touch it, the overlap (union of the site's intersections with the layer's features, planar in the GK
zone and ellipsoidal on GRS80) and its share of the site, the features hit with their key attributes, and
the distance to the nearest feature within ``buffer_m``. The verdict is the most severe of the configured
rules that apply. One SQL statement per layer, all in one transaction, driven by the GiST index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import yaml
from psycopg2 import sql

from lantu.config.registry import Layer, Registry
from lantu.processes.base import (
    Env,
    InvalidInput,
    LantuProcessor,
    RunContext,
    json_output,
    number_input,
    plain_value,
    reject_unknown,
    text_input,
)
from lantu.processes.geometry import polygon_input
from lantu.processes.jobs import Output
from lantu.processes.overlay import areas
from lantu.processes.region import ewkb_hex
from lantu.providers.tables import table_id

SEVERITY = {"通过": 0, "需论证": 1, "需调整": 2, "禁止": 3}
VERDICT_EN = {"通过": "pass", "需论证": "needs review", "需调整": "needs adjustment", "禁止": "prohibited"}
GENERIC_FIELDS = {"YSDM", "XZQDM", "MJ", "BZ"}
POLYGONS = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Rule:
    layer: str
    when: str
    verdict: str
    reason: str
    distance_m: float | None = None


@dataclass(frozen=True)
class CheckConfig:
    layers: tuple[str, ...]
    rules: tuple[Rule, ...]


_configs: dict[int, CheckConfig] = {}


def check_config(registry: Registry) -> CheckConfig:
    """The checked layers (control lines + relevant ones) and the verdict rules from config/checks.yaml."""
    if id(registry) not in _configs:
        _configs[id(registry)] = _read_check_config(registry)
    return _configs[id(registry)]


def _read_check_config(registry: Registry) -> CheckConfig:
    raw = yaml.safe_load(resources.files("lantu.config").joinpath("checks.yaml").read_text(encoding="utf-8"))
    layers = [la.id for la in registry.vector_layers() if la.control_line]
    layers += [lid for lid in raw.get("relevant_layers", []) if lid not in layers]
    rules = tuple(Rule(**r) for r in raw.get("rules", []))
    for lid in layers + [r.layer for r in rules]:
        if registry.get(lid) is None:
            raise ValueError(f"config/checks.yaml names an unknown layer {lid!r}")
    for r in rules:
        if r.verdict not in SEVERITY or r.when not in ("intersects", "outside", "near"):
            raise ValueError(f"config/checks.yaml: bad rule {r}")
    return CheckConfig(tuple(layers), rules)


def key_columns(layer: Layer) -> list:
    return [f for f in layer.fields if f.code not in GENERIC_FIELDS]


def layer_sql(layer: Layer, srid: int) -> sql.Composed:
    """Features within the buffer of the site: distance, overlap area, key attributes; plus the union of
    the overlaps (planar and ellipsoidal). Parameters: site EWKB (4490), buffer (m)."""
    attrs = sql.SQL(", ").join(sql.SQL("{}, f.{}").format(sql.Literal(f.code), sql.Identifier(f.column))
                               for f in key_columns(layer))
    polygonal = layer.geometry in POLYGONS
    inter = (sql.SQL("CASE WHEN ST_Intersects(f.fg, s.gp) THEN ST_CollectionExtract(ST_Intersection(f.fg, s.gp), 3) "
                     "END") if polygonal else sql.SQL("NULL::geometry"))
    return sql.SQL("""
WITH s AS (SELECT g, ST_Transform(g, {srid}) AS gp FROM (SELECT ST_GeomFromEWKB(%(site)s) AS g) x),
box AS (SELECT ST_Envelope(ST_Transform(ST_Expand(gp, %(buf)s), 4490)) AS b FROM s),
cand AS MATERIALIZED (
  SELECT f.fid, f.bsm, json_build_object({attrs}) AS attrs, ST_Transform(f.geom, {srid}) AS fg
  FROM {table} f, box WHERE f.geom && box.b
),
near AS MATERIALIZED (
  SELECT f.fid, f.bsm, f.attrs, ST_Distance(f.fg, s.gp) AS dist, ST_Intersects(f.fg, s.gp) AS touches, {inter} AS inter
  FROM cand f, s WHERE ST_DWithin(f.fg, s.gp, %(buf)s)
)
SELECT (SELECT json_agg(json_build_object('fid', fid, 'bsm', bsm, 'attributes', attrs, 'distance_m', dist,
                                          'touches', touches, 'overlap_m2', coalesce(ST_Area(inter), 0))
                        ORDER BY dist, fid) FROM near),
       ST_Area(u), ST_Area(ST_Transform(u, 4490)::geography, true)
FROM (SELECT ST_Union(inter) FILTER (WHERE ST_Area(inter) > 0) AS u FROM near) un""").format(
        srid=sql.Literal(srid), attrs=attrs, table=table_id(layer), inter=inter)


def check_site(env: Env, site_ewkb: bytes, buffer_m: float, layers: tuple[str, ...], progress=None) -> dict:
    srid = env.settings.planar_srid
    out: dict = {}
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cur.execute(sql.SQL("""SELECT ST_Area(ST_Transform(g, {srid})), ST_Area(g::geography, true),
                  (SELECT json_agg(json_build_object('xzqdm', t.xzqdm, 'xzqmc', t.xzqmc) ORDER BY t.xzqdm)
                   FROM blueprint.admin_divisions t WHERE t.geom && g AND ST_Area(ST_Intersection(t.geom, g)) > 0),
                  ST_XMin(g), ST_YMin(g), ST_XMax(g), ST_YMax(g)
           FROM (SELECT ST_GeomFromEWKB(%s) AS g) s""").format(srid=sql.Literal(srid)), (site_ewkb,))
        planar, ell, towns, *bbox = cur.fetchone()
        site = {"area": areas(planar, ell, srid), "towns": towns or [], "bbox": bbox}
        for k, lid in enumerate(layers):
            if progress:
                progress(10 + int(70 * k / len(layers)), f"正在检测 {env.registry.get(lid).name_zh}")
            layer = env.registry.get(lid)
            cur.execute(layer_sql(layer, srid), {"site": site_ewkb, "buf": buffer_m})
            hits, u_planar, u_ell = cur.fetchone()
            hits = hits or []
            polygonal = layer.geometry in POLYGONS
            overlap = u_planar or 0.0
            touching = [h for h in hits if (h["overlap_m2"] > 0 if polygonal else h["touches"])]
            out[lid] = {
                "title": layer.name_zh, "title_en": layer.title_en, "geometry": layer.geometry,
                "control_line": layer.control_line, "intersects": bool(touching),
                "overlap": areas(overlap, u_ell or 0.0, srid) if polygonal else None,
                "share": overlap / planar if polygonal and planar > 0 else None,
                "features": touching,
                "nearest_distance_m": min((h["distance_m"] for h in hits), default=None),
                "nearby": [h for h in hits if h not in touching],
            }
    return {"site": site, "layers": out}


def verdict(result: dict, rules: tuple[Rule, ...]) -> dict:
    applied = []
    for rule in rules:
        entry = result["layers"].get(rule.layer)
        if entry is None:
            continue
        if rule.when == "intersects":
            hit = entry["intersects"]
        elif rule.when == "outside":
            hit = entry["share"] is not None and entry["share"] < 1 - 1e-9
        else:
            d = entry["nearest_distance_m"]
            hit = d is not None and d <= (rule.distance_m or 0.0)
        if hit:
            applied.append({"layer": rule.layer, "title": entry["title"], "verdict": rule.verdict,
                            "reason": rule.reason})
    worst = max((a["verdict"] for a in applied), key=SEVERITY.get, default="通过")
    return {"verdict": worst, "verdict_en": VERDICT_EN[worst], "rules_applied": applied}


class ControlLineCheck(LantuProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "control-line-check",
        "title": {"zh": "控制线检测（合规性审查）", "en": "Control-line check of a project site"},
        "description": {
            "zh": "检测项目用地与各类控制线及相关图层的关系：是否占用、占用面积与比例、涉及要素、最近距离，"
                  "按规则给出审查结论，并生成空间预审报告（HTML、PDF）。",
            "en": "Checks a project site against every control line and relevant layer (overlap, share, features "
                  "hit, nearest distance), gives a verdict by the configured rules and a pre-review report "
                  "(HTML and PDF)."},
        "keywords": ["控制线检测", "合规性审查", "空间预审", "项目选址"],
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value", "reference"],
        "links": [],
        "inputs": {
            "site": {"title": "项目用地 (project site)", "description": "GeoJSON Polygon/MultiPolygon (Feature or "
                     "FeatureCollection too), or a file: {\"value\": base64, \"encoding\": \"base64\", \"mediaType\": "
                     "\"application/geopackage+sqlite3\" | \"application/zip\" (Shapefile) | \"application/geo+json\"}",
                     "schema": {"oneOf": [{"type": "object", "format": "geojson-geometry"},
                                          {"type": "string", "contentEncoding": "base64"}]},
                     "minOccurs": 1, "maxOccurs": 1},
            "crs": {"title": "site 的坐标参照系 (CRS of site)", "schema": {"type": "string", "format": "uri",
                    "default": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}, "minOccurs": 0, "maxOccurs": 1},
            "project_name": {"title": "项目名称", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
            "project_code": {"title": "项目代码", "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
            "buffer_m": {"title": "邻近要素检索距离 (m)", "schema": {"type": "number", "minimum": 0, "maximum": 100000},
                         "minOccurs": 0, "maxOccurs": 1},
            "report": {"title": "生成空间预审报告 (make the report)", "description": "true: also write the "
                       "空间预审报告 as HTML and PDF (about a second more); false: the check only",
                       "schema": {"type": "boolean", "default": False},
                       "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {
            "result": {"title": "检测结果 (result)",
                       "schema": {"type": "object", "contentMediaType": "application/json"}},
            "report_html": {"title": "空间预审报告 HTML",
                            "schema": {"type": "string", "contentMediaType": "text/html"}},
            "report_pdf": {"title": "空间预审报告 PDF", "schema": {"type": "string", "format": "binary",
                           "contentMediaType": "application/pdf"}},
        },
        "example": {"inputs": {"site": {"type": "Polygon", "coordinates": [[[113.1, 28.3], [113.101, 28.3],
                                                                             [113.101, 28.301], [113.1, 28.3]]]},
                               "project_name": "示例项目"}},
    }

    def validate(self, inputs: dict, env: Env) -> dict:
        reject_unknown(inputs, set(self.METADATA["inputs"]))
        site = polygon_input(inputs, "site", max_vertices=env.settings.max_input_vertices,
                             uploads_dir=env.settings.home / "uploads")
        report = plain_value(inputs, "report", False)
        if not isinstance(report, bool):
            raise InvalidInput("report", "must be true or false")
        return {"site": ewkb_hex(site), "project_name": text_input(inputs, "project_name") or "",
                "layers": list(check_config(env.registry).layers), "feature_layers": None,
                "project_code": text_input(inputs, "project_code", max_length=60) or "",
                "buffer_m": number_input(inputs, "buffer_m", env.settings.check_buffer_m, maximum=100000),
                "report": report}

    def restrict(self, inputs: dict, may) -> dict:
        """Check only the layers the caller may view; list features only of those it may download."""
        layers = [lid for lid in inputs["layers"] if may("view", lid)]
        downloadable = [lid for lid in layers if may("download", lid)]
        return inputs | {"layers": layers, "feature_layers": None if downloadable == layers else downloadable}

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:
        config = check_config(ctx.registry)
        site_ewkb = bytes.fromhex(inputs["site"])
        layers = tuple(inputs.get("layers") or config.layers)
        result = check_site(ctx.env, site_ewkb, inputs["buffer_m"], layers, ctx.progress)
        listed = inputs.get("feature_layers")
        if listed is not None:  # the caller may view these layers but not download their features
            for lid, entry in result["layers"].items():
                if lid not in listed:
                    entry["features_withheld"] = len(entry["features"]) + len(entry["nearby"])
                    entry["features"], entry["nearby"] = [], []
        result.update(verdict(result, config.rules))
        result["project"] = {"name": inputs["project_name"], "code": inputs["project_code"]}
        result["buffer_m"] = inputs["buffer_m"]
        result["site"]["geometry"] = json.loads(_geojson(ctx, site_ewkb))
        outputs = [json_output("result", result)]
        if inputs["report"]:
            from lantu.processes.report import render_report

            ctx.progress(85, "正在生成空间预审报告 (writing the report)")
            html, pdf = render_report(ctx, result, site_ewkb)
            outputs += [Output("report_html", "text/html; charset=utf-8", html.encode()),
                        Output("report_pdf", "application/pdf", pdf)]
        return outputs


def _geojson(ctx: RunContext, ewkb: bytes) -> str:
    with ctx.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_AsGeoJSON(ST_GeomFromEWKB(%s), 9)", (ewkb,))
        return cur.fetchone()[0]

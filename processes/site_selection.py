"""``site-selection`` (辅助选址): candidate areas inside a region that satisfy the planning constraints.

For every parcel of ``land_use_layer`` whose code is in ``allowed_codes`` and which meets the region:
piece = parcel ∩ region ∩ (union of each ``inside`` layer) − (union of every ``outside`` layer), in the
Gauss-Kruger plane; each polygon part of a piece is a candidate when its planar area lies within
[``min_area_m2``, ``max_area_m2``] and its distance to the nearest ``road_layer`` feature is at most
``max_road_distance_m``. Candidates are ranked by road distance, then area (largest first), then BSM; each
carries the reasons it qualifies, and the parts that fail are listed with the reason.
"""

from __future__ import annotations

from psycopg2 import sql

from lantu.config.registry import Registry
from lantu.processes.base import (
    Env,
    InvalidInput,
    LantuProcessor,
    RunContext,
    number_input,
    plain_value,
    reject_unknown,
)
from lantu.processes.jobs import Output
from lantu.processes.ledger import code_field
from lantu.processes.overlay import areas
from lantu.processes.region import aoi_input
from lantu.providers.tables import table_id

DEFAULT_OUTSIDE_EXCLUDED = {"urban_dev_boundary", "construction_scale_boundary"}


def default_outside(registry: Registry) -> list[str]:
    return [la.id for la in registry.vector_layers() if la.control_line and la.id not in DEFAULT_OUTSIDE_EXCLUDED
            and la.geometry in ("Polygon", "MultiPolygon")]


def _layer_list(value, name: str, registry: Registry, polygons_only: bool = True) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(name, "must be a list of layer ids")
    for lid in value:
        layer = registry.get(lid)
        if layer is None or not layer.is_vector:
            raise InvalidInput(name, f"unknown layer {lid[:60]!r}")
        if polygons_only and layer.geometry not in ("Polygon", "MultiPolygon"):
            raise InvalidInput(name, f"{lid} is a {layer.geometry} layer; constraints need polygon layers")
    return value


class SiteSelection(LantuProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "site-selection",
        "title": {"zh": "辅助选址", "en": "Site selection"},
        "description": {
            "zh": "在指定范围内寻找满足约束的候选用地：位于城镇开发边界内、避让各类控制线、面积范围、距道路距离、"
                  "允许的用地代码；按距道路距离和面积排序并给出理由。",
            "en": "Candidate areas in a region that satisfy the constraints (inside the urban development "
                  "boundary, outside every control line, area range, distance to roads, allowed land-use codes), "
                  "ranked, with reasons."},
        "keywords": ["辅助选址", "site selection"],
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value", "reference"],
        "links": [],
        "inputs": {
            "region": {"title": "选址范围 (XZQDM or polygon)", "schema": {"oneOf": [{"type": "string"},
                       {"type": "object"}]}, "minOccurs": 1, "maxOccurs": 1},
            "crs": {"title": "region 的坐标参照系", "schema": {"type": "string", "format": "uri"},
                    "minOccurs": 0, "maxOccurs": 1},
            "inside": {"title": "须位于其内的图层", "schema": {"type": "array", "items": {"type": "string"},
                       "default": ["urban_dev_boundary"]}, "minOccurs": 0, "maxOccurs": 1},
            "outside": {"title": "须避让的图层 (default: every control line but the urban development boundary "
                        "and the construction scale boundary)", "schema": {"type": "array",
                                                                           "items": {"type": "string"}},
                        "minOccurs": 0, "maxOccurs": 1},
            "land_use_layer": {"title": "用地图层", "schema": {"type": "string", "default": "planned_land_use"},
                               "minOccurs": 0, "maxOccurs": 1},
            "allowed_codes": {"title": "允许的用地代码", "schema": {"type": "array", "items": {"type": "string"}},
                              "minOccurs": 1, "maxOccurs": 1},
            "min_area_m2": {"title": "最小面积（平面，平方米）", "schema": {"type": "number", "default": 0},
                            "minOccurs": 0, "maxOccurs": 1},
            "max_area_m2": {"title": "最大面积（平面，平方米）", "schema": {"type": "number"},
                            "minOccurs": 0, "maxOccurs": 1},
            "road_layer": {"title": "道路图层", "schema": {"type": "string", "default": "road_centerline"},
                           "minOccurs": 0, "maxOccurs": 1},
            "max_road_distance_m": {"title": "距道路最大距离（米）", "schema": {"type": "number", "default": 1000},
                                    "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {"candidates": {"title": "候选用地 (ranked candidates)",
                                   "schema": {"type": "object", "contentMediaType": "application/geo+json"}}},
        "example": {"inputs": {"region": "430121001000", "allowed_codes": ["M1", "M2"], "min_area_m2": 5000}},
    }

    def validate(self, inputs: dict, env: Env) -> dict:
        reject_unknown(inputs, set(self.METADATA["inputs"]))
        reg = env.registry
        region = aoi_input(inputs, "region", env, required=True)
        inside = _layer_list(plain_value(inputs, "inside", ["urban_dev_boundary"]), "inside", reg)
        outside = _layer_list(plain_value(inputs, "outside", default_outside(reg)), "outside", reg)
        land_use = plain_value(inputs, "land_use_layer", "planned_land_use")
        _layer_list([land_use] if isinstance(land_use, str) else land_use, "land_use_layer", reg)
        codes = plain_value(inputs, "allowed_codes")
        if not isinstance(codes, list) or not codes or not all(isinstance(c, str) and len(c) < 20 for c in codes):
            raise InvalidInput("allowed_codes", "must be a non-empty list of land-use codes, e.g. [\"M1\", \"M2\"]")
        road = plain_value(inputs, "road_layer", "road_centerline")
        _layer_list([road] if isinstance(road, str) else road, "road_layer", reg, polygons_only=False)
        min_area = number_input(inputs, "min_area_m2", 0.0)
        max_area = number_input(inputs, "max_area_m2", 1e12)
        if min_area > max_area:
            raise InvalidInput("min_area_m2", "must not exceed max_area_m2")
        return {"region": region, "inside": inside, "outside": outside, "land_use_layer": land_use,
                "code_field": code_field(reg.get(land_use)),
                "inside_titles": [reg.get(lid).name_zh for lid in inside], "allowed_codes": codes, "road_layer": road,
                "min_area_m2": min_area, "max_area_m2": max_area,
                "max_road_distance_m": number_input(inputs, "max_road_distance_m", 1000.0)}

    def layers_needed(self, inputs: dict, registry: Registry) -> dict[str, list[str]]:
        return {"download": [inputs["land_use_layer"]],
                "view": sorted({*inputs["inside"], *inputs["outside"], inputs["road_layer"]})}

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:
        reg, srid = ctx.registry, ctx.settings.planar_srid
        land_use = reg.get(inputs["land_use_layer"])
        code_col = land_use.field(inputs["code_field"]).column
        region = bytes.fromhex(inputs["region"]["ewkb"])
        lit = sql.Literal(srid)
        with ctx.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cur.execute(sql.SQL(
                "CREATE TEMP TABLE pieces ON COMMIT DROP AS "
                "SELECT p.fid, p.bsm, p.{code}::text AS code, "
                "ST_CollectionExtract(ST_Intersection(ST_Transform(p.geom, {srid}), ST_Transform(r.g, {srid})), 3) "
                "AS g, NULL::text AS reason "
                "FROM {table} p, (SELECT ST_GeomFromEWKB(%s) AS g) r "
                "WHERE p.{code} = ANY(%s) AND p.geom && r.g AND ST_Intersects(p.geom, r.g)").format(
                code=sql.Identifier(code_col), srid=lit, table=table_id(land_use)), (region, inputs["allowed_codes"]))
            steps = [(lid, "inside") for lid in inputs["inside"]] + [(lid, "outside") for lid in inputs["outside"]]
            for k, (lid, how) in enumerate(steps):
                ctx.progress(10 + int(60 * k / max(1, len(steps))), f"正在叠加 {reg.get(lid).name_zh}")
                union = sql.SQL("(SELECT ST_Union(ST_Transform(x.geom, {srid})) FROM {t} x "
                                "WHERE x.geom && ST_Transform(pieces.g, 4490))").format(
                                    srid=lit, t=table_id(reg.get(lid)))
                op = (sql.SQL("ST_Intersection(g, coalesce({u}, 'POLYGON EMPTY'::geometry))") if how == "inside"
                      else sql.SQL("coalesce(ST_Difference(g, {u}), g)")).format(u=union)
                cur.execute(sql.SQL("UPDATE pieces SET g = ST_CollectionExtract({op}, 3) WHERE NOT ST_IsEmpty(g)")
                            .format(op=op))
                if k + 1 in (len(inputs["inside"]), len(steps)):  # after the inside steps, after all steps
                    cur.execute("UPDATE pieces SET reason = %s WHERE reason IS NULL AND ST_Area(g) = 0",
                                ("outside" if k + 1 == len(inputs["inside"]) else "control_line",))
            cur.execute("SELECT fid, bsm, code, reason FROM pieces WHERE reason IS NOT NULL ORDER BY fid")
            dropped = cur.fetchall()
            ctx.progress(75, "正在计算道路距离 (road distances)")
            cur.execute(sql.SQL("""
SELECT fid, bsm, code, part, ST_Area(g), ST_Area(ST_Transform(g, 4490)::geography, true),
       (SELECT min(ST_Distance(ST_Transform(r.geom, {srid}), parts.g)) FROM {roads} r
        WHERE r.geom && ST_Transform(ST_Expand(parts.g, %s + 1), 4490)),
       ST_AsGeoJSON(ST_Transform(g, 4490), 9)
FROM (SELECT fid, bsm, code, (row_number() OVER (PARTITION BY fid ORDER BY ST_Area(d.geom) DESC,
             ST_XMin(d.geom), ST_YMin(d.geom))) - 1 AS part, d.geom AS g
      FROM pieces, ST_Dump(pieces.g) d WHERE NOT ST_IsEmpty(pieces.g)) parts
ORDER BY fid, part""").format(srid=lit, roads=table_id(reg.get(inputs["road_layer"]))),
                        (inputs["max_road_distance_m"],))
            rows = cur.fetchall()
        return [self._collection(inputs, rows, dropped, srid)]

    def _collection(self, inputs: dict, rows: list[tuple], dropped: list[tuple], srid: int) -> Output:
        import json

        lo, hi, dmax = inputs["min_area_m2"], inputs["max_area_m2"], inputs["max_road_distance_m"]
        good = []
        rejected = [{"fid": fid, "bsm": bsm, "code": code, "part": None, "reason": reason}
                    for fid, bsm, code, reason in dropped]
        for fid, bsm, code, part, planar, ell, dist, geojson in rows:
            reason = None
            if not lo <= planar <= hi:
                reason = "area"
            elif dist is None or dist > dmax:
                reason = "road_distance"
            item = {"fid": fid, "bsm": bsm, "code": code, "part": int(part), "area": areas(planar, ell, srid),
                    "road_distance_m": dist}
            if reason:
                rejected.append(item | {"reason": reason})
            else:
                good.append((item, geojson))
        good.sort(key=lambda g: (g[0]["road_distance_m"], -g[0]["area"]["planar"]["m2"], g[0]["bsm"] or ""))
        features = []
        for rank, (item, geojson) in enumerate(good, start=1):
            reasons = [f"位于{'、'.join(inputs['inside_titles'])}内",
                       "避让全部约束图层 (outside every constraint layer)",
                       f"用地代码 {item['code']} 属允许范围", f"面积 {item['area']['planar']['m2']:.0f} 平方米在范围内",
                       f"距道路 {item['road_distance_m']:.1f} 米"]
            props = json.dumps(item | {"rank": rank, "reasons": reasons}, ensure_ascii=False)
            features.append(f'{{"type":"Feature","id":{rank},"geometry":{geojson},"properties":{props}}}')
        meta = json.dumps({"constraints": {k: inputs[k] for k in ("inside", "outside", "land_use_layer",
                                                                   "allowed_codes", "min_area_m2", "max_area_m2",
                                                                   "road_layer", "max_road_distance_m")},
                           "region": inputs["region"].get("xzqdm"), "numberMatched": len(features),
                           "rejected": rejected}, ensure_ascii=False)
        body = '{"type":"FeatureCollection","features":[' + ",".join(features) + '],"selection":' + meta + "}"
        return Output("candidates", "application/geo+json", body.encode())


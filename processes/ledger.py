"""``ledger`` (台账): area statistics of a polygon layer by code and by town, as JSON and CSV.

Areas of each (code, town) cell are the features' parts inside that town (a feature across a town border is
split between the towns), planar in the Gauss-Kruger zone and ellipsoidal on GRS80.
"""

from __future__ import annotations

import csv
import io

from psycopg2 import sql

from lantu.processes.base import Env, InvalidInput, LantuProcessor, RunContext, json_output, plain_value, reject_unknown
from lantu.processes.jobs import Output
from lantu.processes.overlay import areas
from lantu.processes.region import aoi_ewkb, aoi_input
from lantu.providers.tables import table_id


def code_field(layer) -> str | None:
    """The classification field of a layer: the one its style classifies by, else the first with a code list."""
    if layer.style.classify_by:
        return layer.style.classify_by
    for f in layer.fields:
        if f.code_list and f.code not in ("XZQDM", "YSDM"):
            return f.code
    return None


class Ledger(LantuProcessor):
    METADATA = {
        "version": "1.0.0",
        "id": "ledger",
        "title": {"zh": "面积台账统计", "en": "Area ledger"},
        "description": {"zh": "按分类代码和乡镇统计图层面积（平面、椭球，平方米、亩、公顷），输出 JSON 与 CSV。",
                        "en": "Areas of a polygon layer by classification code and by town (planar and "
                              "ellipsoidal, in m², mu and ha), as JSON and CSV."},
        "keywords": ["台账", "面积统计", "ledger"],
        "jobControlOptions": ["sync-execute", "async-execute"],
        "outputTransmission": ["value", "reference"],
        "links": [],
        "inputs": {
            "layer": {"title": "图层 (layer id)", "schema": {"type": "string"}, "minOccurs": 1, "maxOccurs": 1},
            "code_field": {"title": "分类字段 (classification field)", "description": "default: the layer's "
                           "classification field (e.g. YDDM of planned_land_use)",
                           "schema": {"type": "string"}, "minOccurs": 0, "maxOccurs": 1},
            "aoi": {"title": "统计范围 (area: XZQDM or polygon)", "schema": {"oneOf": [{"type": "string"},
                    {"type": "object"}]}, "minOccurs": 0, "maxOccurs": 1},
            "crs": {"title": "aoi 的坐标参照系", "schema": {"type": "string", "format": "uri"},
                    "minOccurs": 0, "maxOccurs": 1},
        },
        "outputs": {
            "table": {"title": "台账 (ledger)", "schema": {"type": "object", "contentMediaType": "application/json"}},
            "csv": {"title": "台账 CSV", "schema": {"type": "string", "contentMediaType": "text/csv"}},
        },
        "example": {"inputs": {"layer": "planned_land_use"}},
    }

    def validate(self, inputs: dict, env: Env) -> dict:
        reject_unknown(inputs, set(self.METADATA["inputs"]))
        layer_id = plain_value(inputs, "layer")
        layer = env.registry.get(layer_id) if isinstance(layer_id, str) else None
        if layer is None or not layer.is_vector:
            raise InvalidInput("layer", f"unknown layer {str(layer_id)[:60]!r}")
        if layer.geometry not in ("Polygon", "MultiPolygon"):
            raise InvalidInput("layer", f"{layer.id} is a {layer.geometry} layer; a ledger sums polygon areas")
        field = plain_value(inputs, "code_field") or code_field(layer)
        if not isinstance(field, str) or layer.field(field) is None:
            raise InvalidInput("code_field", f"{layer.id} has no field {str(field)[:40]!r}")
        return {"layer": layer.id, "code_field": field, "aoi": aoi_input(inputs, "aoi", env)}

    def layers_needed(self, inputs: dict, registry) -> dict[str, list[str]]:
        return {"download": [inputs["layer"]]}

    def run(self, inputs: dict, ctx: RunContext) -> list[Output]:
        layer = ctx.registry.get(inputs["layer"])
        fdef = layer.field(inputs["code_field"])
        srid = ctx.settings.planar_srid
        ewkb = aoi_ewkb(inputs["aoi"])
        ctx.progress(10, f"正在统计 {layer.name_zh}")
        query = sql.SQL("""
WITH aoi AS (SELECT {aoi}::geometry AS g),
towns AS MATERIALIZED (SELECT xzqdm, xzqmc, geom FROM blueprint.admin_divisions),
cells AS (
  SELECT f.{code} AS code, t.xzqdm, t.xzqmc, f.fid,
         CASE WHEN ST_Covers(t.geom, f.geom) THEN f.geom ELSE ST_Intersection(t.geom, f.geom) END AS g
  FROM {table} f JOIN towns t ON t.geom && f.geom AND ST_Intersects(t.geom, f.geom), aoi
  WHERE aoi.g IS NULL OR (f.geom && aoi.g AND ST_Intersects(f.geom, aoi.g))
),
clipped AS (
  SELECT c.code, c.xzqdm, c.xzqmc, c.fid,
         ST_CollectionExtract(CASE WHEN aoi.g IS NULL THEN c.g ELSE ST_Intersection(c.g, aoi.g) END, 3) AS g
  FROM cells c, aoi
)
SELECT code, xzqdm, xzqmc, count(DISTINCT fid), sum(ST_Area(ST_Transform(g, {srid}))),
       sum(ST_Area(g::geography, true))
FROM clipped WHERE NOT ST_IsEmpty(g)
GROUP BY code, xzqdm, xzqmc ORDER BY code, xzqdm""").format(
            aoi=sql.SQL("ST_GeomFromEWKB(%s)") if ewkb else sql.SQL("NULL"), code=sql.Identifier(fdef.column),
            table=table_id(layer), srid=sql.Literal(srid))
        with ctx.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SET LOCAL max_parallel_workers_per_gather = 0")
            cur.execute(query, [ewkb] if ewkb else [])
            rows = cur.fetchall()
        ctx.progress(90, "正在输出 (writing)")
        names = self._code_names(ctx, fdef)
        table = [{"code": code, "name": names.get(code or "", ""), "xzqdm": xzqdm, "xzqmc": xzqmc, "features": n,
                  "area": areas(planar or 0.0, ell or 0.0, srid)} for code, xzqdm, xzqmc, n, planar, ell in rows]
        by_code: dict[str, list[float]] = {}
        for r in table:
            acc = by_code.setdefault(r["code"] or "", [0.0, 0.0])
            acc[0] += r["area"]["planar"]["m2"]
            acc[1] += r["area"]["ellipsoidal"]["m2"]
        doc = {"layer": layer.id, "layer_title": layer.name_zh, "code_field": fdef.code, "code_title": fdef.name_zh,
               "rows": table, "by_code": {c: {"name": names.get(c, ""), "area": areas(p, e, srid)}
                                          for c, (p, e) in sorted(by_code.items())},
               "total": areas(sum(v[0] for v in by_code.values()), sum(v[1] for v in by_code.values()), srid)}
        return [json_output("table", doc), Output("csv", "text/csv; charset=utf-8", ledger_csv(doc))]

    @staticmethod
    def _code_names(ctx: RunContext, fdef) -> dict[str, str]:
        cl = ctx.registry.code_lists.get(fdef.code_list or "")
        return {c: v.name_zh for c, v in cl.codes.items()} if cl else {}


def ledger_csv(doc: dict) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([doc["code_field"], "名称", "XZQDM", "乡镇", "要素数", "平面面积_平方米", "平面面积_亩",
                     "平面面积_公顷", "椭球面积_平方米", "椭球面积_亩", "椭球面积_公顷"])
    for r in doc["rows"]:
        p, e = r["area"]["planar"], r["area"]["ellipsoidal"]
        writer.writerow([r["code"], r["name"], r["xzqdm"], r["xzqmc"], r["features"],
                         f"{p['m2']:.2f}", f"{p['mu']:.4f}", f"{p['ha']:.4f}",
                         f"{e['m2']:.2f}", f"{e['mu']:.4f}", f"{e['ha']:.4f}"])
    # UTF-8 with BOM: Excel on Chinese Windows opens it with the right encoding.
    return ("\ufeff" + out.getvalue()).encode("utf-8")

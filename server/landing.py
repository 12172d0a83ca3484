"""The landing page: what this server is, its endpoints and the layers of the blueprint (HTML or JSON)."""

from __future__ import annotations

from itertools import groupby

from flask import Blueprint, Response, json, render_template, request

from lantu.server.context import lantu

bp = Blueprint("landing", __name__)

GROUP_TITLES = {
    "planning": ("规划成果", "Plans"), "projects": ("建设项目审批", "Project approval"),
    "status": ("现状数据", "Current status"), "blueprint": ("多规合一成果", "One blueprint"),
    "basemap": ("基础地理信息", "Base map"), "open_data": ("新型开放数据", "Open data"),
    "statistics": ("统计信息", "Statistics"), "indicators": ("规划核心指标", "Core indicators"),
}


def wants_json() -> bool:
    if request.args.get("f") in ("json", "application/json"):
        return True
    if request.args.get("f") == "html":
        return False
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def landing_document() -> dict:
    ctx = lantu()
    base = ctx.settings.public_url
    layers = [{"id": layer.id, "title": layer.name_zh, "title_en": layer.title_en, "group": layer.group,
               "subgroup": layer.subgroup, "kind": layer.kind, "geometry": layer.geometry,
               "control_line": layer.control_line} for layer in ctx.registry]
    return {
        "title": "蓝图 Lantu — 多规合一一张图服务 (multi-plan integration service server)",
        "description": "OGC-standard services of the county's one blueprint in CGCS2000 (EPSG:4490).",
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/?f=json"},
            {"rel": "alternate", "type": "text/html", "href": f"{base}/?f=html"},
            {"rel": "service-status", "type": "application/json", "href": f"{base}/healthz"},
        ],
        "layers": layers,
    }


@bp.get("/")
def landing() -> Response:
    doc = landing_document()
    if wants_json():
        return Response(json.dumps(doc, ensure_ascii=False), mimetype="application/json")
    groups = [(GROUP_TITLES.get(g, (g, g)), list(items))
              for g, items in groupby(doc["layers"], key=lambda item: item["group"])]
    return Response(render_template("landing.html", doc=doc, groups=groups), mimetype="text/html")

"""The 一张蓝图 viewer: ``/viewer`` (one HTML page, MapLibre GL JS served by Lantu) and ``/viewer/config.json``.

The page is a thin client over Lantu's standard endpoints — the blueprint vector tileset (OGC API – Tiles,
WebMercatorQuad), WMTS for the raster base maps, OGC API – Features for identify and search, OGC API –
Processes for the control-line and conflict checks. The only viewer-specific document is ``config.json``:
the layer tree and its styles as the registry describes them (groups, 中文 names, colours, min/max zoom,
fields with their 中文 names). Which layers a caller sees is decided by ``/collections`` (the access gate),
not by this file: the page shows a registry layer only when ``/collections`` lists it for that caller.
"""

from __future__ import annotations

import re

from flask import Blueprint, Response, render_template

from lantu.config.mapfile import GROUP_TITLES, classify_rules
from lantu.config.registry import Layer, Registry
from lantu.server.context import lantu
from lantu.server.formats import json_response

bp = Blueprint("viewer", __name__)

GROUP_ORDER = ("planning", "projects", "status", "blueprint", "basemap")
GROUP_TITLES_EN = {"planning": "Planning", "projects": "Project approval", "status": "Current status",
                   "blueprint": "Multi-plan integration", "basemap": "Base maps"}
# Raster base maps from Lantu's WMTS (MapProxy): registry raster layer → WMTS layers drawn for it.
# 电子地图 is "rendered from the status layers" (registry): Lantu's WMTS renders those with the mapfile styles.
BASEMAPS = {
    "electronic_map": ("current_land_use", "road_network", "admin_boundaries"),
    "dem": ("dem_hillshade",),
}
BASEMAP_MIN_ZOOM = {"current_land_use": 10}
# Drawn on at first load: the electronic base map, the hillshade and the administrative boundaries.
DEFAULT_ON = ("electronic_map", "dem", "admin_boundaries")
TILES = "tiles/blueprint/WebMercatorQuad/{z}/{y}/{x}"
WMTS = "wmts/{layer}/WebMercatorQuad/{z}/{x}/{y}.png"


def _classes(layer: Layer, registry: Registry) -> dict | None:
    """``classify_by`` colours as (field, [[kind, value, colour, legend]]): kind ``eq`` or ``prefix``, first match
    wins — the same rules the WMS mapfile uses."""
    field = layer.style.classify_by
    fdef = layer.field(field) if field else None
    if not fdef or not fdef.code_list or fdef.code_list not in registry.code_lists:
        return None
    rules = []
    for rule in classify_rules(registry.code_lists[fdef.code_list]):
        m = re.fullmatch(r"\^(.*?)(\$?)", rule.regex or "")
        if not m:
            continue
        value = re.sub(r"\\(.)", r"\1", m[1])
        rules.append(["eq" if m[2] else "prefix", value, rule.fill, rule.name])
    return {"field": field, "rules": rules}


def _layer_entry(layer: Layer, registry: Registry) -> dict:
    style = layer.style
    entry = {
        "id": layer.id, "name_zh": layer.name_zh, "title_en": layer.title_en, "kind": layer.kind,
        "geometry": layer.geometry, "min_zoom": layer.min_zoom or 0, "max_zoom": layer.max_zoom,
        "control_line": layer.control_line, "default_on": layer.id in DEFAULT_ON,
        "style": {"stroke": style.stroke, "stroke_width": style.stroke_width, "fill": style.fill,
                  "fill_opacity": style.fill_opacity, "dash": list(style.dash), "hatch": style.hatch,
                  "point_size": style.point_size, "label_field": style.label_field},
        "fields": [{"code": f.code, "name_zh": f.name_zh} for f in layer.fields],
    }
    classes = _classes(layer, registry)
    if classes:
        entry["style"]["classes"] = classes
    if layer.id in BASEMAPS:
        entry["wmts"] = [{"layer": name, "min_zoom": BASEMAP_MIN_ZOOM.get(name, 0)} for name in BASEMAPS[layer.id]]
    return entry


def viewer_config(registry: Registry) -> dict:
    groups: dict[str, dict] = {}
    for layer in registry:
        if not (layer.is_vector or layer.id in BASEMAPS):
            continue  # catalog-only resources and rasters without a WMTS layer have nothing to draw
        group = groups.setdefault(layer.group, {
            "id": layer.group, "name_zh": GROUP_TITLES.get(layer.group, layer.group),
            "name_en": GROUP_TITLES_EN.get(layer.group, layer.group), "subgroups": {}})
        group["subgroups"].setdefault(layer.subgroup, []).append(_layer_entry(layer, registry))
    ordered = sorted(groups.values(), key=lambda g: GROUP_ORDER.index(g["id"]) if g["id"] in GROUP_ORDER else 99)
    return {
        "groups": [dict(g, subgroups=[{"name_zh": name, "layers": layers} for name, layers in g["subgroups"].items()])
                   for g in ordered],
        "tiles": TILES, "wmts": WMTS, "tileset": "tiles/blueprint/WebMercatorQuad",
        "county_layer": "admin_divisions", "town_fields": {"code": "XZQDM", "name": "XZQMC"},
        "processes": {"check": "control-line-check", "conflict": "conflict-check"},
    }


@bp.get("/viewer")
def viewer_page() -> Response:
    response = Response(render_template("viewer.html"), mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/viewer/config.json")
def viewer_config_json() -> Response:
    return json_response(viewer_config(lantu().registry))

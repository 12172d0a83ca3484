"""The 空间预审报告 (pre-review report) of a control-line check: HTML from a Jinja template, PDF with
WeasyPrint, and a map image rendered by Lantu's own WMS (the same mapfile and ``mapserv`` as ``/wms``:
over HTTP at the public URL, or by running ``mapserv`` directly when no server answers there), with the
project site outlined on top.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
from datetime import UTC, datetime
from urllib.parse import urlencode

import jinja2
import requests
import shapely

from lantu.processes.base import RunContext

log = logging.getLogger(__name__)
MAP_SIZE = (900, 640)
BASE_LAYERS = ("admin_boundaries",)
FONT_FAMILY = "'WenQuanYi Zen Hei', 'WenQuanYi Micro Hei', sans-serif"  # Zen Hei has 㮾 (U+3BBE)

_templates = jinja2.Environment(loader=jinja2.PackageLoader("lantu.processes", "templates"),
                                autoescape=jinja2.select_autoescape(["html"]))


def _map_bbox(bbox: list[float]) -> tuple[float, float, float, float]:
    """The site's bbox grown to the image's aspect ratio with a margin (lon/lat)."""
    minx, miny, maxx, maxy = bbox
    cx, cy = (minx + maxx) / 2, (miny + maxy) / 2
    w, h = max(maxx - minx, 1e-4) * 2.2, max(maxy - miny, 1e-4) * 2.2
    aspect = MAP_SIZE[0] / MAP_SIZE[1]
    w, h = max(w, h * aspect), max(h, w / aspect)
    return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2


def wms_params(layers: list[str], bbox: tuple[float, float, float, float]) -> dict[str, str]:
    return {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": ",".join(layers),
            "STYLES": "", "CRS": "CRS:84", "BBOX": ",".join(f"{v:.9f}" for v in bbox),
            "WIDTH": str(MAP_SIZE[0]), "HEIGHT": str(MAP_SIZE[1]), "FORMAT": "image/png", "TRANSPARENT": "FALSE"}


def get_map(ctx: RunContext, params: dict[str, str]) -> bytes | None:
    """A GetMap from Lantu's WMS: the running server first, else mapserv with the generated mapfile."""
    try:
        resp = requests.get(f"{ctx.settings.public_url}/wms", params=params, timeout=20)
        if resp.status_code == 200 and resp.headers.get("Content-Type", "").startswith("image/png"):
            return resp.content
    except requests.RequestException:
        pass
    from lantu.config.mapfile import CONFIG_NAME

    config = ctx.settings.home / "mapserver" / CONFIG_NAME
    if not config.exists():
        from lantu.server.mapserver_pool import write_ows_config

        write_ows_config(ctx.settings, ctx.registry)
    env = {**os.environ, "MAPSERVER_CONFIG_FILE": str(config), "REQUEST_METHOD": "GET",
           "QUERY_STRING": urlencode(params)}
    proc = subprocess.run(["mapserv"], env=env, capture_output=True, timeout=60)
    head, _, body = proc.stdout.partition(b"\r\n\r\n")
    if b"image/png" not in head:
        log.warning("report map: mapserv answered %s", proc.stdout[:300])
        return None
    return body


def map_image(ctx: RunContext, result: dict, site_ewkb: bytes) -> str | None:
    """PNG data URI of the map around the site, or None when the WMS could not render it."""
    from PIL import Image, ImageDraw

    bbox = _map_bbox(result["site"]["bbox"])
    shown = [lid for lid, e in result["layers"].items() if e["features"] or e["nearby"]]
    png = get_map(ctx, wms_params([*BASE_LAYERS, *shown], bbox))
    if png is None:
        return None
    image = Image.open(io.BytesIO(png)).convert("RGB")
    draw = ImageDraw.Draw(image)
    minx, miny, maxx, maxy = bbox

    def px(xy):
        return ((xy[0] - minx) / (maxx - minx) * MAP_SIZE[0], (maxy - xy[1]) / (maxy - miny) * MAP_SIZE[1])

    for poly in shapely.get_parts(shapely.from_wkb(site_ewkb)):
        for ring in [poly.exterior, *poly.interiors]:
            draw.line([px(c) for c in ring.coords], fill=(230, 0, 0), width=4)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def render_report(ctx: RunContext, result: dict, site_ewkb: bytes) -> tuple[str, bytes]:
    from weasyprint import HTML

    image = map_image(ctx, result, site_ewkb)
    html = _templates.get_template("report.html").render(
        r=result, map_image=image, font_family=FONT_FAMILY, job_id=ctx.job_id or "",
        made=datetime.now(UTC).astimezone().strftime("%Y-%m-%d %H:%M"),
        srid=ctx.settings.planar_srid, registry=ctx.registry)
    pdf = HTML(string=html).write_pdf()
    return html, pdf

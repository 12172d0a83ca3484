"""MapProxy configuration generated from the registry: WMTS (KVP and REST) and TMS of every vector layer
and the raster layers, cached on disk, rendered by Lantu's own MapServer mapfile.

Grids: WebMercatorQuad and CGCS2000Quad. CGCS2000Quad is the 天地图 ``c`` grid (EPSG:4490, origin
upper-left at (−180, 90)); MapProxy numbers levels from 0, so a level 0 of one 256-pixel tile over 360° is
added in front: MapProxy's level n is then 天地图's level n (level 1 = 2 × 1 tiles of 0.703125°/pixel).
The source is MapProxy's ``mapserver`` source (mapserv run as CGI on a cache miss) so that MapProxy never
calls back into Lantu over HTTP.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import yaml

from lantu.config.registry import Registry
from lantu.config.settings import Settings

CGCS2000_LEVELS = 21  # level 0 (padding) + 天地图 levels 1–20
WEB_MERCATOR_LEVELS = 21
GRIDS = ("WebMercatorQuad", "CGCS2000Quad")


def grids_config() -> dict:
    return {
        "WebMercatorQuad": {"base": "GLOBAL_WEBMERCATOR", "num_levels": WEB_MERCATOR_LEVELS},
        "CGCS2000Quad": {"srs": "EPSG:4490", "bbox": [-180, -90, 180, 90], "bbox_srs": "EPSG:4490",
                         "origin": "ul", "tile_size": [256, 256],
                         "res": [1.40625 / 2 ** level for level in range(CGCS2000_LEVELS)]},
    }


def mapproxy_config(registry: Registry, settings: Settings, mapfile: Path, raster_layers: list[str]) -> dict:
    cache_dir = settings.home / "cache" / "wmts"
    layers, caches, sources = [], {}, {}
    names = [(layer.id, layer.name_zh, layer.title_en) for layer in registry.vector_layers()]
    names += [(lid, registry.get(lid).name_zh if registry.get(lid) else lid,
               registry.get(lid).title_en if registry.get(lid) else lid) for lid in raster_layers]
    for lid, title_zh, title_en in names:
        sources[f"{lid}_ms"] = {"type": "mapserver", "req": {"map": str(mapfile), "layers": lid,
                                                             "transparent": True},
                                "coverage": {"bbox": [73, 3, 136, 54], "srs": "EPSG:4490"}}
        caches[f"{lid}_cache"] = {"grids": list(GRIDS), "sources": [f"{lid}_ms"], "format": "image/png",
                                  # {base_dir}/{cache}/{grid}/{z}/{x}/{y}.png (tiles/wmts_cache.py relies on it)
                                  "cache": {"type": "file", "directory_layout": "tms", "use_grid_names": True}}
        layers.append({"name": lid, "title": f"{title_zh} {title_en}", "sources": [f"{lid}_cache"]})
    return {
        "globals": {
            "mapserver": {"binary": shutil.which("mapserv") or "/usr/bin/mapserv",
                          "working_dir": str(mapfile.parent)},
            "cache": {"base_dir": str(cache_dir), "lock_dir": str(cache_dir / "locks"),
                      "tile_lock_dir": str(cache_dir / "tile_locks")},
            "image": {"paletted": False},
            "srs": {"axis_order_ne": ["EPSG:4490", "EPSG:4326"] + [f"EPSG:{c}" for c in range(4513, 4555)],
                    "axis_order_en": ["CRS:84", "EPSG:3857"]},
        },
        "services": {
            "wmts": {"restful": True, "kvp": True,
                     "md": {"title": "蓝图 Lantu 一张图 WMTS", "abstract": "Cached map tiles of the one blueprint "
                            "(CGCS2000); synthetic demo data, not for production.",
                            "online_resource": settings.public_url, "access_constraints": "none", "fees": "none",
                            # a ServiceProvider section: harvesters (pycsw's WMTS parser) require one
                            "contact": {"organization": "自然资源和规划局 (planning bureau)", "country": "CN",
                                        "position": "GIS"}}},
            "tms": {"use_grid_names": True, "origin": "nw"},
        },
        "grids": grids_config(),
        "layers": layers,
        "caches": caches,
        "sources": sources,
    }


def write_mapproxy_config(registry: Registry, settings: Settings, mapfile: Path,
                          raster_layers: list[str] | None = None) -> Path:
    """Write ``$LANTU_HOME/mapproxy/mapproxy.yaml``. MapProxy runs mapserv with its own environment, so
    the process serving MapProxy must have MAPSERVER_CONFIG_FILE set (server/wmts.py does)."""
    doc = mapproxy_config(registry, settings, mapfile, raster_layers or [])
    out = settings.home / "mapproxy" / "mapproxy.yaml"
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".mapproxy.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(doc, fh, allow_unicode=True, sort_keys=False)
    os.replace(tmp, out)
    return out


def seed_config(layer_id: str, levels: tuple[int, int], bbox: tuple[float, float, float, float],
                grids: tuple[str, ...] = GRIDS) -> dict:
    """A mapproxy-seed configuration for one layer's cache over a lon/lat bbox and a level range."""
    return {"coverages": {"area": {"bbox": list(bbox), "srs": "EPSG:4490"}},
            "seeds": {"lantu": {"caches": [f"{layer_id}_cache"], "grids": list(grids),
                                "levels": {"from": levels[0], "to": levels[1]}, "coverages": ["area"]}}}

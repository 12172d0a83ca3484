"""The collections Lantu serves and their OGC API metadata, with pygeoapi as the scaffolding.

The pygeoapi ``API`` object is built in memory from the registry (no YAML on disk) and answers the landing
page and collection descriptions; Lantu then corrects what pygeoapi 0.21 gets wrong or does not know
(extents from the data, links to endpoints Lantu does not serve). Extents are recomputed whenever the change
log has moved on, so they stay current after loads without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Request
from pygeoapi.api import API, APIRequest, describe_collections, landing_page

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.providers import crs as crs_mod
from lantu.providers.changelog import current_change
from lantu.providers.features import FeatureSource, extent, source_from_layer
from lantu.providers.pool import Pool

REFRESH_CHECK_S = 1.0
CHINA_BBOX = [73.0, 3.0, 136.0, 54.0]  # extent of an empty layer: the CGCS2000 area of use, roughly
DROPPED_LINK_TYPES = {"application/ld+json"}
DROPPED_LINK_RELS = {"http://www.opengis.net/def/rel/ogc/1.0/schema"}


@dataclass(frozen=True)
class CollectionInfo:
    source: FeatureSource
    title_zh: str
    title_en: str
    description_zh: str
    description_en: str
    keywords: tuple[str, ...]


def infos_from_registry(registry: Registry) -> dict[str, CollectionInfo]:
    infos = {layer.id: CollectionInfo(source_from_layer(layer), layer.name_zh, layer.title_en,
                                      layer.metadata.abstract_zh + " " + layer.metadata.synthetic_note,
                                      layer.metadata.abstract_en, layer.metadata.keywords)
             for layer in registry.vector_layers()}
    indicators = registry.get("core_indicators")
    if indicators is not None:  # non-spatial: the yearly indicator snapshots (issue 11)
        from lantu.processes.indicators import snapshot_source

        infos[indicators.id] = CollectionInfo(
            snapshot_source(), indicators.name_zh, indicators.title_en,
            "规划核心指标年度快照：每个指标、年度、行政区一条记录（值、目标、差距、状态、较上年变化），无几何。",
            "Yearly snapshots of the core planning indicators: one record per indicator, year and "
            "administrative unit (value, target, gap, status, change on the previous year); no geometry.",
            indicators.metadata.keywords)
    return infos


def coverage_files(settings: Settings) -> dict[str, Path]:
    """Raster layers served as OGC API – Coverages collections (the demo DEM when it exists)."""
    dem = settings.home / "demo" / "dem.tif"
    return {"dem": dem} if dem.exists() else {}


def coverage_resource(cid: str, path: Path, registry: Registry) -> dict:
    import rasterio

    with rasterio.open(path) as data:
        bounds = list(data.bounds)
    layer = registry.get(cid)
    title_zh, title_en = (layer.name_zh, layer.title_en) if layer else (cid, cid)
    return {"type": "collection", "title": {"zh": title_zh, "en": title_en},
            "description": {"zh": f"{title_zh}（合成演示数据）", "en": f"{title_en} (synthetic demo data)"},
            "keywords": [title_zh, title_en, "DEM", "coverage"],
            "extents": {"spatial": {"bbox": bounds, "crs": crs_mod.CRS84_URI}},
            "providers": [{"type": "coverage", "name": "rasterio", "data": str(path),
                           "format": {"name": "GTiff", "mimetype": "application/tiff"}}]}


def pygeoapi_config(settings: Settings, infos: Mapping[str, CollectionInfo],
                    extents: Mapping[str, list[float]], coverages: Mapping[str, dict] | None = None) -> dict:
    resources = dict(coverages or {})
    for cid, info in infos.items():
        resources[cid] = {
            "type": "collection",
            "title": {"zh": info.title_zh, "en": info.title_en},
            "description": {"zh": info.description_zh, "en": info.description_en},
            "keywords": list(info.keywords),
            "extents": {"spatial": {"bbox": extents.get(cid, CHINA_BBOX), "crs": crs_mod.CRS84_URI}},
            "providers": [{
                "type": "feature", "name": "lantu.providers.pygeoapi_provider.LantuFeatureProvider",
                "data": {"collection": cid}, "id_field": info.source.id_column,
                "crs": crs_mod.OFFERED_URIS, "storage_crs": crs_mod.EPSG_URI.format(info.source.srid),
            }],
        }
    return {
        "server": {"bind": {"host": "127.0.0.1", "port": 8080}, "url": settings.public_url,
                   "mimetype": "application/json; charset=UTF-8", "encoding": "utf-8",
                   "languages": ["zh-CN", "en-US"], "pretty_print": False,
                   "limits": {"default_items": settings.default_limit, "max_items": settings.max_limit},
                   "map": {"url": "", "attribution": ""}},
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": {"zh": "蓝图 多规合一一张图服务", "en": "Lantu one-blueprint services"},
                "description": {"zh": "县级国土空间规划“一张图”的 OGC 标准服务（CGCS2000）。",
                                "en": "OGC-standard services of the county's one blueprint in CGCS2000."},
                "keywords": ["多规合一", "一张图", "国土空间规划", "CGCS2000", "OGC API"],
                "terms_of_service": settings.public_url, "url": settings.public_url},
            "license": {"name": "演示数据为合成数据，不得用于生产 (synthetic demo data)", "url": settings.public_url},
            "provider": {"name": "自然资源和规划局 (planning bureau)", "url": settings.public_url},
            "contact": {"name": "GIS", "position": "GIS", "address": "", "city": "", "stateorprovince": "",
                        "postalcode": "", "country": "CN", "phone": "", "fax": "", "email": "", "url": "",
                        "hours": "", "instructions": "", "role": "pointOfContact"},
        },
        "resources": resources,
    }


class Collections:
    """The served collections, their extents and the pygeoapi API object (rebuilt when data changed)."""

    def __init__(self, settings: Settings, infos: Mapping[str, CollectionInfo], pool_getter,
                 registry: Registry | None = None):
        self.settings = settings
        self.registry = registry
        self.coverages: dict[str, dict] = {}
        self.infos = dict(infos)
        self._pool_getter = pool_getter
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._version: int | None = -1
        self._api: API | None = None
        self.extents: dict[str, list[float]] = {}
        self._unaccent: str | None = None

    @property
    def pool(self) -> Pool:
        return self._pool_getter()

    def unaccent(self) -> str | None:
        """Name of the unaccent() function for CQL2 ACCENTI, looked up once (None if not installed)."""
        if self._unaccent is None:
            from lantu.providers.cql2sql import detect_unaccent

            with self.pool.connection() as conn:
                self._unaccent = detect_unaccent(conn) or ""
        return self._unaccent or None

    def source(self, cid: str) -> FeatureSource | None:
        info = self.infos.get(cid)
        return info.source if info else None

    def api(self) -> API:
        now = time.monotonic()
        with self._lock:
            if self._api is None or now - self._checked_at > REFRESH_CHECK_S:
                self._checked_at = now
                version = current_change(self.pool)
                if self._api is None or version != self._version:
                    self.extents = {cid: list(box) for cid, info in self.infos.items()
                                    if (box := extent(self.pool, info.source))}
                    self.coverages = {cid: coverage_resource(cid, path, self.registry)
                                      for cid, path in coverage_files(self.settings).items()}
                    self._api = API(pygeoapi_config(self.settings, self.infos, self.extents, self.coverages), {})
                    self._version = version
            return self._api


def pygeoapi_request(request: Request, api: API) -> APIRequest:
    return APIRequest.from_flask(request, api.locales)


def clean_links(links: list[dict]) -> list[dict]:
    return [link for link in links
            if link.get("type") not in DROPPED_LINK_TYPES and link.get("rel") not in DROPPED_LINK_RELS]


def describe(api: API, request: Request, cid: str | None = None):
    return describe_collections(api, pygeoapi_request(request, api), cid)


def landing(api: API, request: Request):
    return landing_page(api, pygeoapi_request(request, api))

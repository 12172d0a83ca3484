"""Catalog records generated from the registry and the data: one ISO 19139 record per registry layer and one
per service Lantu runs. Each record is described as a pygeometa MCF dict and rendered by pygeometa; pycsw's
own parser then derives the repository columns (title, AnyText, bbox, links, …) from that XML, so what CSW
clients query is exactly what the XML says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote

from lantu.config.registry import Layer
from lantu.config.settings import Settings
from lantu.providers.catalog_store import LayerFacts

LANGUAGE, LANGUAGE_ALT = "zho", "eng"  # ISO 639-2; the alternate locale carries the English texts
CGCS2000 = 4490
UPDATE_CYCLES = {"年度": "annually", "五年": "irregular", "季度": "quarterly", "月度": "monthly", "实时": "continual",
                 "按需": "asNeeded", "每日": "daily", "每周": "weekly"}
ACCESS_TEXT = {"public": "公开 (public)", "internal": "内部共享，需授权 (internal: authorised users only)",
               "restricted": "受限，需专门授权 (restricted: named roles only)"}
GROUP_TOPICS = {"planning": "planningCadastre", "status": "planningCadastre", "approval": "planningCadastre",
                "base": "imageryBaseMapsEarthCover"}


@dataclass(frozen=True)
class Generated:
    """One generated record: its identifier and ISO 19139 XML (the datestamp filled in by the caller)."""

    identifier: str
    kind: str  # "layer" or "service"
    mcf: dict


def _ml(zh, en) -> dict:
    """A bilingual text for pygeometa: 中文 first, English as the alternate locale."""
    return {LANGUAGE: zh, LANGUAGE_ALT: en}


def layer_identifier(settings: Settings, layer_id: str) -> str:
    return f"{settings.catalog_id_prefix}:layer:{layer_id}"


def service_identifier(settings: Settings, name: str) -> str:
    return f"{settings.catalog_id_prefix}:service:{name}"


def _contact(settings: Settings, department: str | None = None) -> dict:
    organisation = settings.catalog_organisation
    if department is not None:
        organisation = f"{department}（{organisation}）"
    return {"organization": organisation, "url": settings.public_url, "email": settings.catalog_contact_email,
            "country": "CN", "positionname": "GIS"}


def _links_for_layer(layer: Layer, base: str) -> list[tuple[str, dict]]:
    """Every endpoint that serves the layer, as (key, MCF distribution entry)."""
    lid = quote(layer.id)
    title = _ml(layer.name_zh, layer.title_en)
    links: list[tuple[str, dict]] = []
    if layer.is_vector:
        links += [
            ("wms", {"url": f"{base}/wms", "type": "OGC:WMS", "name": layer.id, "function": "view",
                     "description": title}),
            ("wfs", {"url": f"{base}/wfs", "type": "OGC:WFS", "name": layer.id, "function": "download",
                     "description": title}),
            ("wmts", {"url": f"{base}/wmts/1.0.0/WMTSCapabilities.xml", "type": "OGC:WMTS", "name": layer.id,
                      "function": "view", "description": title}),
            ("features", {"url": f"{base}/collections/{lid}", "type": "OGC API - Features", "name": layer.id,
                          "function": "download", "description": title}),
            ("items", {"url": f"{base}/collections/{lid}/items?f=json", "type": "application/geo+json",
                       "name": layer.id, "function": "download", "description": title}),
            ("tiles", {"url": f"{base}/collections/{lid}/tiles", "type": "OGC API - Tiles", "name": layer.id,
                       "function": "view", "description": title}),
        ]
    elif layer.kind == "raster":
        links += [("wms", {"url": f"{base}/wms", "type": "OGC:WMS", "name": layer.id, "function": "view",
                           "description": title}),
                  ("wmts", {"url": f"{base}/wmts/1.0.0/WMTSCapabilities.xml", "type": "OGC:WMTS",
                            "name": layer.id, "function": "view", "description": title})]
        if layer.id == "dem":
            links.append(("coverage", {"url": f"{base}/collections/dem/coverage", "type": "OGC API - Coverages",
                                       "name": layer.id, "function": "download", "description": title}))
    links.append(("record", {"url": f"{base}/csw", "type": "OGC:CSW", "name": layer.id, "function": "information",
                             "description": _ml("资源目录", "catalogue")}))
    return links


def _lineage(layer: Layer, facts: LayerFacts) -> str:
    source = f"来源部门：{layer.metadata.department} (source department)"
    if facts.last_change is None:
        load = "尚未入库 (not loaded yet)"
    else:
        load = (f"最近入库：{facts.last_change.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%SZ}，方式 {facts.last_operation}，"
                f"操作人 {facts.last_who}，{facts.count} 个要素 (last load: operation {facts.last_operation}, "
                f"by {facts.last_who}, {facts.count} features)")
    return f"{source}；{load}；{layer.metadata.synthetic_note}"


def layer_mcf(settings: Settings, layer: Layer, facts: LayerFacts, county_extent: tuple | None) -> dict:
    meta = layer.metadata
    extent = facts.extent or county_extent or (73.0, 3.0, 136.0, 54.0)
    access = ACCESS_TEXT[layer.access.level] + (f"；角色 roles: {', '.join(layer.access.roles)}"
                                                if layer.access.roles else "")
    dates = {"creation": "2026-01-01"}
    if facts.last_change:
        dates["revision"] = facts.last_change.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Plain lists: pygeometa pairs a bilingual keyword list item by item, and the lists differ in length.
    keywords = {"default": {"keywords": [*meta.keywords, layer.title_en, "CGCS2000"], "keywords_type": "theme"},
                "place": {"keywords": ["长沙县", "Changsha County", "430121"], "keywords_type": "place"}}
    distribution = {key: value for key, value in _links_for_layer(layer, settings.public_url)}
    return {
        "mcf": {"version": "1.0"},
        "metadata": {"identifier": layer_identifier(settings, layer.id), "language": LANGUAGE,
                     "language_alternate": LANGUAGE_ALT, "charset": "utf8",
                     "hierarchylevel": "dataset" if layer.kind != "catalog" else "nonGeographicDataset",
                     "datestamp": "$datestamp$", "dataseturi": f"{settings.public_url}/collections/{quote(layer.id)}"},
        "spatial": {"datatype": "vector" if layer.is_vector else ("grid" if layer.kind == "raster" else "textTable"),
                    "geomtype": {"Point": "point", "LineString": "curve", "Polygon": "surface"}.get(
                        layer.geometry or "", "complex")},
        "identification": {
            "language": LANGUAGE, "charset": "utf8",
            "title": _ml(layer.name_zh, layer.title_en),
            "abstract": _ml(f"{meta.abstract_zh} {meta.synthetic_note}", meta.abstract_en),
            "dates": dates, "keywords": keywords,
            "topiccategory": [GROUP_TOPICS.get(layer.group, "planningCadastre")],
            "extents": {"spatial": [{"bbox": [round(v, 7) for v in extent], "crs": 4326}]},
            "accessconstraints": "otherRestrictions" if layer.access.level != "public" else "license",
            "rights": _ml(f"访问级别：{access}", f"access level: {layer.access.level}"),
            "maintenancefrequency": UPDATE_CYCLES.get(meta.update_cycle, "irregular"),
            "status": "onGoing",
        },
        "contact": {"pointOfContact": _contact(settings, meta.department), "distributor": _contact(settings)},
        "distribution": distribution,
        "dataquality": {"scope": {"level": "dataset"}, "lineage": {"statement": _lineage(layer, facts)}},
    }


@dataclass(frozen=True)
class Service:
    name: str
    title_zh: str
    title_en: str
    abstract_en: str
    protocol: str
    path: str
    keywords: tuple[str, ...]


def services(process_ids: Mapping[str, tuple[str, str]]) -> list[Service]:
    """The services Lantu runs; ``process_ids``: id → (中文 title, English title) of each process."""
    fixed = [
        Service("wms", "一张图 网络地图服务 (WMS)", "One-blueprint Web Map Service",
                "WMS 1.3.0 and 1.1.1 by MapServer: every layer of the registry, planning-map styles, GetFeatureInfo.",
                "OGC:WMS", "/wms?service=WMS&request=GetCapabilities", ("WMS", "地图服务")),
        Service("wfs", "一张图 网络要素服务 (WFS)", "One-blueprint Web Feature Service",
                "WFS 2.0 and 1.1 by MapServer: every vector layer as GML 3.2 or GeoJSON.", "OGC:WFS",
                "/wfs?service=WFS&request=GetCapabilities",
                ("WFS", "要素服务")),
        Service("wmts", "一张图 瓦片地图服务 (WMTS)", "One-blueprint Web Map Tile Service",
                "WMTS 1.0 (KVP and REST) by MapProxy, grids WebMercatorQuad and CGCS2000Quad (天地图 levels).",
                "OGC:WMTS", "/wmts/1.0.0/WMTSCapabilities.xml", ("WMTS", "瓦片服务")),
        Service("features", "一张图 要素服务 (OGC API – Features)", "One-blueprint OGC API – Features",
                "Every vector layer as an OGC API – Features collection with CQL2 filters and CRS84/CGCS2000 output.",
                "OGC API - Features", "/collections", ("OGC API", "要素服务")),
        Service("tiles", "一张图 矢量瓦片服务 (OGC API – Tiles)", "One-blueprint OGC API – Tiles",
                "Vector tiles (MVT) of every layer and of the combined blueprint.", "OGC API - Tiles",
                "/tiles", ("OGC API", "矢量瓦片")),
        Service("records", "资源目录服务 (CSW)", "Resource catalogue (CSW 2.0.2 / 3.0)", "This catalogue.",
                "OGC:CSW", "/csw?service=CSW&request=GetCapabilities", ("CSW", "资源目录")),
    ]
    processes = [Service(f"process-{pid}", f"{zh}（功能服务）", f"{en} (OGC API – Processes)",
                         f"The {pid} process of OGC API – Processes.", "OGC API - Processes", f"/processes/{pid}",
                         ("OGC API – Processes", "功能服务", zh))
                 for pid, (zh, en) in process_ids.items()]
    return fixed + processes


def service_mcf(settings: Settings, service: Service, county_extent: tuple | None) -> dict:
    url = settings.public_url + service.path
    extent = county_extent or (73.0, 3.0, 136.0, 54.0)
    return {
        "mcf": {"version": "1.0"},
        "metadata": {"identifier": service_identifier(settings, service.name), "language": LANGUAGE,
                     "language_alternate": LANGUAGE_ALT, "charset": "utf8", "hierarchylevel": "service",
                     "datestamp": "$datestamp$", "dataseturi": url},
        "spatial": {"datatype": "textTable", "geomtype": "complex"},
        "identification": {
            "language": LANGUAGE, "charset": "utf8",
            "title": _ml(service.title_zh, service.title_en),
            "abstract": _ml(f"{service.title_zh}：蓝图 一张图 的标准服务。", service.abstract_en),
            "dates": {"creation": "2026-01-01"},
            "keywords": {"default": {"keywords": [*service.keywords, "多规合一", "一张图", "service",
                                                  service.protocol],
                                     "keywords_type": "theme"}},
            "topiccategory": ["planningCadastre"],
            "extents": {"spatial": [{"bbox": [round(v, 7) for v in extent], "crs": 4326}]},
            "accessconstraints": "license",
            "rights": _ml("按图层的访问级别授权", "per-layer access levels apply"),
            "maintenancefrequency": "continual", "status": "onGoing",
        },
        "contact": {"pointOfContact": _contact(settings), "distributor": _contact(settings)},
        "distribution": {service.name: {"url": url, "type": service.protocol, "name": service.name,
                                        "function": "information",
                                        "description": _ml(service.title_zh, service.title_en)}},
        "dataquality": {"scope": {"level": "service"},
                        "lineage": {"statement": "由蓝图按图层注册表生成 (generated by Lantu from its registry)"}},
    }


@cache
def _template():
    """pygeometa's ISO 19139 template in one Jinja environment kept for the process. pygeometa's
    ``render_j2_template`` builds (and compiles the templates into) a new environment for every record,
    ~0.2 s each; the same environment, filters and globals, built once, render a record in milliseconds."""
    from jinja2 import Environment, FileSystemLoader
    from pygeometa import core
    from pygeometa.schemas.iso19139 import ISO19139OutputSchema

    env = Environment(loader=FileSystemLoader([ISO19139OutputSchema().template_dir, core.SCHEMAS]))
    helpers = {"normalize_datestring": core.normalize_datestring,
               "get_distribution_language": core.get_distribution_language,
               "get_charstring": core.get_charstring, "prune_distribution_formats": core.prune_distribution_formats,
               "prune_transfer_option": core.prune_transfer_option}
    env.filters.update(helpers)
    env.globals.update(helpers, zip=zip)
    return env.get_template("main.j2")


def _pygeometa_version() -> str:
    from pygeometa import core

    return core.VERSION


def pretty_print(xml: bytes) -> str:
    """Indented XML without the template's blank lines (lxml: pygeometa's minidom pass costs ~25 ms a record)."""
    from lxml import etree

    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return etree.tostring(etree.fromstring(xml, parser), pretty_print=True, xml_declaration=True,
                          encoding="UTF-8").decode("utf-8")


def render(mcf: dict, datestamp: str) -> str:
    """ISO 19139 XML of an MCF dict (pygeometa), with the given datestamp."""
    filled = dict(mcf, metadata=dict(mcf["metadata"], datestamp=datestamp))
    xml = _template().render(record=filled, pygeometa_version=_pygeometa_version())
    xml = pretty_print(xml.encode("utf-8"))
    # pygeometa 0.19 names the alternate PT_Locale "locale-fr" whatever the language, while the texts point
    # at "#eng": give the locale the id the texts refer to, or readers cannot resolve the English alternates.
    xml = xml.replace('<gmd:PT_Locale id="locale-fr">', f'<gmd:PT_Locale id="{LANGUAGE_ALT}">', 1)
    # The extent is an EX_GeographicBoundingBox (lon/lat degrees by ISO 19115's definition; pygeometa writes
    # one only for crs 4326, a GML polygon with a bare "4490" srsName otherwise) and pygeometa takes the
    # reference system from that extent: state the data's real reference system, CGCS2000.
    return xml.replace("<gco:CharacterString>urn:ogc:def:crs:EPSG:4326</gco:CharacterString>",
                       f"<gco:CharacterString>urn:ogc:def:crs:EPSG::{CGCS2000}</gco:CharacterString>", 1)

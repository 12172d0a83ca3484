"""OGC API – Features routes: landing page, conformance, collections, queryables, items and item.

Landing page and collection descriptions come from pygeoapi (built in memory from the registry);
items and single items are Lantu's own hot path with the GeoJSON built in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from urllib.parse import urlencode

import psycopg2.errors
from flask import Blueprint, Response, render_template, request
from psycopg2 import sql
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WzRequest

from lantu.providers import crs as crs_mod
from lantu.providers.edits import current_etag
from lantu.providers.features import FeatureSource, fetch_csv, fetch_item, fetch_items
from lantu.server.collections import clean_links, describe, landing
from lantu.server.conformance import CONFORMANCE_CLASSES
from lantu.server.context import base_url, collections, lantu
from lantu.server.errors import InvalidParameter, NotFound
from lantu.server.feature_params import (
    ITEM_PARAMS,
    parse_crs,
    parse_items_query,
    parse_property_list,
)
from lantu.server.formats import json_response, negotiate, whole_number
from lantu.server.policy import allowed, row_filter_where

bp = Blueprint("features", __name__)
GEOJSON = "application/geo+json"
FMT_TITLES = {"json": ("application/geo+json", "GeoJSON"), "html": ("text/html", "HTML"),
              "csv": ("text/csv", "CSV")}





def _pygeoapi_json(call, *args) -> dict:
    """Call a pygeoapi API function as a JSON request carrying the client's Accept-Language."""
    api = collections().api()
    headers = {"Accept-Language": request.headers.get("Accept-Language", "zh-CN")}
    if request.args.get("lang"):
        headers["Accept-Language"] = request.args["lang"]
    fake = WzRequest(EnvironBuilder(path=request.path, query_string={"f": "json"}, headers=headers).get_environ())
    _, status, content = call(api, fake, *args)
    if status != 200:
        raise NotFound(json.loads(content).get("description", "not found"))
    return json.loads(content)


def _source(cid: str) -> FeatureSource:
    src = collections().source(cid)
    if src is None:
        raise NotFound(f"no collection {cid[:60]!r}; see /collections")
    return src


# ---- landing, conformance, collections ---------------------------------------------------------------
@bp.get("/")
def landing_page() -> Response:
    fmt = negotiate(request)
    doc = _pygeoapi_json(landing)
    doc["links"] = [dict(link, href=link["href"].replace(f"{base_url()}?", f"{base_url()}/?"))
                    for link in clean_links(doc["links"])
                    if link.get("rel") not in ("http://www.opengis.net/def/rel/ogc/1.0/processes",
                                               "http://www.opengis.net/def/rel/ogc/1.0/job-list",
                                               "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes")]
    doc["links"].append({"rel": "service-status", "type": "application/json", "title": "Health",
                         "href": f"{base_url()}/healthz"})
    for cid in collections().coverages:
        doc["links"].append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/coverage", "type": "application/tiff",
                             "title": f"{cid} coverage (GeoTIFF)", "href": f"{base_url()}/collections/{cid}/coverage"})
    doc["links"].append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/processes", "type": "application/json",
                         "title": "Processes (规划冲突检测、控制线检测、辅助选址、台账、规划核心指标)",
                         "href": f"{base_url()}/processes"})
    doc["links"].append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list", "type": "application/json",
                         "title": "Jobs", "href": f"{base_url()}/jobs"})
    doc["links"].append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes", "type": "application/json",
                         "title": "Tile matrix sets", "href": f"{base_url()}/tileMatrixSets"})
    doc["links"].append({"rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", "type": "application/json",
                         "title": "一张蓝图矢量瓦片 blueprint vector tilesets", "href": f"{base_url()}/tiles"})
    doc["links"].append({"rel": "related", "type": "application/geo+json", "title": "资源目录 metadata records "
                         "(OGC API – Records)", "href": f"{base_url()}/collections/metadata/items"})
    doc["links"].append({"rel": "related", "type": "application/xml", "title": "资源目录 catalogue (CSW 2.0.2/3.0)",
                         "href": f"{base_url()}/csw?service=CSW&request=GetCapabilities"})
    if fmt == "html":
        return Response(render_template("landing.html", doc=doc, infos=collections().infos), mimetype="text/html")
    return json_response(doc)


@bp.get("/conformance")
def conformance() -> Response:
    doc = {"conformsTo": CONFORMANCE_CLASSES}
    if negotiate(request) == "html":
        return Response(render_template("conformance.html", doc=doc), mimetype="text/html")
    return json_response(doc)


def _fix_collection(doc: dict) -> dict:
    if collections().source(doc["id"]) is None:  # a coverage collection (DEM): pygeoapi's description stands
        doc["links"] = clean_links(doc["links"])
        # pygeoapi adds the grid only when describing one collection; the list and the single view must agree
        # (OGC API Common /ats/collections/rc-md-items, checked by ogctests' test_ast12).
        doc.get("extent", {}).get("spatial", {}).pop("grid", None)
        doc["itemType"] = "coverage"
        return doc
    src = collections().source(doc["id"])
    if not src.spatial:  # a non-spatial collection (core_indicators): no tiles, no spatial extent, no CRS
        doc["links"] = clean_links(doc["links"])
        doc["itemType"] = "feature"
        doc["title_en"] = collections().infos[doc["id"]].title_en
        doc.get("extent", {}).pop("spatial", None)
        for key in ("crs", "storageCrs"):
            doc.pop(key, None)
        return doc
    doc["links"] = clean_links(doc["links"]) + [{
        "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector", "type": "application/json",
        "title": "Vector tilesets", "href": f"{base_url()}/collections/{doc['id']}/tiles"}]
    doc["itemType"] = "feature"
    info = collections().infos[doc["id"]]
    doc["title_en"] = info.title_en
    box = collections().extents.get(doc["id"])
    if box:
        doc["extent"]["spatial"] = {"bbox": [box], "crs": crs_mod.CRS84_URI}
    if src.time_property:
        doc["extent"]["temporal"] = {"interval": [[None, None]], "trs": "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"}
    doc["storageCrs"] = crs_mod.EPSG_URI.format(src.srid)
    doc["crs"] = crs_mod.OFFERED_URIS
    return doc


@bp.get("/collections")
def collections_list() -> Response:
    fmt = negotiate(request)
    doc = _pygeoapi_json(describe)
    # Listed: the feature collections the caller may discover and download. Feature clients walk this list and
    # read items (GDAL ≤ 3.6's OAPIF driver, hence QGIS on Debian, fails on a collection without them), so a
    # view-only layer keeps its /collections/{id} and tiles but is not listed, nor is the DEM coverage (the
    # landing page links to it).
    doc["collections"] = [_fix_collection(c) for c in doc["collections"]
                          if c["id"] not in collections().coverages and allowed(c["id"], "discover")
                          and allowed(c["id"], "download")]
    doc["links"] = clean_links(doc["links"])
    doc["crs"] = crs_mod.OFFERED_URIS
    if fmt == "html":
        return Response(render_template("collections.html", doc=doc), mimetype="text/html")
    return json_response(doc)


@bp.get("/collections/<cid>")
def collection(cid: str) -> Response:
    collections().api()
    if cid not in collections().coverages:
        _source(cid)
    fmt = negotiate(request)
    doc = _fix_collection(_pygeoapi_json(describe, cid))
    if fmt == "html":
        return Response(render_template("collection.html", doc=doc), mimetype="text/html")
    return json_response(doc)


@bp.get("/collections/<cid>/queryables")
def queryables(cid: str) -> Response:
    src = _source(cid)
    fmt = negotiate(request)
    props: dict[str, dict] = {"geometry": {"format": f"geometry-{src.geometry_type.lower()}",
                                           "x-ogc-role": "primary-geometry"}} if src.spatial else {}
    for p in src.properties:
        json_type = "string" if p.type in ("date", "timestamp") else p.type
        schema: dict = {"title": p.title or p.name, "type": json_type}
        if p.type in ("date", "timestamp"):
            schema["format"] = "date" if p.type == "date" else "date-time"
        if p.description:
            schema["description"] = p.description
        if p.max_length:
            schema["maxLength"] = p.max_length
        if p.name == src.time_property:
            schema["x-ogc-role"] = "primary-instant"
        props[p.name] = schema
    doc = {"$schema": "https://json-schema.org/draft/2020-12/schema",
           "$id": f"{base_url()}/collections/{cid}/queryables", "type": "object",
           "title": collections().infos[cid].title_zh, "properties": props, "additionalProperties": False}
    if fmt == "html":
        return Response(render_template("queryables.html", doc=doc, cid=cid), mimetype="text/html")
    return json_response(doc, "application/schema+json")


# ---- items -------------------------------------------------------------------------------------------
def _page_link(cid: str, rel: str, fmt: str, offset: int | None = None) -> dict:
    args = {k: v for k, v in request.args.items() if k != "f"}
    if offset is not None:
        args["offset"] = str(offset)
    args["f"] = fmt
    media, title = FMT_TITLES[fmt]
    return {"rel": rel, "type": media, "title": title,
            "href": f"{base_url()}/collections/{cid}/items?{urlencode(args)}"}


@bp.get("/collections/<cid>/items")
def items(cid: str) -> Response:
    src = _source(cid)
    fmt = negotiate(request, ("json", "html", "csv"))
    settings = lantu().settings
    query = parse_items_query(request.args, src, settings, collections().unaccent())
    rows = row_filter_where(cid)
    if rows is not None:
        query = replace(query, where=(*query.where, rows))
    headers = {"Content-Crs": f"<{query.crs.uri}>"}
    if fmt == "csv":
        return Response(fetch_csv(lantu().pool, src, query), mimetype="text/csv", headers=headers)
    try:
        result = fetch_items(lantu().pool, src, query)
    except psycopg2.errors.DataError as exc:
        # Class 22 (data exception) raised by the stored values under the client's filter, e.g. an
        # arithmetic overflow: the request asked for something impossible, not a server fault.
        raise InvalidParameter(f"the filter cannot be evaluated on this data: {exc.pgerror or exc}".strip(),
                               locator="filter") from None
    if query.offset and result.number_returned == 0 and query.offset >= result.number_matched:
        raise InvalidParameter(f"offset {query.offset} is beyond the last of the {result.number_matched} "
                               f"matching features", locator="offset")
    links = [_page_link(cid, "self", fmt)] + [_page_link(cid, "alternate", f) for f in ("json", "html", "csv")
                                              if f != fmt]
    if query.offset + result.number_returned < result.number_matched:
        links.append(_page_link(cid, "next", fmt, query.offset + query.limit))
    if query.offset > 0:
        links.append(_page_link(cid, "prev", fmt, max(0, query.offset - query.limit)))
    links.append({"rel": "collection", "type": "application/json", "title": collections().infos[cid].title_zh,
                  "href": f"{base_url()}/collections/{cid}"})
    headers["Link"] = link_header(links + [{
        "rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
        "href": f"{base_url()}/collections/{cid}/queryables"}])
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    head = json.dumps({"type": "FeatureCollection", "numberMatched": result.number_matched,
                       "numberReturned": result.number_returned, "timeStamp": stamp, "links": links},
                      ensure_ascii=False)
    if fmt == "html":
        doc = json.loads(head[:-1] + ',"features":[' + result.features.decode("utf-8") + "]}")
        return Response(render_template("items.html", doc=doc, cid=cid, info=collections().infos[cid],
                                        geographic=query.crs is crs_mod.CRS84), mimetype="text/html")
    # The features are JSON made by PostgreSQL: splice the bytes, don't parse or re-encode them.
    body = [head[:-1].encode("utf-8"), b',"features":[', result.features, b"]}"]
    headers["Content-Length"] = str(sum(len(part) for part in body))
    return Response(body, mimetype=GEOJSON, headers=headers)


def link_header(links: list[dict]) -> str:
    """RFC 8288 Link header (Part 1 /rec/core/link-header): rel quoted, no titles (headers are latin-1)."""
    return ", ".join(f'<{link["href"]}>; rel="{link["rel"]}"; type="{link["type"]}"' for link in links)


def _parse_fid(fid: str) -> int:
    # Ids are bigserial keys: anything else cannot name a feature, so it is a 404, not a 400 or a 500.
    if not whole_number(fid) or len(fid) > 18:
        raise NotFound(f"no feature {fid[:40]!r} in this collection")
    return int(fid)


def _row_visible(cid: str, src, fid: int) -> bool:
    rows = row_filter_where(cid)
    with lantu().pool.connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} t WHERE {} = %s AND {})").format(
            sql.SQL("{}.{}").format(sql.Identifier(src.schema), sql.Identifier(src.table)),
            sql.Identifier(src.id_column), rows.clause), (fid, *rows.params))
        return cur.fetchone()[0]


@bp.get("/collections/<cid>/items/<fid>")
def item(cid: str, fid: str) -> Response:
    src = _source(cid)
    fmt = negotiate(request)
    unknown = [k for k in request.args if k not in ITEM_PARAMS]
    if unknown:
        raise InvalidParameter(f"unknown query parameter {unknown[0][:40]!r}", locator=unknown[0][:40])
    out_crs = parse_crs("crs", request.args.get("crs"))
    props = parse_property_list("properties", request.args["properties"], src) if "properties" in request.args \
        else None
    text = fetch_item(lantu().pool, src, _parse_fid(fid), out_crs, props)
    if text is not None and row_filter_where(cid) is not None and not _row_visible(cid, src, _parse_fid(fid)):
        text = None  # outside the caller's rows: as if it did not exist
    if text is None:
        raise NotFound(f"no feature {fid!r} in collection {cid!r}")
    url = f"{base_url()}/collections/{cid}/items/{fid}"
    links = [{"rel": "self", "type": GEOJSON, "href": f"{url}?f=json"},
             {"rel": "alternate", "type": "text/html", "href": f"{url}?f=html"},
             {"rel": "collection", "type": "application/json", "href": f"{base_url()}/collections/{cid}"}]
    if fmt == "html":
        doc = json.loads(text)
        doc["links"] = links
        return Response(render_template("item.html", doc=doc, cid=cid, info=collections().infos[cid],
                                        geographic=out_crs is crs_mod.CRS84), mimetype="text/html")
    body = text[:-1] + ',"links":' + json.dumps(links) + "}"
    headers = {"Content-Crs": f"<{out_crs.uri}>", "Link": link_header(links)}
    layer = lantu().registry.get(cid)
    if layer is not None and layer.is_vector:  # the version a Part 4 edit sends back in If-Match
        tag = current_etag(lantu().pool, layer, _parse_fid(fid))
        if tag:
            headers["ETag"] = tag
    return Response(body, mimetype=GEOJSON, headers=headers)


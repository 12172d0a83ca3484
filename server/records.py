"""OGC API – Records: the ``metadata`` collection (资源目录) over the same repository table pycsw answers CSW
from, read by Lantu's own provider (providers/catalog_store.py) with ``q``, ``bbox``, ``datetime``,
``filter`` (CQL2 text or JSON), ``limit`` and ``offset``. Records are GeoJSON features (OGC API – Records
Part 1, record core)."""

from __future__ import annotations

import re
from datetime import datetime

from flask import Blueprint, Response, request
from psycopg2 import sql

from lantu.providers import catalog_store
from lantu.providers.cql2sql import FilterError, Queryable, compile_filter
from lantu.server.context import base_url, lantu
from lantu.server.errors import InvalidParameter, NotFound
from lantu.server.formats import json_response, whole_number

bp = Blueprint("records", __name__)
CID = "metadata"
PARAMS = {"limit", "offset", "q", "bbox", "datetime", "filter", "filter-lang", "f", "type"}
MAX_LIMIT = 1000
QUERYABLES = {
    "id": Queryable("id", "identifier", "string"), "title": Queryable("title", "title", "string"),
    "description": Queryable("description", "abstract", "string"), "type": Queryable("type", "type", "string"),
    "keywords": Queryable("keywords", "keywords", "string"), "language": Queryable("language", "language", "string"),
    "geometry": Queryable("geometry", "wkb_geometry", "geometry"),
}
_NUMBER = re.compile(r"^-?\d+(\.\d+)?([eE][-+]?\d+)?$")


def _refresh() -> None:
    from lantu.server.csw import refresher

    refresher().maybe_refresh()


def _collection() -> dict:
    url = f"{base_url()}/collections/{CID}"
    return {"id": CID, "title": "资源目录 (metadata records)", "itemType": "record",
            "description": "每个图层与服务一条元数据记录；也以 CSW 提供 (also served as CSW at /csw).",
            "links": [{"rel": "self", "type": "application/json", "href": url},
                      {"rel": "items", "type": "application/geo+json", "href": f"{url}/items"},
                      {"rel": "http://www.opengis.net/def/rel/ogc/1.0/queryables", "type": "application/schema+json",
                       "href": f"{url}/queryables"},
                      {"rel": "alternate", "type": "application/xml", "title": "CSW",
                       "href": f"{base_url()}/csw?service=CSW&request=GetCapabilities"}],
            "extent": {"spatial": {"bbox": [[73.0, 3.0, 136.0, 54.0]],
                                   "crs": "http://www.opengis.net/def/crs/OGC/1.3/CRS84"}}}


def _whole(name: str, default: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not whole_number(raw) or int(raw) > high:
        raise InvalidParameter(f"{name} must be a whole number from 0 to {high}", locator=name)
    return int(raw)


def _bbox() -> tuple[sql.Composable, list] | None:
    raw = request.args.get("bbox")
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != 4 or not all(_NUMBER.match(p.strip()) for p in parts):
        raise InvalidParameter("bbox must be minLon,minLat,maxLon,maxLat (CRS84)", locator="bbox")
    x1, y1, x2, y2 = (float(p) for p in parts)
    if x1 > x2 or y1 > y2 or not (-180 <= x1 <= 180 and -180 <= x2 <= 180 and -90 <= y1 <= 90 and -90 <= y2 <= 90):
        raise InvalidParameter("bbox corners out of order or out of range", locator="bbox")
    return sql.SQL("wkb_geometry && ST_MakeEnvelope(%s, %s, %s, %s, 4326)"), [x1, y1, x2, y2]


def _instant(text: str) -> str | None:
    if text in ("", ".."):
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidParameter(f"datetime {text[:40]!r} is not an RFC 3339 date or time", locator="datetime") from exc
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if "T" in text else value.strftime("%Y-%m-%d")


def _datetime() -> tuple[sql.Composable, list] | None:
    """The record's update time (dct:modified, kept as ISO text) within an instant's day or an interval."""
    raw = request.args.get("datetime")
    if raw is None:
        return None
    if "/" in raw:
        start, end = (_instant(p) for p in raw.split("/", 1))
        if start is None and end is None:
            return None
        conds, params = [], []
        if start:
            conds.append("date_modified >= %s")
            params.append(start)
        if end:  # an end date includes its whole day
            conds.append("date_modified <= %s")
            params.append(end + ("\uffff" if "T" not in end else ""))
        return sql.SQL(" AND ".join(conds)), params
    instant = _instant(raw)
    if instant is None:
        raise InvalidParameter("datetime needs a date, a time or an interval", locator="datetime")
    return sql.SQL("date_modified LIKE %s"), [instant + "%"]


def _q() -> tuple[sql.Composable, list] | None:
    """``q``: comma-separated terms, a record matches if its text contains any of them (Records §7.3)."""
    raw = request.args.get("q")
    if raw is None:
        return None
    terms = [t.strip() for t in raw.split(",") if t.strip()]
    if not terms:
        raise InvalidParameter("q needs at least one term", locator="q")
    escaped = ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in terms]
    return sql.SQL("(" + " OR ".join(["anytext ILIKE %s"] * len(terms)) + ")"), escaped


def _filter() -> tuple[sql.Composable, list] | None:
    raw = request.args.get("filter")
    if raw is None:
        return None
    lang = request.args.get("filter-lang", "cql2-text")
    if lang not in ("cql2-text", "cql2-json"):
        raise InvalidParameter("filter-lang must be cql2-text or cql2-json", locator="filter-lang")
    try:
        return compile_filter(raw, lang, QUERYABLES, storage_srid=4326)
    except FilterError as exc:
        raise InvalidParameter(str(exc), locator="filter") from exc


def _visible() -> tuple[sql.Composable, list]:
    """Records of layers the caller may not discover are left out (as in CSW)."""
    from lantu.server.csw import hidden_records

    return sql.SQL("NOT (identifier = ANY(%s))"), [hidden_records()]


def _feature(row: tuple) -> dict:
    identifier, kind, title, abstract, keywords, modified, links, language, geometry, access = row
    import json

    out_links = [{"rel": "alternate", "type": "application/xml", "title": "ISO 19139 (CSW)",
                  "href": f"{base_url()}/csw?service=CSW&version=2.0.2&request=GetRecordById&id={identifier}"
                          "&outputschema=http://www.isotc211.org/2005/gmd"}]
    for link in (links or "").split("^"):
        parts = link.split(",")
        if len(parts) >= 4 and parts[3].startswith("http"):
            out_links.append({"rel": "related", "title": parts[1] or parts[0], "protocol": parts[2],
                              "href": ",".join(parts[3:])})
    return {"type": "Feature", "id": identifier, "conformsTo": [
        "http://www.opengis.net/spec/ogcapi-records-1/1.0/req/record-core"],
        "geometry": json.loads(geometry) if geometry and "EMPTY" not in geometry and '"coordinates":[]' not in
        geometry else None,
        "properties": {"type": kind, "title": title, "description": abstract,
                       "keywords": [k for k in (keywords or "").split(",") if k], "updated": modified,
                       "language": {"code": language} if language else None, "rights": access},
        "links": out_links}


@bp.route(f"/collections/{CID}")
def collection() -> Response:
    return json_response(_collection())


@bp.route(f"/collections/{CID}/queryables")
def queryables() -> Response:
    props = {q.name: ({"$ref": "https://geojson.org/schema/Geometry.json"} if q.type == "geometry"
                      else {"type": "string"}) for q in QUERYABLES.values()}
    return json_response({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                          "$id": f"{base_url()}/collections/{CID}/queryables", "properties": props},
                         mimetype="application/schema+json")


@bp.route(f"/collections/{CID}/items")
def items() -> Response:
    unknown = sorted(set(request.args) - PARAMS)
    if unknown:
        raise InvalidParameter(f"unknown query parameter {unknown[0][:40]!r}", locator=unknown[0][:40])
    limit, offset = _whole("limit", 10, MAX_LIMIT), _whole("offset", 0, 10**9)
    conditions = [c for c in (_q(), _bbox(), _datetime(), _filter()) if c]
    if request.args.get("type"):
        conditions.append((sql.SQL("type = %s"), [request.args["type"]]))
    conditions.append(_visible())
    _refresh()
    matched, rows = catalog_store.records_page(lantu().pool, conditions, limit, offset)
    url = f"{base_url()}/collections/{CID}/items"
    links = [{"rel": "self", "type": "application/geo+json", "href": request.url.replace(request.host_url.rstrip("/"),
                                                                                          base_url(), 1)}]
    if offset + len(rows) < matched:
        args = dict(request.args, offset=str(offset + limit), limit=str(limit))
        from urllib.parse import urlencode

        links.append({"rel": "next", "type": "application/geo+json", "href": f"{url}?{urlencode(args)}"})
    return json_response({"type": "FeatureCollection", "numberMatched": matched, "numberReturned": len(rows),
                          "features": [_feature(r) for r in rows], "links": links},
                         mimetype="application/geo+json")


@bp.route(f"/collections/{CID}/items/<path:record_id>")
def item(record_id: str) -> Response:
    _refresh()
    from lantu.server.csw import hidden_records

    row = catalog_store.record_row(lantu().pool, record_id)
    if row is None or record_id in hidden_records():
        raise NotFound(f"no record {record_id[:100]!r} in the catalog")
    return json_response(_feature(row), mimetype="application/geo+json")

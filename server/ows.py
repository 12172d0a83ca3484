"""``/wms`` and ``/wfs``: Lantu's WSGI face of MapServer. Requests pass through Lantu (so the access policy
sees and can filter every OWS request) and reach a ``mapserv`` FastCGI worker; the mapfile is generated
from the registry and fixed server-side (a client's ``MAP`` parameter is dropped: no file names from
requests). POSTed XML is checked for DOCTYPE/entities before MapServer's parser sees it (XXE, cf. GeoServer
CVE-2025-30220)."""

from __future__ import annotations

import random
import re
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, Response, request

from lantu.providers import crs as crs_mod
from lantu.server import fcgi
from lantu.server.context import lantu
from lantu.server.errors import ows_exception, wms_exception
from lantu.server.mapserver_pool import socket_paths
from lantu.server.policy import (
    Denied,
    capabilities_cache,
    deny_response,
    filter_capabilities,
    registry_layers,
    require,
)

bp = Blueprint("ows", __name__)
MAX_BODY = 20 * 1024 * 1024
SERVICE_OF = {"/wms": "WMS", "/wfs": "WFS"}
_HTTP_EPSG = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)$")
_HTTP_EPSG_XML = re.compile(rb'srsName="https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)"')
_SHORT_SRSNAME = re.compile(rb'srsName="EPSG:(\d+)"')
PASS_HEADERS = {"content-type", "content-disposition", "content-length"}


def _refuse(service: str, code: str, text: str, locator: str | None = None, status: int = 400) -> Response:
    if service == "WMS":
        return wms_exception(code, text)
    return ows_exception(code, text, locator, status)


def _normalise(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Spellings MapServer 8.0 refuses although clients send them (measured, docs/ows.md):
    WFS ``srsName=http://www.opengis.net/def/crs/EPSG/0/n`` (same meaning as the URN form), and WMS 1.1.1
    ``SRS=CRS:84`` (its own capabilities list it; EPSG:4326 in 1.1.1 has the same lon/lat order). Paged
    WFS GetFeature requests without SORTBY are sorted by feature id."""
    version = next((v for k, v in pairs if k.upper() == "VERSION"), "")
    out = []
    for key, value in pairs:
        upper = key.upper()
        if upper == "SRSNAME" and (match := _HTTP_EPSG.match(value)):
            value = f"urn:ogc:def:crs:EPSG::{match[1]}"
        elif upper == "SRS" and version == "1.1.1" and value.upper() == "CRS:84":
            value = "EPSG:4326"
        out.append((key, value))
    names = {k.upper(): v for k, v in out}
    if (names.get("REQUEST", "").lower() == "getfeature" and "STARTINDEX" in names and "SORTBY" not in names
            and "RESOURCEID" not in names and "FEATUREID" not in names):
        # MapServer pages without ORDER BY: the same STARTINDEX can return a different page each time.
        # A stable order (the feature id) makes paging through a layer return every feature exactly once.
        out.append(("SORTBY", "fid"))
    return out


def _query(service: str) -> tuple[list[tuple[str, str]], str | None]:
    """The client's parameters minus MAP; SERVICE defaulted to the endpoint's; returns (params, error)."""
    pairs = [(k, v) for k, v in parse_qsl(request.query_string.decode("utf-8", "replace"), keep_blank_values=True)
             if k.upper() not in ("MAP", "API_KEY")]
    pairs = _normalise(pairs)
    given = next((v for k, v in pairs if k.upper() == "SERVICE"), None)
    if given is None:
        pairs.append(("SERVICE", service))
    elif given.upper() != service and request.method == "GET":
        return pairs, f"this endpoint serves {service}; SERVICE={given[:20]} is not offered here"
    return pairs, None


def _normalise_body(body: bytes) -> bytes:
    """The http-URI form of srsName in POSTed XML, rewritten like the KVP one (see ``_normalise``)."""
    return _HTTP_EPSG_XML.sub(rb'srsName="urn:ogc:def:crs:EPSG::\1"', body)


def _xml_body_problem(body: bytes) -> str | None:
    if not body.strip():
        return None
    head = body.upper()  # the whole body: a DOCTYPE may follow any amount of comments
    if b"<!DOCTYPE" in head or b"<!ENTITY" in body.upper():
        return "XML with a DOCTYPE or entity declarations is not accepted"
    from lxml import etree

    try:
        etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                                               huge_tree=False))
    except etree.XMLSyntaxError as exc:
        return f"the request body is not well-formed XML: {str(exc)[:200]}"
    return None


def _cgi_params(pairs: list[tuple[str, str]], body: bytes) -> dict[str, str]:
    host = request.host.split(":")[0]
    params = {
        "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": request.method, "SCRIPT_NAME": request.path,
        "QUERY_STRING": urlencode(pairs), "SERVER_NAME": host,
        "SERVER_PORT": str(request.environ.get("SERVER_PORT", "80")),
        "SERVER_PROTOCOL": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"), "HTTP_HOST": request.host,
        "REMOTE_ADDR": request.remote_addr or "",
    }
    if body:
        params["CONTENT_TYPE"] = request.content_type or "application/xml"
        params["CONTENT_LENGTH"] = str(len(body))
    return params


@bp.route("/wms", methods=["GET", "POST"])
@bp.route("/wfs", methods=["GET", "POST"])
def ows() -> Response:
    service = SERVICE_OF[request.path]
    pairs, problem = _query(service)
    if problem:
        return _refuse(service, "InvalidParameterValue", problem, "service")
    body = request.get_data(cache=False) if request.method == "POST" else b""
    if len(body) > MAX_BODY:
        return _refuse(service, "OperationProcessingFailed", "request body too large", status=413)
    problem = _xml_body_problem(body) if body and not request.form else None
    if problem:
        return _refuse(service, "OperationParsingFailed", problem)
    body = _normalise_body(body) if body else body
    denied = _posted_layers_denied(service, body)
    if denied is not None:
        return denied
    cache_key = capabilities_cache().key() if request.method == "GET" and \
        _operation(pairs, body) == "getcapabilities" else None
    if cache_key is not None and (cached := capabilities_cache().get(cache_key)) is not None:
        return cached
    settings = lantu().settings
    sockets = [str(p) for p in socket_paths(settings.run_dir, settings.mapserver_workers)]
    random.shuffle(sockets)  # spread load; a dead worker's socket is skipped below
    for address in sockets:
        try:
            answer = fcgi.request(address, _cgi_params(pairs, body), body)
            break
        except fcgi.FastCGIError:
            continue
    else:
        return _refuse(service, "NoApplicableCode", "the map engine is restarting; retry in a moment", status=503)
    headers = [(k, v) for k, v in answer.headers if k.lower() in PASS_HEADERS and k.lower() != "content-length"]
    body = answer.body
    if service == "WFS" and b'srsName="EPSG:' in body[:200_000]:
        body = _relabel_north_first(body)
    if _operation(pairs, body) == "getcapabilities":
        body = filter_capabilities(body, service)  # only the layers this caller may use
    resp = Response(body, status=answer.status, headers=headers)
    if cache_key is not None:
        capabilities_cache().put(cache_key, resp)
    return resp


_TYPENAMES = re.compile(rb'typeNames?\s*=\s*["\']([^"\']+)["\']', re.IGNORECASE)
_OPERATION = re.compile(rb"<(?:\w+:)?(GetCapabilities|GetFeature|DescribeFeatureType|GetPropertyValue|Transaction)\b")


def _operation(pairs: list[tuple[str, str]], body: bytes) -> str:
    for key, value in pairs:
        if key.upper() == "REQUEST":
            return value.lower()
    if request.form:
        return request.form.get("REQUEST", request.form.get("request", "")).lower()
    found = _OPERATION.search(body[:4096]) if body else None
    return found[1].decode().lower() if found else ""


def _posted_layers_denied(service: str, body: bytes) -> Response | None:
    """POSTed requests name their layers in the body (XML typeNames or form fields), which the gate in
    front of every route does not read: check them here."""
    if request.method != "POST":
        return None
    names: list[str] = []
    form = {k.upper(): v for k, v in request.form.items()}
    for key in ("TYPENAMES", "TYPENAME", "LAYERS", "QUERY_LAYERS", "LAYER"):
        names += [n.split(":", 1)[-1] for n in form.get(key, "").split(",") if n.strip()]
    for match in _TYPENAMES.finditer(body or b""):
        names += [n.split(":", 1)[-1] for n in match[1].decode("utf-8", "replace").split(",") if n.strip()]
    if not names:
        return None
    action = "download" if service == "WFS" else "view"
    try:
        require(registry_layers(sorted(set(names))), action)
    except Denied as exc:
        return deny_response(service, exc.status, exc.text)
    return None


def _relabel_north_first(body: bytes) -> bytes:
    """MapServer 8.0's WFS 1.1.0 writes coordinates in EPSG axis order (lat/lon for EPSG:4490, north/east for
    the GK zones) but labels them ``srsName="EPSG:4490"``, which GDAL, QGIS and the GeoServer convention read
    as lon/lat (x = east). Relabelling with the URN form states the order the coordinates really have."""
    def urn(match: re.Match) -> bytes:
        code = int(match[1])
        output = crs_mod.resolve(f"EPSG:{code}")
        return b'srsName="urn:ogc:def:crs:EPSG::%d"' % code if output and output.swap_axes else match[0]

    return _SHORT_SRSNAME.sub(urn, body)

"""``/wmts`` (KVP and REST) and ``/tms``: MapProxy's WSGI application, mounted inside Lantu's Flask app so
every request passes the same gate. MapProxy is configured from the registry (tiles/mapproxy.py) and
renders cache misses with Lantu's MapServer mapfile."""

from __future__ import annotations

import os
import threading
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, request

from lantu.server.context import lantu
from lantu.server.errors import ows_exception
from lantu.server.formats import whole_number
from lantu.server.policy import capabilities_cache, filter_capabilities

bp = Blueprint("wmts", __name__)
KVP_OPERATIONS = {"getcapabilities", "gettile", "getfeatureinfo"}
_lock = threading.Lock()


def mapproxy_app():
    app = current_app.extensions.get("lantu.mapproxy")
    if app is None:
        with _lock:
            app = current_app.extensions.get("lantu.mapproxy")
            if app is None:
                from mapproxy.wsgiapp import make_wsgi_app

                home = lantu().settings.home
                config = home / "mapproxy" / "mapproxy.yaml"
                if not config.exists():
                    return None
                # MapProxy's mapserver source runs mapserv with this process's environment.
                os.environ["MAPSERVER_CONFIG_FILE"] = str(home / "mapserver" / "mapserver.conf")
                try:
                    app = make_wsgi_app(str(config))
                except Exception:  # noqa: BLE001 - a broken generated config must not become a 500 per request
                    current_app.logger.exception("MapProxy configuration %s could not be loaded", config)
                    return None
                current_app.extensions["lantu.mapproxy"] = app
    return app


def invalidator():
    if "lantu.wmts_invalidator" not in current_app.extensions:
        from lantu.providers.changelog import changes_since, current_change
        from lantu.tiles.wmts_cache import WmtsCacheInvalidator

        ctx = lantu()
        current_app.extensions["lantu.wmts_invalidator"] = WmtsCacheInvalidator(
            ctx.settings.home / "mapproxy" / "mapproxy.yaml", ctx.settings.home / "cache" / "wmts",
            lambda after: changes_since(ctx.pool, after), lambda: current_change(ctx.pool))
    return current_app.extensions["lantu.wmts_invalidator"]


def _public_environ(path_info: str) -> dict:
    """The WSGI environ MapProxy sees: the public URL's host and prefix, never the request's Host header
    (MapProxy writes capabilities URLs from it; brief §4: every URL Lantu writes uses LANTU_PUBLIC_URL)."""
    public = urlsplit(lantu().settings.public_url)
    port = public.port or (443 if public.scheme == "https" else 80)
    return dict(request.environ, PATH_INFO=path_info, SCRIPT_NAME=public.path.rstrip("/"),
                HTTP_HOST=public.netloc, SERVER_NAME=public.hostname or "localhost", SERVER_PORT=str(port),
                **{"wsgi.url_scheme": public.scheme or "http"})


def _call(path_info: str, kvp: bool = False) -> Response:
    app = mapproxy_app()
    if app is None:
        return ows_exception("NoApplicableCode", "the tile service is not configured on this server", status=503,
                             version="1.0.0")
    invalidator().sync()  # drop tiles of areas changed since the last look (at most once a second)
    capabilities = _capabilities_kind(path_info)
    cache_key = capabilities_cache().key() if capabilities else None
    if cache_key is not None and (cached := capabilities_cache().get(cache_key)) is not None:
        return cached
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    body = b"".join(app(_public_environ(path_info), start_response))
    if kvp:  # MapProxy answers KVP at /service and advertises that path; Lantu serves it at /wmts
        base = lantu().settings.public_url.encode()
        body = body.replace(base + b"/service?", base + b"/wmts?")
    if capabilities:
        body = filter_capabilities(body, capabilities)  # only the layers this caller may view
    resp = Response(body, status=int(captured["status"].split()[0]),
                    headers=[(k, v) for k, v in captured["headers"] if k.lower() != "content-length"])
    if cache_key is not None:
        capabilities_cache().put(cache_key, resp)
    return resp


def _capabilities_kind(path_info: str) -> str | None:
    """"WMTS" or "TMS" when the request asks for a capabilities document (which lists layers), else None."""
    if path_info.endswith("WMTSCapabilities.xml") or request.args.get("REQUEST", request.args.get(
            "request", "")).lower() == "getcapabilities":
        return "WMTS"
    if path_info.startswith("/tms/") and path_info.rstrip("/").count("/") <= 2:
        return "TMS"
    return None


def _bad(text: str, locator: str, code: str = "InvalidParameterValue") -> Response:
    return ows_exception(code, text, locator, version="1.0.0")


@bp.route("/wmts", methods=["GET"])
def wmts_kvp() -> Response:
    # MapProxy 7 answers some malformed KVP requests with a 500; refuse them here with the OWS codes.
    args = {k.upper(): v for k, v in request.args.items()}
    operation = args.get("REQUEST", "")
    if operation.lower() not in KVP_OPERATIONS:
        return _bad(f"REQUEST must be one of GetCapabilities, GetTile, GetFeatureInfo, not {operation[:30]!r}",
                    "request", "OperationNotSupported" if operation else "MissingParameterValue")
    for name in ("TILEMATRIX", "TILEROW", "TILECOL", "I", "J"):
        if name in args and not whole_number(args[name]):
            return _bad(f"{name} must be a non-negative whole number", name.lower())
    return _call("/service", kvp=True)


@bp.route("/wmts/<path:rest>", methods=["GET"])
def wmts_rest(rest: str) -> Response:
    parts = rest.split("/")
    if len(parts) == 5 and parts[0] != "1.0.0":  # {Layer}/{TileMatrixSet}/{TileMatrix}/{TileCol}/{TileRow}.{ext}
        row = parts[4].rsplit(".", 1)[0]
        if not (whole_number(parts[2]) and whole_number(parts[3]) and whole_number(row)):
            return _bad("TileMatrix, TileCol and TileRow must be whole numbers", "TileMatrix")
    elif not (len(parts) == 2 and parts == ["1.0.0", "WMTSCapabilities.xml"]):
        return _bad(f"no WMTS resource at /wmts/{rest[:80]}; see /wmts/1.0.0/WMTSCapabilities.xml", "path")
    return _call(f"/wmts/{rest}")


@bp.route("/tms", methods=["GET"], defaults={"rest": ""})
@bp.route("/tms/<path:rest>", methods=["GET"])
def tms(rest: str) -> Response:
    if ".." in rest.split("/"):
        return _bad("invalid TMS path", "path")
    return _call(f"/tms/{rest}" if rest else "/tms/")

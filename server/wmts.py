"""``/wmts`` (KVP and REST) and ``/tms``: MapProxy's WSGI application, mounted inside Lantu's Flask app so
every request passes the same gate. MapProxy is configured from the registry (tiles/mapproxy.py) and
renders cache misses with Lantu's MapServer mapfile."""

from __future__ import annotations

import os
import threading

from flask import Blueprint, Response, current_app, request

from lantu.server.context import lantu
from lantu.server.errors import ows_exception

bp = Blueprint("wmts", __name__)
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


def _call(path_info: str) -> Response:
    app = mapproxy_app()
    if app is not None:
        invalidator().sync()  # drop tiles of areas changed since the last look (at most once a second)
    if app is None:
        return ows_exception("NoApplicableCode", "the tile service is not configured on this server", status=503,
                             version="1.1.0")
    environ = dict(request.environ, PATH_INFO=path_info, SCRIPT_NAME="")
    captured: dict = {}

    def start_response(status, headers, exc_info=None):
        captured["status"], captured["headers"] = status, headers

    body = b"".join(app(environ, start_response))
    return Response(body, status=int(captured["status"].split()[0]),
                    headers=[(k, v) for k, v in captured["headers"] if k.lower() != "content-length"])


@bp.route("/wmts", methods=["GET"])
def wmts_kvp() -> Response:
    return _call("/service")


@bp.route("/wmts/<path:rest>", methods=["GET"])
def wmts_rest(rest: str) -> Response:
    return _call(f"/wmts/{rest}")


@bp.route("/tms", methods=["GET"], defaults={"rest": ""})
@bp.route("/tms/<path:rest>", methods=["GET"])
def tms(rest: str) -> Response:
    return _call(f"/tms/{rest}" if rest else "/tms/")

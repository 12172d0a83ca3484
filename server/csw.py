"""``/csw``: the resource catalog (CSW 2.0.2 and 3.0, OpenSearch) answered by pycsw 2.6.2 inside Lantu's app,
so every catalog request passes the same gate. pycsw runs per request with a configuration built from the
settings; the records follow loads (the change log is checked at most once a second)."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, request

from lantu.catalog import engine, service
from lantu.catalog.build import Refresher
from lantu.server.context import lantu

bp = Blueprint("csw", __name__)


def refresher() -> Refresher:
    if "lantu.catalog" not in current_app.extensions:
        ctx = lantu()
        current_app.extensions["lantu.catalog"] = Refresher(ctx.settings, ctx.registry, lambda: ctx.pool)
    return current_app.extensions["lantu.catalog"]


def public_environ() -> dict:
    """The request's environ as pycsw should see it: the public URL's host and path, the caller's address."""
    public = urlsplit(lantu().settings.public_url)
    return dict(request.environ, HTTP_HOST=public.netloc, SERVER_NAME=public.hostname or "localhost",
                SCRIPT_NAME=public.path.rstrip("/"), PATH_INFO="/csw", REMOTE_ADDR=request.remote_addr or "")


@bp.route("/csw", methods=["GET", "POST"])
def csw() -> Response:
    settings = lantu().settings
    body = request.get_data(cache=False) if request.method == "POST" else b""
    answer = service.handle(engine.pycsw_config(settings), settings, dict(request.args.items()),
                            urlencode(list(request.args.items(multi=True))), body, public_environ(),
                            before=refresher().maybe_refresh)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)

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


MANAGER_ROLES = {"admin", "catalog_editor"}


def hidden_records() -> list[str]:
    """Generated records of the layers the caller may not discover (policy action ``discover``)."""
    from lantu.catalog.records import layer_identifier
    from lantu.server.policy import allowed

    ctx = lantu()
    return [layer_identifier(ctx.settings, layer.id) for layer in ctx.registry if not allowed(layer.id, "discover")]


def caller_config() -> dict:
    """pycsw's configuration for this caller: records it may not discover filtered out; Transaction and
    Harvest for accounts with the admin or catalog_editor role, else for ``catalog_manager_ips`` only (pycsw
    checks the client address against ``allowed_ips``)."""
    from lantu.server.policy import identity

    config = engine.pycsw_config(lantu().settings)
    hidden = engine.hidden_filter(hidden_records())
    if hidden:
        config["repository"]["filter"] = hidden
    if MANAGER_ROLES & set(identity().roles) and request.remote_addr:
        config["manager"]["allowed_ips"] = request.remote_addr
    return config


@bp.route("/csw", methods=["GET", "POST"])
def csw() -> Response:
    settings = lantu().settings
    body = request.get_data(cache=False) if request.method == "POST" else b""
    answer = service.handle(caller_config(), settings, dict(request.args.items()),
                            urlencode(list(request.args.items(multi=True))), body, public_environ(),
                            before=refresher().maybe_refresh)
    return Response(answer.body, status=answer.status, content_type=answer.content_type)

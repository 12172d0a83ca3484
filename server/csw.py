"""``/csw``: the resource catalog (CSW 2.0.2 and 3.0, OpenSearch) answered by pycsw 2.6.2 inside Lantu's app,
so every catalog request passes the same gate. pycsw runs per request with a configuration built from the
settings; the records follow loads (the change log is checked at most once a second)."""

from __future__ import annotations

import io
from urllib.parse import urlencode, urlsplit

from flask import Blueprint, Response, current_app, request

from lantu.catalog import engine, guard
from lantu.catalog.build import Refresher
from lantu.catalog.ssrf import RefusedURL, check_url
from lantu.server.context import lantu

bp = Blueprint("csw", __name__)


def refresher() -> Refresher:
    if "lantu.catalog" not in current_app.extensions:
        ctx = lantu()
        current_app.extensions["lantu.catalog"] = Refresher(ctx.settings, ctx.registry, lambda: ctx.pool)
    return current_app.extensions["lantu.catalog"]


def _environ(body: bytes, query: str) -> dict:
    """The WSGI environ pycsw sees: the public URL's host, the body re-readable, and no forwarded-for header
    (pycsw would trust its first address for Transaction/Harvest rights)."""
    public = urlsplit(lantu().settings.public_url)
    environ = {k: v for k, v in request.environ.items()
               if k not in ("HTTP_X_FORWARDED_FOR", "wsgi.input", "CONTENT_LENGTH")}
    environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "QUERY_STRING": query,
                    "HTTP_HOST": public.netloc, "SERVER_NAME": public.hostname or "localhost",
                    "SCRIPT_NAME": public.path.rstrip("/"), "PATH_INFO": "/csw",
                    "REMOTE_ADDR": request.remote_addr or ""})
    return environ


def _check(doc, args: dict[str, str]) -> None:
    guard.check_numbers(doc, args)
    if guard.has_response_handler(doc, args):
        raise guard.Refused("InvalidParameterValue", "ResponseHandler (asynchronous delivery) is not offered",
                            "ResponseHandler")
    for source in guard.harvest_sources(doc, args):
        try:
            check_url(source, lantu().settings.catalog_harvest_allow)
        except RefusedURL as exc:
            raise guard.Refused("InvalidParameterValue", f"Source refused: {exc}", "Source") from exc


def _xml(body: bytes, status: int, content_type: str = "application/xml; charset=UTF-8") -> Response:
    return Response(body, status=status, content_type=content_type)


@bp.route("/csw", methods=["GET", "POST"])
def csw() -> Response:
    args = dict(request.args.items())
    body = request.get_data(cache=False) if request.method == "POST" else b""
    version = guard.version_of(args, body)
    try:
        doc = guard.parse_body(body)
        _check(doc, args)
    except guard.Refused as exc:
        return _xml(guard.exception_report(exc, version), exc.status)
    refresher().maybe_refresh()
    settings = lantu().settings
    config = engine.pycsw_config(settings)
    from lantu.catalog import federation

    try:
        if federation.is_distributed(doc) and settings.catalog_peers:
            answer = federation.distributed_search(config, _environ, body, doc, settings)
        else:
            answer = engine.answer(config, _environ(body, urlencode(list(request.args.items(multi=True)))))
    except guard.Refused as exc:
        return _xml(guard.exception_report(exc, version), exc.status)
    except Exception:  # noqa: BLE001 - pycsw failed on something it should have refused: log it, no traceback out
        current_app.logger.exception("pycsw failed on a CSW request")
        error = guard.Refused("NoApplicableCode", "the catalogue could not process this request; the error has "
                              "been logged", status=500)
        return _xml(guard.exception_report(error, version), 500)
    return _xml(answer.body, answer.status, answer.content_type)

"""One CSW request through Lantu's checks and pycsw: what ``/csw`` does, without Flask (the CITE suites run
through here too, against their own records table)."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping

from lantu.catalog import engine, federation, guard
from lantu.catalog.ssrf import RefusedURL, check_url
from lantu.config.settings import Settings

log = logging.getLogger(__name__)


def _check(doc, args: Mapping[str, str], settings: Settings) -> None:
    guard.check_numbers(doc, dict(args))
    if guard.has_response_handler(doc, dict(args)):
        raise guard.Refused("InvalidParameterValue", "ResponseHandler (asynchronous delivery) is not offered",
                            "ResponseHandler")
    for source in guard.harvest_sources(doc, dict(args)):
        try:
            check_url(source, settings.catalog_harvest_allow)
        except RefusedURL as exc:
            raise guard.Refused("InvalidParameterValue", f"Source refused: {exc}", "Source") from exc


def environ_for(base: Mapping[str, object], body: bytes, query: str) -> dict:
    """A WSGI environ for pycsw: ``base`` (the public host, the caller's address) plus the body re-readable;
    no forwarded-for header (pycsw would trust its first address for Transaction/Harvest rights)."""
    environ = {k: v for k, v in base.items() if k not in ("HTTP_X_FORWARDED_FOR", "wsgi.input", "CONTENT_LENGTH")}
    environ.update({"wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)), "QUERY_STRING": query,
                    "REQUEST_METHOD": "POST" if body else "GET"})
    return environ


def handle(config: dict, settings: Settings, args: Mapping[str, str], query: str, body: bytes,
           base_environ: Mapping[str, object], before: Callable[[], None] | None = None) -> engine.CswAnswer:
    """Answer one request; every refusal and every pycsw failure becomes an exception report."""
    version = guard.version_of(dict(args), body)
    try:
        doc = guard.parse_body(body)
        doc, body = guard.namespace_decides_version(doc, body)
        _check(doc, args, settings)
        if before:
            before()
        if federation.is_distributed(doc) and settings.catalog_peers:
            return federation.distributed_search(config, lambda b, q: environ_for(base_environ, b, q), body, doc,
                                                 settings)
        return engine.answer(config, environ_for(base_environ, body, query))
    except guard.Refused as exc:
        return engine.CswAnswer(exc.status, "application/xml; charset=UTF-8", guard.exception_report(exc, version))
    except Exception:  # noqa: BLE001 - pycsw failed on something it should have refused: log it, no traceback out
        log.exception("pycsw failed on a CSW request")
        error = guard.Refused("NoApplicableCode", "the catalogue could not process this request; the error has "
                              "been logged", status=500)
        return engine.CswAnswer(500, "application/xml; charset=UTF-8", guard.exception_report(error, version))

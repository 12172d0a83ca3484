"""One error taxonomy for every protocol: each error carries its HTTP status, a machine code and a message
meant for the user. OGC API renders it as an RFC 7807-style JSON exception (``type``, ``title``,
``status``, ``detail``); the OWS modules of later issues render the same objects as
``ows:ExceptionReport`` / ``ServiceExceptionReport``."""

from __future__ import annotations

from flask import Flask, Response, json
from werkzeug.exceptions import HTTPException

OGC_EXCEPTION_BASE = "http://www.opengis.net/def/exceptions/ogcapi-common-1/1.0/"


class LantuHTTPError(Exception):
    status = 400
    code = "InvalidParameterValue"
    title = "Bad request"

    def __init__(self, detail: str, *, locator: str | None = None):
        super().__init__(detail)
        self.detail = detail
        self.locator = locator


class InvalidParameter(LantuHTTPError):
    status, code, title = 400, "InvalidParameterValue", "Invalid parameter value"


class NotFound(LantuHTTPError):
    status, code, title = 404, "NotFound", "Not found"


class ServiceUnavailable(LantuHTTPError):
    status, code, title = 503, "ServiceUnavailable", "Service unavailable"


def problem(status: int, title: str, detail: str, code: str | None = None) -> Response:
    body = {"type": OGC_EXCEPTION_BASE + (code or title.replace(" ", "")), "title": title, "status": status,
            "detail": detail}
    if code:
        body["code"] = code
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/problem+json")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(LantuHTTPError)
    def _lantu(exc: LantuHTTPError) -> Response:
        return problem(exc.status, exc.title, exc.detail, exc.code)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        # Werkzeug's own 404/405/… as JSON exceptions; its description never contains request data.
        response = problem(exc.code or 500, exc.name, exc.description or exc.name)
        for name, value in exc.get_headers():  # e.g. Allow on a 405 (RFC 9110)
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # Logged with the traceback server-side; the client gets no internals.
        app.logger.exception("unhandled error")
        return problem(500, "Internal server error", "The server could not complete the request; the "
                       "error has been logged.", "ServerError")


def ows_exception(code: str, text: str, locator: str | None = None, status: int = 400,
                  version: str = "2.0.0", ows: str = "1.1") -> Response:
    """``ows:ExceptionReport``. WFS 2.0 and WMTS 1.0 use OWS Common 1.1 (``version`` is the service
    version); CSW 3 and later OGC services use OWS Common 2.0 (``ows="2.0"``)."""
    from xml.sax.saxutils import escape, quoteattr

    ns = "http://www.opengis.net/ows/2.0" if ows == "2.0" else "http://www.opengis.net/ows/1.1"
    loc = f" locator={quoteattr(locator)}" if locator else ""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ows:ExceptionReport xmlns:ows="{ns}" version="{version}" '
            f'xml:lang="en"><ows:Exception exceptionCode={quoteattr(code)}{loc}><ows:ExceptionText>'
            f"{escape(text)}</ows:ExceptionText></ows:Exception></ows:ExceptionReport>")
    return Response(body, status=status, mimetype="application/xml")


def wms_exception(code: str, text: str, version: str = "1.3.0") -> Response:
    """WMS ``ServiceExceptionReport`` (1.3.0 namespace; 1.1.1 clients accept it too)."""
    from xml.sax.saxutils import escape, quoteattr

    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<ServiceExceptionReport version="{version}" '
            f'xmlns="http://www.opengis.net/ogc"><ServiceException code={quoteattr(code)}>{escape(text)}'
            f"</ServiceException></ServiceExceptionReport>")
    return Response(body, status=200 if version == "1.1.1" else 400, mimetype="text/xml")

"""Output format negotiation shared by the OGC API routes: ``f=`` wins, then the Accept header."""

from __future__ import annotations

from flask import Request, Response, json

from lantu.server.errors import InvalidParameter

ALIASES = {"json": "json", "geojson": "json", "application/json": "json", "application/geo+json": "json",
           "html": "html", "text/html": "html", "csv": "csv", "text/csv": "csv"}
MEDIA = {"json": "application/json", "html": "text/html", "csv": "text/csv"}


def negotiate(request: Request, allowed: tuple[str, ...] = ("json", "html")) -> str:
    raw = request.args.get("f")
    if raw is not None:
        fmt = ALIASES.get(raw.lower())
        if fmt not in allowed:
            raise InvalidParameter(f"f must be one of {', '.join(allowed)}, not {raw[:30]!r}", locator="f")
        return fmt
    offered = [MEDIA[a] for a in allowed] + (["application/geo+json"] if "json" in allowed else [])
    best = request.accept_mimetypes.best_match(offered, default=MEDIA[allowed[0]])
    # Browsers send */* with text/html first; clients that send only */* get JSON.
    if best == "text/html" and request.accept_mimetypes["text/html"] <= request.accept_mimetypes["application/json"]:
        best = "application/json"
    return ALIASES[best]


def whole_number(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also accepts '²' and other scripts' digits, which ``int`` refuses
    or reads differently — a request must not turn that into a 500."""
    return text.isascii() and text.isdigit()


def json_response(doc: dict, mimetype: str = "application/json", headers: dict | None = None,
                  status: int = 200) -> Response:
    """A JSON document as UTF-8 (Chinese titles unescaped)."""
    return Response(json.dumps(doc, ensure_ascii=False), mimetype=mimetype, headers=headers or {}, status=status)

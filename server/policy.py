"""The policy gate: every request passes here before a route runs (``before_request``) and after
(``after_request``: security headers, CORS, access log).

Before: the caller's identity is resolved (a bad credential is a 401 at once), the per-caller rate limit is
applied, and for routes that name layers in their path or parameters (OGC API collections, items, tiles,
coverage; WMS, WFS, WMTS, TMS) the layer rights are checked — a denial is a 401 (anonymous) or 403
(authenticated) in the protocol's own exception format. Routes whose answer lists layers (collections,
capabilities, the blueprint tileset, processes) ask ``allowed()``/``allowed_layers()`` to filter it.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from datetime import UTC, datetime

from flask import Flask, Response, current_app, g, request

from lantu.config.policy import ANONYMOUS, Identity, Policy
from lantu.server.errors import problem

log = logging.getLogger(__name__)
OGC_COLLECTION = re.compile(r"^/collections/([^/]+)(/.*)?$")
WMTS_REST = re.compile(r"^/wmts/(?!1\.0\.0/)([^/]+)/")   # /wmts/{Layer}/{TileMatrixSet}/…
TMS_PATH = re.compile(r"^/tms/1\.0\.0/([^/]+?)(?:_EPSG\d+)?(?:/|$)")  # /tms/1.0.0/{layer}[/{grid}/…]
EDIT_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "SAMEORIGIN",
                    "Referrer-Policy": "same-origin", "Cross-Origin-Opener-Policy": "same-origin"}


class Denied(Exception):
    def __init__(self, status: int, text: str, layers: list[str] | None = None):
        super().__init__(text)
        self.status = status
        self.text = text
        self.layers = layers or []


def policy() -> Policy:
    return current_app.extensions["lantu.policy"]


def identity() -> Identity:
    return getattr(g, "identity", ANONYMOUS)


def allowed(layer_id: str, action: str) -> bool:
    return policy().allows(identity(), layer_id, action)


def allowed_layers(action: str, layer_ids) -> list[str]:
    return policy().allowed_layers(identity(), action, layer_ids)


def require(layer_ids, action: str) -> None:
    """Raise ``Denied`` unless the caller may do ``action`` with every layer."""
    from lantu.server.context import lantu

    registry = lantu().registry
    # Names that are not registry layers protect nothing: the route answers them (404, LayerNotDefined).
    refused = [lid for lid in layer_ids if registry.get(lid) is not None and not allowed(lid, action)]
    if refused:
        who = identity()
        status = 403 if who.authenticated else 401
        verb = {"discover": "see", "view": "view", "download": "download the features of", "edit": "edit"}[action]
        text = (f"{'account ' + who.name if who.authenticated else 'an anonymous caller'} may not {verb} "
                f"{', '.join(refused[:5])}" + ("" if who.authenticated else "; send an API key or a bearer token"))
        raise Denied(status, text, refused)


def protocol_of(path: str) -> str:
    for prefix, name in (("/wms", "WMS"), ("/wfs", "WFS"), ("/wmts", "WMTS"), ("/tms", "TMS"), ("/csw", "CSW")):
        if path == prefix or path.startswith(prefix + "/"):
            return name
    return "OGCAPI"


def deny_response(protocol: str, status: int, text: str) -> Response:
    """A 401/403 in the protocol's own exception format."""
    from lantu.server.errors import ows_exception, wms_exception

    if protocol == "WMS":
        resp = wms_exception("AccessDenied" if status == 403 else "AuthenticationRequired", text)
    elif protocol in ("WFS", "WMTS", "TMS", "CSW"):
        resp = ows_exception("AccessDenied" if status == 403 else "AuthenticationRequired", text, status=status)
    else:
        resp = problem(status, "Forbidden" if status == 403 else "Unauthorized", text,
                       "Forbidden" if status == 403 else "Unauthorized")
    resp.status_code = status
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="lantu", ApiKey realm="lantu"'
    return resp


def row_filter_where(layer_id: str):
    """The caller's row filter of a layer as a WHERE condition (``providers.features.Where``), or None."""
    from psycopg2 import sql

    from lantu.providers.features import Where
    from lantu.server.context import lantu

    rule = policy().row_filter(identity(), layer_id)
    if rule is None:
        return None
    field, value = rule
    if value is None:
        return Where(sql.SQL("FALSE"))
    column = lantu().registry.get(layer_id).field(field).column
    return Where(sql.SQL("{} = %s").format(sql.Identifier(column)), (value,))


# ---- which layers and action a request names ------------------------------------------------------------------
def _ci_args() -> dict[str, str]:
    return {k.upper(): v for k, v in request.args.items()}


def _names(value: str | None) -> list[str]:
    return [n.split(":", 1)[-1] for n in (value or "").split(",") if n.strip()]


def registry_layers(names: list[str]) -> list[str]:
    """WMS/WMTS layer names → the registry layers whose rights they need: the hillshade is the DEM's; the
    root layer (the map's name) draws every layer."""
    from lantu.server.context import lantu

    registry = lantu().registry
    out: list[str] = []
    for name in names:
        if name == "dem_hillshade":
            out.append("dem")
        elif name == "lantu":
            out += [layer.id for layer in registry if layer.is_vector]
        else:
            out.append(name)
    return sorted(set(out))


def requested(path: str, method: str) -> tuple[str, list[str]] | None:
    """(action, layer ids) a request needs rights for, or None when the route filters its own answer."""
    m = OGC_COLLECTION.match(path)
    if m:
        rest = m[2] or ""
        if rest.startswith("/items"):
            return ("edit" if method in EDIT_METHODS else "download"), [m[1]]
        if rest.startswith("/tiles"):
            return ("discover" if rest.count("/") <= 2 else "view"), [m[1]]
        if rest.startswith("/coverage"):
            return "download", [m[1]]
        return "discover", [m[1]]
    proto = protocol_of(path)
    args = _ci_args()
    op = args.get("REQUEST", "").lower()
    if proto == "WMS":
        if op in ("getmap", "getfeatureinfo"):
            return "view", registry_layers(_names(args.get("LAYERS")) + _names(args.get("QUERY_LAYERS")))
        if op in ("getlegendgraphic", "describelayer"):
            return "view", registry_layers(_names(args.get("LAYER") or args.get("LAYERS")))
    if proto == "WFS" and op in ("getfeature", "describefeaturetype", "getpropertyvalue"):
        return "download", _names(args.get("TYPENAMES") or args.get("TYPENAME"))
    if proto == "WMTS":
        rest = WMTS_REST.match(path)
        if rest:
            return "view", registry_layers([rest[1]])
        if op == "gettile" or op == "getfeatureinfo":
            return "view", registry_layers(_names(args.get("LAYER")))
    if proto == "TMS":
        rest = TMS_PATH.match(path)
        if rest:
            return "view", registry_layers([rest[1]])
    return None


# ---- hooks -----------------------------------------------------------------------------------------------------
class RateLimiter:
    """A per-process token bucket per caller: ``per_minute`` requests, refilled continuously."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, caller: str) -> float:
        """0 when allowed, else seconds until the next request may pass."""
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(caller, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.rate)
            if tokens >= 1:
                self._buckets[caller] = (tokens - 1, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (1 - tokens) / self.rate


class AccessLog:
    """Rows for ``lantu.access_log``, queued by requests and written in batches by one thread per process."""

    def __init__(self, pool_getter, retention_days: int):
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._pool_getter = pool_getter
        self.retention_days = retention_days
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add(self, row: tuple) -> None:
        self._queue.put(row)
        if self._thread is None or not self._thread.is_alive():
            with self._lock:
                if self._thread is None or not self._thread.is_alive():
                    self._thread = threading.Thread(target=self._run, name="access-log", daemon=True)
                    self._thread.start()

    def flush(self) -> int:
        """Write the queued requests, one row per (caller, protocol, action, layers, status) with its count
        (the time and path of the first)."""
        merged: dict[tuple, list] = {}
        taken = 0
        while not self._queue.empty() and taken < 20000:
            at, who, protocol, action, layers, status, path = self._queue.get()
            taken += 1
            key = (who, protocol, action, tuple(layers), status)
            if key in merged:
                merged[key][-1] += 1
            else:
                merged[key] = [at, who, protocol, action, list(layers), status, path, 1]
        if merged:
            from psycopg2.extras import execute_values

            with self._pool_getter().connection() as conn, conn.cursor() as cur:  # one statement per batch
                execute_values(cur, "INSERT INTO lantu.access_log (at, who, protocol, action, layers, status, path, "
                               "requests) VALUES %s", list(merged.values()),
                               template="(%s, %s, %s, %s, %s::text[], %s, %s, %s)", page_size=1000)
        return taken

    def _run(self) -> None:
        last_prune = 0.0
        while True:
            time.sleep(0.5)
            try:
                self.flush()
                if time.monotonic() - last_prune > 3600:
                    last_prune = time.monotonic()
                    with self._pool_getter().connection() as conn, conn.cursor() as cur:
                        cur.execute("DELETE FROM lantu.access_log WHERE at < now() - make_interval(days => %s)",
                                    (self.retention_days,))
            except Exception as exc:  # the database is away: this batch is lost, later ones are written once it is back
                log.warning("access log: could not write (%s); will retry", type(exc).__name__)


def install(app: Flask, resolver, the_policy: Policy, settings, pool_getter) -> None:
    app.extensions["lantu.policy"] = the_policy
    app.extensions["lantu.identity"] = resolver
    limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
    access_log = AccessLog(pool_getter, settings.access_log_retention_days)
    app.extensions["lantu.access_log"] = access_log
    cors = set(settings.cors_origins)

    @app.before_request
    def _gate():
        from lantu.server.identity import BadCredentials

        proto = protocol_of(request.path)
        g.protocol = proto
        try:
            g.identity = resolver.resolve(request.headers, request.args)
        except BadCredentials as exc:
            g.identity = ANONYMOUS
            return deny_response(proto, 401, str(exc))
        if limiter is not None and request.path != "/healthz":
            caller = g.identity.name if g.identity.authenticated else f"addr:{request.remote_addr}"
            wait = limiter.take(caller)
            if wait:
                resp = problem(429, "Too many requests", f"at most {settings.rate_limit_per_minute} requests a "
                               f"minute; retry in {wait:.1f} s", "TooManyRequests")
                resp.headers["Retry-After"] = str(max(1, round(wait)))
                return resp
        need = requested(request.path, request.method)
        g.layers, g.action = (need[1], need[0]) if need else ([], "")
        if need:
            try:
                require(need[1], need[0])
            except Denied as exc:
                return deny_response(proto, exc.status, exc.text)
        return None

    @app.after_request
    def _after(resp: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            resp.headers.setdefault(name, value)
        origin = request.headers.get("Origin")
        if origin and origin in cors:
            resp.headers["Access-Control-Allow-Origin"] = origin
            resp.headers["Vary"] = "Origin"
            resp.headers["Access-Control-Allow-Headers"] = "Authorization, X-API-Key, Content-Type, Prefer, If-Match"
            resp.headers["Access-Control-Expose-Headers"] = "Location, ETag, Content-Crs, Link"
        layers = getattr(g, "layers", None)
        if layers and request.path != "/healthz":
            who = identity()
            access_log.add((datetime.now(UTC), who.name, getattr(g, "protocol", "OGCAPI"), g.action or "",
                            list(layers), resp.status_code, request.path[:500]))
        return resp


# ---- capabilities: list only what the caller may use --------------------------------------------------------
def _local(tag) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def _tms_layer(node) -> str | None:
    """The layer of a TMS ``TileMap`` entry: the path segment after /tms/1.0.0/ in its href."""
    match = TMS_PATH.match("/tms/" + node.get("href", "").split("/tms/", 1)[-1])
    return match[1] if match else None


def filter_capabilities(body: bytes, protocol: str) -> bytes:
    """Drop the layers (WMS, WMTS) or feature types (WFS) the caller may not view (download for WFS) from a
    capabilities document; an admin's document is returned as it is."""
    if identity().is_admin or b"<" not in body[:200]:
        return body
    from lxml import etree

    from lantu.server.context import lantu

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True, remove_blank_text=False)
    try:
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return body  # an exception report or an engine error: nothing to filter
    element, key, action = {"WMS": ("Layer", "Name", "view"), "WFS": ("FeatureType", "Name", "download"),
                            "WMTS": ("Layer", "Identifier", "view"),
                            "TMS": ("TileMap", "@title", "view")}.get(protocol, (None, None, None))
    if element is None:
        return body
    removed = 0
    for node in list(root.iter()):
        if _local(node.tag) != element or _local(node.getparent().tag) == "Capability":
            continue  # the WMS root layer stays (it is the container)
        name = _tms_layer(node) if key == "@title" else _child_text(node, key)
        if name is None:
            continue
        wanted = registry_layers([name.split(":", 1)[-1]])
        if not all(allowed(lid, action) for lid in wanted if lantu().registry.get(lid) is not None):
            node.getparent().remove(node)
            removed += 1
    if not removed:
        return body
    # WMS group layers (titles only) left without any layer are dropped too.
    for node in list(root.iter()) if protocol == "WMS" else ():
        if _local(node.tag) == "Layer" and _child_text(node, "Name") is None and \
                not any(_local(c.tag) == "Layer" for c in node) and _local(node.getparent().tag) != "Capability":
            node.getparent().remove(node)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class CapabilitiesCache:
    """Capabilities documents as each role sees them, kept until the data change (change log) or the server
    restarts (the policy is read at start): a caller's GetCapabilities is answered without asking the engine
    again or filtering again. Keyed by path, parameters (the API key left out) and the caller's rights."""

    def __init__(self, size: int = 128):
        self.size = size
        self._entries: dict[tuple, tuple[int, int, list, bytes]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key() -> tuple:
        params = tuple(sorted((k.upper(), v) for k, v in request.args.items(multi=True) if k.upper() != "API_KEY"))
        return request.path, params, identity().signature

    @staticmethod
    def _version() -> int:
        from lantu.providers.changelog import current_change
        from lantu.server.context import lantu

        return current_change(lantu().pool)

    def get(self, key: tuple) -> Response | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] != self._version():
            return None
        return Response(entry[3], status=entry[1], headers=entry[2])

    def put(self, key: tuple, resp: Response) -> None:
        if resp.status_code != 200:
            return
        entry = (self._version(), resp.status_code, [(k, v) for k, v in resp.headers.items()
                                                      if k.lower() not in ("content-length", "date")], resp.get_data())
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[key] = entry


def capabilities_cache() -> CapabilitiesCache:
    app = current_app
    if "lantu.capabilities" not in app.extensions:
        app.extensions["lantu.capabilities"] = CapabilitiesCache()
    return app.extensions["lantu.capabilities"]

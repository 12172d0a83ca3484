"""OGC API – Features Part 4 (create, replace, update, delete) for callers granted ``edit`` (checked by the
policy gate before these routes run).

Bodies are GeoJSON features in CRS84, or in the CRS named by ``Content-Crs``. Each is checked like a load
(``providers/qc``: field types, required fields, code lists, YSDM, geometry type and validity) — a bad one is
a 400 naming the field and changes nothing. ``If-Match`` with the ETag from ``GET …/items/{fid}`` makes the
write conditional: a feature changed meanwhile gives 412.
"""

from __future__ import annotations

import json

import psycopg2.errors
import shapely
from flask import Blueprint, Response, request

from lantu.processes.geometry import to_storage
from lantu.providers import crs as crs_mod
from lantu.providers import edits, qc
from lantu.server.context import base_url, lantu
from lantu.server.errors import InvalidParameter, LantuHTTPError, NotFound
from lantu.server.policy import identity

bp = Blueprint("transactions", __name__)
MAX_BODY = 16 * 1024 * 1024
GEOJSON = "application/geo+json"


class PreconditionFailed(LantuHTTPError):
    status, code, title = 412, "PreconditionFailed", "Precondition failed"


class Conflict(LantuHTTPError):
    status, code, title = 409, "Conflict", "Conflict"


def _layer(cid: str):
    layer = lantu().registry.get(cid)
    if layer is None or not layer.is_vector or layer.geometry is None:
        raise NotFound(f"no editable collection {cid[:60]!r}")
    return layer


def _fid(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise NotFound(f"no feature {text[:30]!r}")
    return int(text)


def _body() -> dict:
    if request.content_length and request.content_length > MAX_BODY:
        raise InvalidParameter(f"the feature is larger than {MAX_BODY // 2**20} MiB", locator="body")
    try:
        doc = json.loads(request.get_data(cache=False) or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidParameter(f"the body is not JSON ({str(exc)[:80]})", locator="body") from None
    if not isinstance(doc, dict) or doc.get("type") != "Feature":
        raise InvalidParameter("the body must be a GeoJSON Feature", locator="body")
    return doc


def _content_crs() -> crs_mod.OutputCrs:
    value = request.headers.get("Content-Crs")
    if not value:
        return crs_mod.CRS84
    found = crs_mod.resolve(value.strip().strip("<>"))
    if found is None:
        raise InvalidParameter(f"Content-Crs {value[:80]!r} is not a supported CRS", locator="Content-Crs")
    return found


def _checked(layer, properties: dict, geometry: dict | None) -> tuple[dict, shapely.Geometry]:
    """A feature from the request (geometry in CRS84 or Content-Crs) through the loader's checks."""
    if not isinstance(geometry, dict):
        raise InvalidParameter("the feature has no geometry", locator="geometry")
    try:
        geom = to_storage(shapely.from_geojson(json.dumps(geometry)), _content_crs())
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        raise InvalidParameter(f"the geometry is not readable GeoJSON ({str(exc)[:100]})", locator="geometry") \
            from None
    return _qc(layer, properties, geom)


def _qc(layer, properties: dict, geom: shapely.Geometry) -> tuple[dict, shapely.Geometry]:
    """One feature (geometry in EPSG:4490) through the loader's checks: its typed row (registry codes) and
    geometry as stored; a 400 naming the first field or the geometry when a check fails."""
    if not isinstance(properties, dict):
        raise InvalidParameter("properties must be an object", locator="properties")
    names = list(properties)
    checked = qc.run_checks(layer, lantu().registry, field_names=names, columns=[[properties[n]] for n in names],
                            wkb=[shapely.to_wkb(geom)], declared_crs="EPSG:4490")
    errors = [i for i in checked.issues if i.severity == "error"]
    if errors:
        first = errors[0]
        detail = "; ".join(f"{i.message}" + (f" ({'; '.join(i.details[:2])})" if i.details else "") for i in errors[:5])
        raise InvalidParameter(detail, locator=first.field or ("geometry" if first.check.startswith("geometry")
                                                               else "properties"))
    return checked.rows[0], checked.geometries[0]


def _written(resp_status: int, cid: str, fid: int, tag: str) -> Response:
    url = f"{base_url()}/collections/{cid}/items/{fid}"
    return Response(status=resp_status, headers={"Location": url, "ETag": tag})


@bp.post("/collections/<cid>/items")
def create(cid: str) -> Response:
    layer = _layer(cid)
    feature = _body()
    row, geom = _checked(layer, feature.get("properties") or {}, feature.get("geometry"))
    try:
        fid, tag = edits.create(lantu().pool, layer, row, geom, identity().name)
    except psycopg2.errors.UniqueViolation:
        raise Conflict(f"a feature with BSM {row.get('BSM')!r} exists in {cid}", locator="BSM") from None
    return _written(201, cid, fid, tag)


@bp.put("/collections/<cid>/items/<fid>")
def replace(cid: str, fid: str) -> Response:
    layer, number = _layer(cid), _fid(fid)
    feature = _body()
    row, geom = _checked(layer, feature.get("properties") or {}, feature.get("geometry"))
    return _write(cid, layer, number, row, geom, "replace")


@bp.patch("/collections/<cid>/items/<fid>")
def update(cid: str, fid: str) -> Response:
    """A JSON merge patch of the feature: the properties given replace theirs (null clears), a geometry given
    replaces it."""
    layer, number = _layer(cid), _fid(fid)
    patch = _body()
    stored = edits.current(lantu().pool, layer, number)
    if stored is None:
        raise NotFound(f"no feature {number} in collection {cid!r}")
    props = {**stored["properties"], **(patch.get("properties") or {})}
    props = {k: v for k, v in props.items() if v is not None}
    geometry = patch.get("geometry") or None
    if geometry is None:  # keep the stored geometry (already in the storage CRS, x = longitude)
        row, geom = _qc(layer, props, shapely.from_geojson(json.dumps(stored["geometry"])))
    else:
        row, geom = _checked(layer, props, geometry)
    return _write(cid, layer, number, row, geom, "update")


def _write(cid: str, layer, fid: int, row: dict, geom, operation: str) -> Response:
    try:
        tag = edits.replace(lantu().pool, layer, fid, row, geom, identity().name, request.headers.get("If-Match"),
                            operation)
    except edits.NoSuchFeature:
        raise NotFound(f"no feature {fid} in collection {cid!r}") from None
    except edits.VersionMismatch as exc:
        raise PreconditionFailed(f"feature {fid} changed since it was read (now {exc}); read it again",
                                 locator="If-Match") from None
    except psycopg2.errors.UniqueViolation:
        raise Conflict(f"a feature with BSM {row.get('BSM')!r} exists in {cid}", locator="BSM") from None
    return _written(200, cid, fid, tag)


@bp.delete("/collections/<cid>/items/<fid>")
def delete(cid: str, fid: str) -> Response:
    layer, number = _layer(cid), _fid(fid)
    try:
        edits.delete(lantu().pool, layer, number, identity().name, request.headers.get("If-Match"))
    except edits.NoSuchFeature:
        raise NotFound(f"no feature {number} in collection {cid!r}") from None
    except edits.VersionMismatch as exc:
        raise PreconditionFailed(f"feature {number} changed since it was read (now {exc}); read it again",
                                 locator="If-Match") from None
    return Response(status=204)

"""OGC API – Coverages for the raster layers (the DEM): pygeoapi's rasterio provider, with Lantu checking
the parameters first (pygeoapi 0.21 answers a malformed bbox with a 500)."""

from __future__ import annotations

import math

from flask import Blueprint, Response, request
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request as WzRequest

from lantu.providers import crs as crs_mod
from lantu.server.collections import pygeoapi_request
from lantu.server.context import collections
from lantu.server.errors import InvalidParameter, NotFound

bp = Blueprint("coverages", __name__)
ALLOWED = {"f", "bbox", "bbox-crs"}


def _check_bbox(raw: str) -> None:
    try:
        numbers = [float(v) for v in raw.split(",")]
    except ValueError:
        raise InvalidParameter("bbox must be 4 comma-separated numbers (CRS84 lon/lat)", locator="bbox") from None
    if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
        raise InvalidParameter("bbox must be 4 finite numbers (CRS84 lon/lat)", locator="bbox")
    if numbers[0] >= numbers[2] or numbers[1] >= numbers[3] or not -90 <= numbers[1] <= numbers[3] <= 90:
        raise InvalidParameter("bbox must be minlon,minlat,maxlon,maxlat with min < max", locator="bbox")


@bp.get("/collections/<cid>/coverage")
def coverage(cid: str) -> Response:
    served = collections()
    api = served.api()
    if cid not in served.coverages:
        raise NotFound(f"no coverage collection {cid[:60]!r}")
    unknown = [k for k in request.args if k not in ALLOWED]
    if unknown:
        raise InvalidParameter(f"unknown query parameter {unknown[0][:40]!r}", locator=unknown[0][:40])
    if request.args.get("bbox-crs") and crs_mod.resolve(request.args["bbox-crs"]) is not crs_mod.CRS84:
        raise InvalidParameter("coverage bbox-crs: only CRS84 (lon/lat) is supported", locator="bbox-crs")
    if "bbox" in request.args:
        _check_bbox(request.args["bbox"])
    fmt = request.args.get("f", "GTiff")
    if fmt not in ("GTiff", "json"):
        raise InvalidParameter("f must be GTiff or json", locator="f")
    query = {"f": fmt} | ({"bbox": request.args["bbox"]} if "bbox" in request.args else {})
    fake = WzRequest(EnvironBuilder(path=request.path, query_string=query).get_environ())
    from pygeoapi.api.coverages import get_collection_coverage

    headers, status, content = get_collection_coverage(api, pygeoapi_request(fake, api), cid)
    if status >= 500:
        raise InvalidParameter("the coverage could not be subset with these parameters", locator="bbox")
    return Response(content, status=status, headers={k: v for k, v in headers.items()
                                                     if k.lower() in ("content-type", "content-disposition")})

"""Geometry inputs of the processes: a project site or an area of interest, given as GeoJSON (in any CRS
Lantu offers) or as an uploaded GeoPackage / zipped Shapefile / GeoJSON file, checked and brought to the
storage CRS (EPSG:4490, x = longitude) before a job is queued.

Every refusal names the input: not a polygon, invalid or self-intersecting (with GEOS's reason and place),
more than ``max_vertices``, an unsupported CRS, an empty or unreadable upload, a file type Lantu does not read.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from pathlib import Path
from typing import Any

import pyproj
import shapely

from lantu.processes.base import InvalidInput, plain_value
from lantu.providers import crs as crs_mod

UPLOAD_TYPES = {  # media type → file suffix GDAL reads it by
    "application/geo+json": ".geojson", "application/json": ".geojson",
    "application/geopackage+sqlite3": ".gpkg", "application/x-sqlite3": ".gpkg",
    "application/zip": ".zip", "application/x-zip-compressed": ".zip", "application/x-shapefile": ".zip",
}
POLYGONAL = ("Polygon", "MultiPolygon")


def crs_input(inputs: dict, name: str = "crs") -> crs_mod.OutputCrs:
    value = plain_value(inputs, name, crs_mod.CRS84_URI)
    if not isinstance(value, str):
        raise InvalidInput(name, "must be a CRS URI such as http://www.opengis.net/def/crs/EPSG/0/4547")
    found = crs_mod.resolve(value)
    if found is None:
        raise InvalidInput(name, f"{value[:80]!r} is not a supported CRS; use CRS84, EPSG:4490, EPSG:4326, "
                                 "EPSG:3857 or a CGCS2000 Gauss-Kruger zone (EPSG:4513–4554)")
    return found


def to_storage(geom: shapely.Geometry, source: crs_mod.OutputCrs) -> shapely.Geometry:
    """Coordinates in the CRS's axis order (as the OGC API convention wants) → EPSG:4490 with x = longitude."""
    if source.swap_axes:
        geom = shapely.transform(geom, lambda xy: xy[:, ::-1])
    if source.transform:
        transformer = pyproj.Transformer.from_crs(source.srid, crs_mod.STORAGE_SRID, always_xy=True)
        geom = shapely.transform(geom, lambda xy: _stack(transformer.transform(xy[:, 0], xy[:, 1])))
    return geom


def _stack(xy):
    import numpy as np

    return np.column_stack(xy)


def geojson_geometry(value: Any, name: str) -> shapely.Geometry:
    """A GeoJSON geometry, Feature or FeatureCollection (its polygons united) as a shapely geometry."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise InvalidInput(name, f"is not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict) or "type" not in value:
        raise InvalidInput(name, "must be a GeoJSON geometry, Feature or FeatureCollection")
    kind = value["type"]
    try:
        if kind == "FeatureCollection":
            features = value.get("features")
            if not isinstance(features, list) or not features:
                raise InvalidInput(name, "the FeatureCollection has no features")
            geoms = [shapely.geometry.shape(f["geometry"]) for f in features
                     if isinstance(f, dict) and f.get("geometry")]
            if not geoms:
                raise InvalidInput(name, "no feature of the FeatureCollection has a geometry")
            return _united(geoms, name)
        if kind == "Feature":
            if not value.get("geometry"):
                raise InvalidInput(name, "the Feature has no geometry")
            return shapely.geometry.shape(value["geometry"])
        return shapely.geometry.shape(value)
    except InvalidInput:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, shapely.errors.GEOSException) as exc:
        raise InvalidInput(name, f"is not a readable GeoJSON geometry ({str(exc)[:120]})") from None


def _united(geoms: list[shapely.Geometry], name: str) -> shapely.Geometry:
    bad = sorted({g.geom_type for g in geoms if g.geom_type not in POLYGONAL})
    if bad:
        raise InvalidInput(name, f"must hold polygons only, not {', '.join(bad)}")
    for g in geoms:
        _check_valid(g, name)
    parts = [p for g in geoms for p in shapely.get_parts(g)]
    return parts[0] if len(parts) == 1 else shapely.union_all(parts)


def _check_valid(geom: shapely.Geometry, name: str) -> None:
    if not shapely.is_valid(geom):
        reason = shapely.is_valid_reason(geom)
        raise InvalidInput(name, f"is not a valid polygon: {reason} (self-intersecting rings, spikes and "
                                 "overlapping parts are refused; repair the drawing)")


def polygon_input(inputs: dict, name: str, *, max_vertices: int, uploads_dir: Path,
                  required: bool = True) -> shapely.Geometry | None:
    """The named input as a valid (Multi)Polygon in EPSG:4490, or None when absent and not required."""
    raw = inputs.get(name)
    if raw is None:
        if required:
            raise InvalidInput(name, "is required")
        return None
    if isinstance(raw, dict) and raw.get("encoding") == "base64" or (
            isinstance(raw, dict) and raw.get("mediaType") in UPLOAD_TYPES and isinstance(raw.get("value"), str)
            and raw.get("mediaType") not in ("application/geo+json", "application/json")):
        geom, source = _upload(raw, name, uploads_dir, inputs)
    else:
        geom, source = geojson_geometry(plain_value(inputs, name), name), crs_input(inputs)
    if geom.geom_type not in POLYGONAL:
        raise InvalidInput(name, f"must be a Polygon or MultiPolygon, not {geom.geom_type}")
    if geom.is_empty:
        raise InvalidInput(name, "is empty")
    vertices = shapely.get_num_coordinates(geom)
    if vertices > max_vertices:
        raise InvalidInput(name, f"has {vertices} vertices; at most {max_vertices} are accepted (simplify it)")
    if not shapely.is_valid(geom):
        _check_valid(geom, name)
    stored = to_storage(geom, source)
    if not (-180 <= stored.bounds[0] <= stored.bounds[2] <= 180 and -90 <= stored.bounds[1] <= stored.bounds[3] <= 90):
        raise InvalidInput(name, "lies outside the valid range of longitude and latitude: check the crs input "
                                 "and the axis order (CRS84: longitude first; EPSG:4490: latitude first)")
    if shapely.area(stored) <= 0:
        raise InvalidInput(name, "has no area")
    return stored


def _upload(raw: dict, name: str, uploads_dir: Path, inputs: dict) -> tuple[shapely.Geometry, crs_mod.OutputCrs]:
    from lantu.providers.intake import read_gis_file

    media = raw.get("mediaType")
    suffix = UPLOAD_TYPES.get(media or "")
    if suffix is None:
        raise InvalidInput(name, f"file type {str(media)[:60]!r} is not read; upload a GeoPackage "
                                 "(application/geopackage+sqlite3), a zipped Shapefile (application/zip) or GeoJSON "
                                 "(application/geo+json)")
    try:
        data = base64.b64decode(raw.get("value") or "", validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(name, "the file is not valid base64") from None
    if not data:
        raise InvalidInput(name, "the uploaded file is empty")
    uploads_dir.mkdir(parents=True, exist_ok=True)
    path = uploads_dir / f"{uuid.uuid4()}{suffix}"
    path.write_bytes(data)
    try:
        wkbs, file_crs, problems = read_gis_file(path)
    finally:
        path.unlink(missing_ok=True)
    if problems:
        raise InvalidInput(name, "; ".join(problems))
    geoms = [shapely.from_wkb(w) for w in wkbs if w is not None]
    if not geoms:
        raise InvalidInput(name, "the uploaded file has no geometries")
    if file_crs:
        source = crs_mod.resolve(file_crs)
        if source is None:
            raise InvalidInput(name, f"the file's CRS {file_crs} is not supported; use CGCS2000 (EPSG:4490), "
                                     "a CGCS2000 Gauss-Kruger zone, WGS 84 or Web Mercator")
        # Files store x = easting/longitude whatever the EPSG axis order says.
        source = crs_mod.OutputCrs(source.uri, source.srid, False, source.transform, source.decimals)
    else:
        source = crs_input(inputs)
    return _united(geoms, name), source

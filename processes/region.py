"""Areas of interest: an administrative code (XZQDM of the county or of a town) or a drawn polygon, resolved
in the request to EWKB in EPSG:4490 so the queued job does not depend on anything but its inputs."""

from __future__ import annotations

import re

import shapely

from lantu.processes.base import Env, InvalidInput, plain_value
from lantu.processes.geometry import polygon_input

XZQDM = re.compile(r"^\d{6}(\d{3}(\d{3})?)?$")


def town_geometry(env: Env, code: str, name: str) -> shapely.Geometry | None:
    """The admin_divisions geometry of a 12-digit town code (9-digit accepted), None for the county."""
    code = code.ljust(12, "0")
    if code.endswith("000000"):
        return None  # a county code: everything
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_AsBinary(ST_Union(geom)) FROM blueprint.admin_divisions WHERE xzqdm = %s", (code,))
        row = cur.fetchone()
    if not row or row[0] is None:
        raise InvalidInput(name, f"no town with XZQDM {code}")
    return shapely.from_wkb(bytes(row[0]))


def aoi_input(inputs: dict, name: str, env: Env, required: bool = False) -> dict | None:
    """``{"xzqdm": …, "ewkb": hex}`` / ``{"ewkb": hex}`` / None (the whole county)."""
    value = plain_value(inputs, name)
    if value is None:
        if required:
            raise InvalidInput(name, "is required (an XZQDM or a polygon)")
        return None
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        if not XZQDM.match(value):
            raise InvalidInput(name, f"{value[:40]!r} is neither an XZQDM (6, 9 or 12 digits) nor a GeoJSON polygon")
        geom = town_geometry(env, value, name)
        if geom is None:
            return {"xzqdm": value.ljust(12, "0")[:6], "ewkb": None} if not required else \
                {"xzqdm": value, "ewkb": county_ewkb(env)}
        return {"xzqdm": value.ljust(12, "0"), "ewkb": ewkb_hex(geom)}
    geom = polygon_input(inputs, name, max_vertices=env.settings.max_input_vertices,
                         uploads_dir=env.settings.home / "uploads")
    return {"ewkb": ewkb_hex(geom)}


def county_ewkb(env: Env) -> str:
    with env.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_AsBinary(ST_Union(geom)) FROM blueprint.admin_divisions")
        return ewkb_hex(shapely.from_wkb(bytes(cur.fetchone()[0])))


def ewkb_hex(geom: shapely.Geometry) -> str:
    return shapely.to_wkb(shapely.set_srid(geom, 4490), hex=True, include_srid=True)


def aoi_ewkb(aoi: dict | None) -> bytes | None:
    if not aoi or not aoi.get("ewkb"):
        return None
    return bytes.fromhex(aoi["ewkb"])

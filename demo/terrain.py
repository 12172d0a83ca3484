"""The physical and human geography of the synthetic county: relief, rivers, lakes, urban pull.

Fixed features (the two rivers, 松雅湖, three reservoirs, the hills of the north-east, the airport and the
town seats) follow the real county loosely; everything random (relief noise, meanders' jitter, urban
noise) comes from the seed. All functions take EPSG:4547 coordinates in metres (x = easting) and are
vectorised; the land-use generator and the DEM both sample the same surface, so they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from lantu.demo.county import lonlat_to_planar, seats_planar, towns

# (name, lon/lat polyline from upstream to downstream, width in metres). The real rivers meander more.
RIVERS: tuple[tuple[str, tuple[tuple[float, float], ...], float], ...] = (
    ("浏阳河", ((113.480, 28.152), (113.420, 28.140), (113.367, 28.126), (113.312, 28.138), (113.257, 28.124),
              (113.214, 28.132), (113.172, 28.140), (113.135, 28.152), (113.108, 28.160), (113.080, 28.170),
              (113.020, 28.182)), 150.0),
    ("捞刀河", ((113.345, 28.410), (113.288, 28.382), (113.245, 28.369), (113.202, 28.351), (113.159, 28.333),
              (113.123, 28.318), (113.092, 28.300), (113.030, 28.292)), 110.0),
)
# (name, kind, lon, lat, semi-axis a, semi-axis b in metres, rotation in degrees)
LAKES: tuple[tuple[str, str, float, float, float, float, float], ...] = (
    ("松雅湖", "lake", 113.108, 28.276, 1300.0, 600.0, 25.0),
    ("官庄水库", "reservoir", 113.370, 28.585, 750.0, 380.0, -20.0),
    ("白石水库", "reservoir", 113.215, 28.598, 520.0, 300.0, 40.0),
    ("双江水库", "reservoir", 113.410, 28.522, 500.0, 320.0, 10.0),
)
# (name, lon, lat, height above the plain in metres, radius in metres)
HILLS: tuple[tuple[str, float, float, float, float], ...] = (
    ("影珠山", 113.310, 28.625, 420.0, 4200.0),
    ("福临岭", 113.455, 28.570, 330.0, 4500.0),
    ("高桥岭", 113.380, 28.495, 250.0, 4000.0),
    ("北山岭", 113.215, 28.520, 200.0, 5000.0),
    ("江背岭", 113.390, 28.095, 170.0, 3500.0),
    ("青山岭", 113.045, 28.455, 120.0, 4000.0),
)
# 黄花国际机场: centre lon/lat, length and width of the airfield in metres, runway bearing (degrees from east).
AIRPORT = ("黄花国际机场", 113.221, 28.193, 3800.0, 1100.0, 80.0)
# Economic-development zones add urban pull of their own (星沙经开区, 黄花临空经济区).
ZONES: tuple[tuple[str, float, float, float], ...] = (
    ("星沙经济技术开发区", 113.135, 28.275, 3000.0),
    ("黄花临空经济区", 113.195, 28.215, 1800.0),
)
# Urban radius (metres) of each town's seat, in town order of changsha-county-towns.csv.
SEAT_RADIUS = (4500.0, 3000.0, 2500.0, 2200.0, 2600.0, 1500.0, 1200.0, 1800.0, 1200.0, 1250.0, 1100.0, 1100.0,
               1200.0, 1000.0, 1100.0, 1400.0, 1100.0, 1000.0)


def _planar_points(lonlat) -> np.ndarray:
    arr = np.asarray(lonlat, dtype=float)
    x, y = lonlat_to_planar(arr[..., 0], arr[..., 1])
    return np.stack([x, y], axis=-1)


@dataclass(frozen=True)
class Waves:
    """A smooth random field: a sum of plane waves in random directions, roughly within [-1, 1].

    Several waves per octave (wavelengths spread log-uniformly, amplitude growing with the wavelength)
    keep the sum from looking like a lattice."""

    kx: np.ndarray
    ky: np.ndarray
    phase: np.ndarray
    amp: np.ndarray

    @classmethod
    def random(cls, rng: np.random.Generator, n: int, wavelengths: tuple[float, float],
               roughness: float = 1.0) -> Waves:
        lam = np.exp(rng.uniform(np.log(wavelengths[0]), np.log(wavelengths[1]), n))
        theta = rng.uniform(0, 2 * np.pi, n)
        amp = lam ** roughness
        amp = amp * 0.5 / np.sqrt((amp ** 2).sum() / 2)  # standard deviation ≈ 0.5
        return cls(2 * np.pi * np.cos(theta) / lam, 2 * np.pi * np.sin(theta) / lam, rng.uniform(0, 2 * np.pi, n),
                   amp)

    def __call__(self, x, y) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        out = np.zeros(np.broadcast(x, y).shape)
        for kx, ky, ph, a in zip(self.kx, self.ky, self.phase, self.amp, strict=True):
            out += a * np.sin(kx * x + ky * y + ph)
        return np.clip(out, -1.0, 1.0)


class Terrain:
    """Relief, water and urban pull of the demo county for one seed."""

    def __init__(self, rng: np.random.Generator):
        self.relief = Waves.random(rng, 36, (900.0, 16000.0), roughness=0.8)
        self.ridges = Waves.random(rng, 24, (2500.0, 14000.0), roughness=0.6)
        self.detail = Waves.random(rng, 16, (200.0, 1200.0))
        self.landuse = Waves.random(rng, 20, (400.0, 6000.0))
        self.urban_noise = Waves.random(rng, 16, (800.0, 5000.0))
        self.ridge_angle = np.radians(rng.uniform(30.0, 50.0))  # the ranges of eastern Hunan run SW–NE
        self.river_lines = [self._meander(rng, name, pts, width) for name, pts, width in RIVERS]
        self.hills = [(name, *_planar_points((lon, lat)), h, r) for name, lon, lat, h, r in HILLS]
        seats = seats_planar()
        zone_xy = _planar_points([(lon, lat) for _, lon, lat, _ in ZONES])
        self.urban_centres = np.vstack([seats, zone_xy])
        self.urban_radius = np.array(list(SEAT_RADIUS) + [r for *_, r in ZONES])
        # the south-west → north-east axis the ground rises along
        sw = _planar_points((113.00, 28.05))
        ne = _planar_points((113.48, 28.64))
        self._axis_origin = sw
        self._axis = (ne - sw) / np.dot(ne - sw, ne - sw)
        assert len(self.urban_radius) == len(towns()) + len(ZONES)

    # ---- water -------------------------------------------------------------------------------------
    @staticmethod
    def _meander(rng: np.random.Generator, name: str, pts, width: float) -> tuple[str, shapely.LineString, float]:
        line = shapely.LineString(_planar_points(pts))
        line = shapely.segmentize(line, 150.0)
        xy = shapely.get_coordinates(line)
        d = np.diff(xy, axis=0)
        normal = np.column_stack([-d[:, 1], d[:, 0]]) / np.hypot(d[:, 0], d[:, 1])[:, None]
        normal = np.vstack([normal, normal[-1:]])
        s = np.concatenate([[0.0], np.cumsum(np.hypot(d[:, 0], d[:, 1]))])
        lam, phase = rng.uniform(2200, 3200), rng.uniform(0, 2 * np.pi)
        amp = 260.0 * np.sin(np.pi * np.clip(s / 3000.0, 0, 1))  # start straight where it enters
        offset = amp * np.sin(2 * np.pi * s / lam + phase) + 60.0 * np.sin(2 * np.pi * s / 700.0 + 2 * phase)
        return name, shapely.LineString(xy + normal * offset[:, None]), width

    def river_polygons(self) -> list[tuple[str, shapely.Geometry]]:
        """River surfaces on the 1 m grid (not yet clipped to the county)."""
        return [(name, shapely.set_precision(shapely.buffer(line, width / 2, quad_segs=4), 1.0))
                for name, line, width in self.river_lines]

    @staticmethod
    def lake_polygons() -> list[tuple[str, str, shapely.Geometry]]:
        out = []
        for name, kind, lon, lat, a, b, rot in LAKES:
            cx, cy = _planar_points((lon, lat))
            t = np.linspace(0, 2 * np.pi, 33)[:-1]
            wobble = 1 + 0.12 * np.sin(3 * t + a) + 0.07 * np.cos(5 * t + b)
            ex, ey = a * np.cos(t) * wobble, b * np.sin(t) * wobble
            c, s = np.cos(np.radians(rot)), np.sin(np.radians(rot))
            ring = np.column_stack([cx + c * ex - s * ey, cy + s * ex + c * ey])
            out.append((name, kind, shapely.set_precision(shapely.Polygon(np.round(ring)), 1.0)))
        return out

    @staticmethod
    def airport_polygon() -> shapely.Geometry:
        _, lon, lat, length, width, bearing = AIRPORT
        cx, cy = _planar_points((lon, lat))
        c, s = np.cos(np.radians(bearing)), np.sin(np.radians(bearing))
        hl, hw = length / 2, width / 2
        corners = np.array([(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)])
        ring = np.column_stack([cx + c * corners[:, 0] - s * corners[:, 1], cy + s * corners[:, 0] + c * corners[:, 1]])
        return shapely.Polygon(np.round(ring))

    def river_distance(self, x, y) -> np.ndarray:
        pts = shapely.points(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
        return np.min([shapely.distance(pts, line) for _, line, _ in self.river_lines], axis=0)

    # ---- relief ------------------------------------------------------------------------------------
    def rise(self, x, y) -> np.ndarray:
        """0 in the south-west, 1 in the north-east."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        return np.clip((x - self._axis_origin[0]) * self._axis[0] + (y - self._axis_origin[1]) * self._axis[1], 0, 1)

    def elevation(self, x, y, river_distance=None) -> np.ndarray:
        """Ground height in metres: ~30 m along the rivers in the south-west, ridges to ~500 m in the north-east."""
        x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        t = self.rise(x, y)
        ca, sa = np.cos(self.ridge_angle), np.sin(self.ridge_angle)
        hills = np.zeros(np.broadcast(x, y).shape)
        for _, hx, hy, h, r in self.hills:  # massifs stretched along the ridge direction
            along = (x - hx) * ca + (y - hy) * sa
            across = -(x - hx) * sa + (y - hy) * ca
            hills += h * np.exp(-(along / (1.6 * r)) ** 2 - (across / (0.8 * r)) ** 2)
        hilly = np.clip(0.12 + 0.9 * t ** 1.4 + hills / 320.0, 0.0, 1.4)
        ridged = 1.0 - np.abs(self.ridges(x, y))
        z = 38.0 + 55.0 * t ** 1.5 + hills + hilly * 35.0 * self.relief(x, y) + hilly ** 2 * 60.0 * ridged ** 3
        z += (2.0 + 8.0 * hilly) * self.detail(x, y)
        d = self.river_distance(x, y) if river_distance is None else river_distance
        base = 29.0 + 12.0 * t
        z = base + np.maximum(z - base, 0.0) * (1.0 - 0.9 * np.exp(-(d / 1400.0) ** 2))
        return np.maximum(z, base - 2.0)

    # ---- people ------------------------------------------------------------------------------------
    def urban(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Urban pull in [0, ~1.1] and the index of the strongest centre (town seats first, then zones)."""
        x = np.asarray(x, dtype=float)[..., None]
        y = np.asarray(y, dtype=float)[..., None]
        d2 = (x - self.urban_centres[:, 0]) ** 2 + (y - self.urban_centres[:, 1]) ** 2
        pull = np.exp(-d2 / self.urban_radius ** 2)
        best = np.argmax(pull, axis=-1)
        u = np.max(pull, axis=-1) + 0.12 * self.urban_noise(x[..., 0], y[..., 0])
        return u, best

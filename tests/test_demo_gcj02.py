"""GCJ-02 forward formula and its iterative inverse (lantu.demo.gcj02), and the county boundary built on it."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import shapely

from lantu.demo import county, gcj02

GEOD = pyproj.Geod(ellps="GRS80")


def county_points(n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A grid of WGS 84 points over 长沙县's bounding box (lon 112.97–113.51, lat 28.03–28.67)."""
    lon, lat = np.meshgrid(np.linspace(112.97, 113.51, n), np.linspace(28.03, 28.67, n))
    return lon, lat


def test_forward_matches_the_published_reference_value():
    # The widely used public test vector (coordTransform and its ports): WGS 84 (116.404, 39.915) → GCJ-02.
    lon, lat = gcj02.from_wgs84(116.404, 39.915)
    assert lon == pytest.approx(116.41024449916938, abs=1e-12)
    assert lat == pytest.approx(39.91640428150164, abs=1e-12)


def test_round_trip_is_below_one_centimetre_over_the_county():
    lon, lat = county_points()
    glon, glat = gcj02.from_wgs84(lon, lat)
    back_lon, back_lat = gcj02.to_wgs84(glon, glat)
    assert back_lon.shape == lon.shape
    _, _, dist = GEOD.inv(lon.ravel(), lat.ravel(), back_lon.ravel(), back_lat.ravel())
    assert np.max(dist) < 0.01
    assert np.max(np.abs(back_lon - lon)) < 1e-8 and np.max(np.abs(back_lat - lat)) < 1e-8


def test_inverse_meets_its_own_tolerance_on_the_real_boundary():
    ring = shapely.get_coordinates(county.boundary_gcj02())
    wlon, wlat = gcj02.to_wgs84(ring[:, 0], ring[:, 1])
    flon, flat = gcj02.from_wgs84(wlon, wlat)
    assert np.max(np.abs(flon - ring[:, 0])) < gcj02.TOLERANCE_DEG
    assert np.max(np.abs(flat - ring[:, 1])) < gcj02.TOLERANCE_DEG


def test_the_shift_at_changsha_county_is_the_expected_six_hundred_metres():
    lon, lat = county_points(10)
    glon, glat = gcj02.from_wgs84(lon, lat)
    assert np.mean(glon - lon) == pytest.approx(0.0057, abs=0.0008)
    assert np.mean(glat - lat) == pytest.approx(-0.0033, abs=0.0008)
    _, _, dist = GEOD.inv(lon.ravel(), lat.ravel(), glon.ravel(), glat.ravel())
    assert 500 < np.mean(dist) < 800


def test_outside_china_is_unchanged():
    lon, lat = gcj02.from_wgs84([-73.98, 2.35], [40.75, 48.85])
    assert lon.tolist() == [-73.98, 2.35] and lat.tolist() == [40.75, 48.85]
    lon, lat = gcj02.to_wgs84([-73.98], [40.75])
    assert lon.tolist() == [-73.98] and lat.tolist() == [40.75]


def test_county_boundary_on_the_grid_of_epsg_4547():
    poly = county.county_planar()
    assert poly.is_valid and poly.geom_type == "Polygon"
    xy = shapely.get_coordinates(poly)
    assert np.array_equal(xy, np.round(xy))
    assert poly.area / 1e6 == pytest.approx(1756, rel=0.01)  # the official area is ≈ 1 756 km²
    # x is the easting: 长沙县 lies west of the 114°E central meridian, so x < 500 000 m
    assert 395_000 < xy[:, 0].min() and xy[:, 0].max() < 455_000
    assert 3_100_000 < xy[:, 1].min() and xy[:, 1].max() < 3_175_000
    # converting moved it by the GCJ-02 offset: the shipped outline is ~650 m east-south-east of the true one
    raw = shapely.get_coordinates(county.boundary_gcj02())
    x, y = county.lonlat_to_planar(raw[:, 0], raw[:, 1])
    dx, dy = x.mean() - xy[:, 0].mean(), y.mean() - xy[:, 1].mean()
    assert 450 < dx < 700 and -500 < dy < -250

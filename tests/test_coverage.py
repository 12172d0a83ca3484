"""The demo DEM as an OGC API – Coverages collection, subset by bbox (pygeoapi's rasterio provider behind
Lantu's parameter checks). Expected pixels come from rasterio on the DEM file itself."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.windows import from_bounds

from lantu.server.app import create_app


@pytest.fixture(scope="module")
def client(settings, registry, small_demo):
    return create_app(settings, registry).test_client()


def test_dem_is_a_coverage_collection_and_subsets_by_bbox(client, small_demo):
    landing = client.get("/?f=json").get_json()["links"]
    assert any(link["href"].endswith("/collections/dem/coverage") for link in landing)
    rels = {link["rel"] for link in client.get("/collections/dem?f=json").get_json()["links"]}
    assert "http://www.opengis.net/def/rel/ogc/1.0/coverage" in rels
    with rasterio.open(small_demo["dem"]) as dem:
        left, bottom, right, top = dem.bounds
        box = (left + (right - left) * 0.3, bottom + (top - bottom) * 0.3,
               left + (right - left) * 0.5, bottom + (top - bottom) * 0.5)
        expected_shape = dem.read(1, window=from_bounds(*box, transform=dem.transform)).shape
        response = client.get("/collections/dem/coverage?bbox=" + ",".join(f"{v:.10f}" for v in box))
        assert response.status_code == 200 and response.mimetype == "application/tiff"
        with MemoryFile(response.data) as mem, mem.open() as sub:
            assert sub.crs.to_epsg() == 4490
            assert sub.bounds.left == pytest.approx(box[0], abs=2 * sub.res[0])
            assert sub.bounds.top == pytest.approx(box[3], abs=2 * sub.res[1])
            got = sub.read(1)
            valid = np.argwhere(got != sub.nodata)
            centres = [sub.xy(int(r), int(c)) for r, c in valid]  # x = lon
        # Every delivered pixel holds the DEM's value at its own position (the subset is georeferenced
        # correctly, no axis swap), and nearly the whole requested window is delivered.
        truth = np.array([v[0] for v in dem.sample(centres)])
    assert len(valid) >= 0.9 * expected_shape[0] * expected_shape[1]
    assert np.allclose(got[tuple(valid.T)], truth)


@pytest.mark.parametrize("query", ["bbox=1,2,3", "bbox=113.2,28.3,113.1,28.2", "bbox=a,b,c,d", "foo=1",
                                   "bbox-crs=EPSG:4547&bbox=1,2,3,4", "f=xml", "bbox=0,-95,1,1"])
def test_bad_coverage_requests_are_400(client, query):
    response = client.get("/collections/dem/coverage?" + query)
    assert response.status_code == 400
    assert response.get_json()["status"] == 400


def test_unknown_coverage_is_404(client):
    assert client.get("/collections/land_use_survey/coverage").status_code == 404

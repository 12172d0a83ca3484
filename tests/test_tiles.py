"""OGC API – Tiles acceptance: vector tiles in four grids, read by real decoders, cached and invalidated.

1. ``mapbox-vector-tile`` and GDAL's MVT driver (``ogrinfo`` 3.6) read polygon, line and point tiles; a planted
   polygon, a line and a point fall where they must in the 4096-pixel tile space (y down) of WebMercatorQuad,
   WorldCRS84Quad, CGCS2000Quad (天地图 levels) and CGCS2000GK38. Tile addresses and pixel positions are worked
   out here by hand with pyproj (cross-checked with morecantile), never read from Lantu. CGCS2000Quad level n
   is byte-identical to WorldCRS84Quad level n − 1, and its tile matrix set is 天地图's grid with 0.28 mm pixels.
2. GDAL's OGCAPI driver opens a collection's tilesets (``API=TILES``) and reads the planted polygon: the GDAL
   that pyogrio's wheel bundles (3.12). The system GDAL 3.6.2 (Debian) only gets as far as parsing the tile
   matrix set, which is pinned too; its build has no OGC API vector tiles (see that test).
3. A load into an area replaces exactly the cached tiles of that area (change log → disk cache), ETags,
   ``If-None-Match`` → 304, empty tiles → 204.
4. Malformed or impossible tile addresses → 4xx ``application/problem+json``.
5. TileJSON, tileset metadata, conformance, links, and the blueprint tileset's per-layer zoom range.

GDAL's MVT driver, single tiles over HTTP: ``MVT:/vsicurl/<tile URL>?f=mvt``. Without a query string GDAL
takes a URL whose last part is a number for a tileset *directory* and fails; ``-oo X= -oo Y= -oo Z=`` give the
tile address (GDAL's X/Y are OGC's tileCol/tileRow), and for the non-WebMercator grids a metadata file with
``crs``, ``tile_origin_upper_left_x/y`` and ``tile_dimension_zoom_0`` (``-oo METADATA_FILE=``). GDAL assumes
2^Z × 2^Z tiles at level Z, so CGCS2000Quad level n is GDAL level n of a 360° quad (天地图's numbering is exactly
that), and WorldCRS84Quad level n is GDAL level n + 1 of the same quad.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
import requests
import shapely
from psycopg2 import sql
from pyproj import Transformer
from shapely.geometry import Point, box, shape

from lantu.providers.tables import table_id
from lantu.server.app import create_app
from lantu.tiles.tms import grids

MVT = "application/vnd.mapbox-vector-tile"
PROBLEM = "application/problem+json"
EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
EXTENT, BUFFER = 4096, 64
R = 20037508.342789244  # half the width of the WebMercator world, metres


# ---- the grids, written out by hand --------------------------------------------------------------------
@cache
def transformer(source: int, target: int) -> Transformer:
    return Transformer.from_crs(source, target, always_xy=True)


@dataclass(frozen=True)
class Frame:
    """A grid as its definition says: CRS of the tile coordinates (x = east; None: the stored lon/lat, as
    the server does not shift CGCS2000 to WGS 84 either), top-left corner, and the width of a tile at level
    0 (CGCS2000Quad: its virtual level 0, 360°, so that 天地图 level n is 360° / 2^n)."""

    epsg: int | None
    left: float
    top: float
    span0: float
    gdal_span0: float  # a square quad GDAL's MVT driver can place the tiles in (it assumes 2^Z × 2^Z tiles)

    def size(self, level: int) -> float:
        return self.span0 / 2**level

    def project(self, lon, lat):
        if self.epsg is None:
            return lon, lat
        return transformer(4490, self.epsg).transform(lon, lat)


FRAMES = {
    "WebMercatorQuad": Frame(3857, -R, R, 2 * R, 2 * R),
    "WorldCRS84Quad": Frame(None, -180.0, 90.0, 180.0, 360.0),
    "CGCS2000Quad": Frame(None, -180.0, 90.0, 360.0, 360.0),
    "CGCS2000GK38": Frame(4547, -100000.0, 5900000.0, 3400000.0, 3400000.0),
}


@dataclass(frozen=True)
class Spot:
    """Where a lon/lat point falls: the tile (OGC tileMatrix/tileRow/tileCol) and its pixel (y down)."""

    grid: str
    level: int
    row: int
    col: int
    px: float
    py: float

    @property
    def frame(self) -> Frame:
        return FRAMES[self.grid]

    @property
    def path(self) -> str:
        return f"{self.grid}/{self.level}/{self.row}/{self.col}"

    @property
    def pixel(self) -> Point:
        return Point(self.px, self.py)

    def to_pixels(self, geom):
        """A lon/lat geometry in this tile's pixel space (y down), clipped like ST_AsMVTGeom does."""
        frame, size = self.frame, self.frame.size(self.level)

        def along(coords: np.ndarray) -> np.ndarray:
            x, y = frame.project(coords[:, 0], coords[:, 1])
            return np.column_stack([(np.asarray(x) - frame.left) / size * EXTENT - self.col * EXTENT,
                                    (frame.top - np.asarray(y)) / size * EXTENT - self.row * EXTENT])

        return shapely.transform(geom, along).intersection(box(-BUFFER, -BUFFER, EXTENT + BUFFER, EXTENT + BUFFER))

    def in_frame(self, lon: float, lat: float) -> tuple[float, float]:
        return self.frame.project(lon, lat)

    @property
    def pixel_size(self) -> float:
        return self.frame.size(self.level) / EXTENT

    def storage_bounds(self) -> tuple[float, float, float, float]:
        """The tile plus the render buffer, as a lon/lat box (exact for the geographic grids and WebMercator,
        whose tiles are lon/lat rectangles)."""
        frame, size = self.frame, self.frame.size(self.level)
        margin = size * BUFFER / EXTENT
        x0, x1 = frame.left + self.col * size - margin, frame.left + (self.col + 1) * size + margin
        y1, y0 = frame.top - self.row * size + margin, frame.top - (self.row + 1) * size - margin
        if frame.epsg is None:
            return x0, y0, x1, y1
        back = transformer(frame.epsg, 4490)
        (lon0, lon1), (lat0, lat1) = back.transform([x0, x1], [y0, y1])
        return lon0, lat0, lon1, lat1


def spot(grid: str, level: int, lon: float, lat: float) -> Spot:
    frame = FRAMES[grid]
    size = frame.size(level)
    x, y = frame.project(lon, lat)
    col, row = math.floor((x - frame.left) / size), math.floor((frame.top - y) / size)
    px = (x - frame.left) / size * EXTENT - col * EXTENT
    py = (frame.top - y) / size * EXTENT - row * EXTENT
    return Spot(grid, level, row, col, px, py)


def test_hand_made_grids_agree_with_morecantile():
    """The reference math above against morecantile's OGC definitions (WebMercatorQuad, WorldCRS84Quad)."""
    for grid, level in (("WebMercatorQuad", 14), ("WorldCRS84Quad", 13)):
        tms = morecantile.tms.get(grid)
        for lon, lat in ((113.3146, 28.0961), (-70.1, -33.4), (0.5, 51.5)):
            s = spot(grid, level, lon, lat)
            assert tms.tile(lon, lat, level) == morecantile.Tile(s.col, s.row, level)
    # CGCS2000Quad level n = WorldCRS84Quad level n - 1, same row and column.
    a, b = spot("CGCS2000Quad", 9, 113.3, 28.1), spot("WorldCRS84Quad", 8, 113.3, 28.1)
    assert (a.row, a.col, a.px, a.py) == (b.row, b.col, b.px, b.py)


# ---- fixtures -------------------------------------------------------------------------------------------
def sql_rows(pool, statement, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


@dataclass(frozen=True)
class Planted:
    layer: str
    fid: int
    bsm: str
    lon: float  # a point of the feature (polygon: ST_PointOnSurface; line: its middle)
    lat: float
    geom: object  # shapely, lon/lat


@pytest.fixture(scope="module")
def client(settings, registry, pool, small_demo):
    return create_app(settings, registry).test_client()


@pytest.fixture(scope="module")
def polygon(pool, small_demo) -> Planted:
    """A basic_farmland polygon planted by the demo generator in a three-control-lines conflict."""
    truth = json.loads(Path(small_demo["truth"]).read_text())
    conflict = next(c for c in truth["conflicts"] if "basic_farmland" in c["layers"])
    bsm = conflict["bsm"][conflict["layers"].index("basic_farmland")]
    return _planted(pool, "basic_farmland", "ST_PointOnSurface(geom)", "bsm = %s", (bsm,))


@pytest.fixture(scope="module")
def line(pool, small_demo) -> Planted:
    return _planted(pool, "road_centerline", "ST_LineInterpolatePoint(ST_GeometryN(geom, 1), 0.5)",
                    "true ORDER BY ST_Length(geom) DESC, fid", ())


@pytest.fixture(scope="module")
def point(pool, small_demo) -> Planted:
    return _planted(pool, "key_projects", "geom", "true ORDER BY bsm", ())


def _planted(pool, layer: str, where_on: str, condition: str, params) -> Planted:
    rows = sql_rows(pool, f"SELECT fid, bsm, ST_X(p), ST_Y(p), ST_AsBinary(geom) FROM (SELECT fid, bsm, geom, "
                          f"{where_on} AS p FROM blueprint.{layer} WHERE {condition} LIMIT 1) s", params)
    assert rows, f"no {layer} feature in the demo"
    fid, bsm, lon, lat, wkb = rows[0]
    return Planted(layer, fid, bsm, lon, lat, shapely.from_wkb(bytes(wkb)))


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen


@pytest.fixture(scope="module")
def server(small_demo, lantu_serve):
    """``lantu serve`` (gunicorn, 2 workers) over the session database; its cache is the session's too."""
    with lantu_serve("serve-tiles") as (url, log, process):
        yield Server(url, log, process)


def fetch_tile(client, path: str, status: int = 200, headers=None):
    response = client.get(path, headers=headers or {})
    assert response.status_code == status, (path, response.status_code, response.get_data(as_text=True)[:300])
    return response


def decode(data: bytes) -> dict:
    # MVT's y axis points down; mapbox-vector-tile flips it to y-up unless told otherwise.
    return mapbox_vector_tile.decode(data, default_options={"y_coord_down": True})


def decoded_feature(tile: dict, layer: str, fid: int) -> dict:
    assert layer in tile, f"layer {layer} not in tile (has {sorted(tile)})"
    assert tile[layer]["extent"] == EXTENT
    found = [f for f in tile[layer]["features"] if f["id"] == fid]
    assert len(found) == 1, f"feature {fid} found {len(found)} times in {layer}"
    return found[0]


def get_json(client, path: str, status: int = 200) -> dict:
    response = client.get(path)
    assert response.status_code == status, (path, response.get_data(as_text=True)[:500])
    return response.get_json(force=True)


# ---- 1. decoded tiles put features where they belong ----------------------------------------------------
POLYGON_LEVELS = [("WebMercatorQuad", 14), ("WorldCRS84Quad", 13), ("CGCS2000Quad", 14), ("CGCS2000GK38", 9)]


@pytest.mark.parametrize(("grid", "level"), POLYGON_LEVELS)
def test_planted_polygon_decodes_in_place(client, polygon, grid, level):
    where = spot(grid, level, polygon.lon, polygon.lat)
    response = fetch_tile(client, f"/collections/basic_farmland/tiles/{where.path}")
    assert response.mimetype == MVT
    feature = decoded_feature(decode(response.data), "basic_farmland", polygon.fid)
    assert feature["properties"]["BSM"] == polygon.bsm
    decoded = shape(feature["geometry"])
    assert decoded.geom_type in ("Polygon", "MultiPolygon")
    # The representative point lies in the decoded polygon (up to the rounding to whole pixels) ...
    assert decoded.distance(where.pixel) <= 1.5, (where, decoded.bounds)
    # ... and so does the whole outline: flipped, shifted or mis-scaled tiles are pixels or tiles away.
    expected = where.to_pixels(polygon.geom)
    assert decoded.hausdorff_distance(expected) <= 2.0
    assert decoded.symmetric_difference(expected).area <= 0.01 * expected.area


@pytest.mark.parametrize("grid", ["WebMercatorQuad", "CGCS2000Quad"])
def test_line_and_point_decode_in_place(client, line, point, grid):
    where = spot(grid, 15, line.lon, line.lat)
    feature = decoded_feature(decode(fetch_tile(client, f"/collections/road_centerline/tiles/{where.path}").data),
                              "road_centerline", line.fid)
    decoded = shape(feature["geometry"])
    assert decoded.geom_type in ("LineString", "MultiLineString")
    assert decoded.distance(where.pixel) <= 1.5
    assert decoded.hausdorff_distance(where.to_pixels(line.geom)) <= 2.0

    where = spot(grid, 15, point.lon, point.lat)
    feature = decoded_feature(decode(fetch_tile(client, f"/collections/key_projects/tiles/{where.path}").data),
                              "key_projects", point.fid)
    assert feature["properties"]["BSM"] == point.bsm
    assert feature["geometry"]["type"] == "Point"
    assert shape(feature["geometry"]).distance(where.pixel) <= 0.75  # rounded to the nearest whole pixel


@pytest.mark.parametrize("level", [2, 9, 14])
def test_cgcs2000quad_level_n_is_worldcrs84quad_level_n_minus_1(client, polygon, level):
    a, b = spot("CGCS2000Quad", level, polygon.lon, polygon.lat), spot("WorldCRS84Quad", level - 1, polygon.lon,
                                                                           polygon.lat)
    assert (a.row, a.col) == (b.row, b.col)
    tile_a = fetch_tile(client, f"/collections/basic_farmland/tiles/{a.path}").data
    tile_b = fetch_tile(client, f"/collections/basic_farmland/tiles/{b.path}").data
    assert tile_a and tile_a == tile_b


TIANDITU_LEVEL1_SCALE_96DPI = 295829355.45  # 天地图's published level-1 scale denominator (96 DPI pixels)


def test_cgcs2000quad_tile_matrix_set_is_the_tianditu_grid_with_ogc_pixels(client):
    doc = get_json(client, "/tileMatrixSets/CGCS2000Quad")
    crs84 = {m["id"]: m for m in get_json(client, "/tileMatrixSets/WorldCRS84Quad")["tileMatrices"]}
    assert doc["id"] == "CGCS2000Quad"
    assert doc["crs"] == EPSG.format(4490)
    assert doc["uri"] == grids()["CGCS2000Quad"].uri
    matrices = doc["tileMatrices"]
    assert [m["id"] for m in matrices] == [str(n) for n in range(1, 21)]  # 天地图 level numbers
    metres_per_degree = 2 * math.pi * 6378137.0 / 360  # CGCS2000 (GRS 80) semi-major axis
    for n, matrix in enumerate(matrices, start=1):
        cell = 180.0 / 256 / 2 ** (n - 1)
        assert (matrix["matrixWidth"], matrix["matrixHeight"]) == (2**n, 2 ** (n - 1))
        assert (matrix["tileWidth"], matrix["tileHeight"]) == (256, 256)
        assert matrix["pointOfOrigin"] == [90, -180]  # EPSG:4490 axis order: lat, lon
        assert matrix.get("cornerOfOrigin", "topLeft") == "topLeft"
        assert matrix["cellSize"] == pytest.approx(cell, rel=1e-12)
        assert matrix["scaleDenominator"] == pytest.approx(cell * metres_per_degree / 0.00028, rel=1e-12)
        twin = crs84[str(n - 1)]
        assert matrix["scaleDenominator"] == pytest.approx(twin["scaleDenominator"], rel=1e-12)
        assert matrix["cellSize"] == pytest.approx(twin["cellSize"], rel=1e-12)
    assert (matrices[0]["matrixWidth"], matrices[0]["matrixHeight"]) == (2, 1)
    assert matrices[0]["scaleDenominator"] == pytest.approx(279541132.0143589, rel=1e-9)
    assert matrices[0]["scaleDenominator"] != pytest.approx(TIANDITU_LEVEL1_SCALE_96DPI, rel=1e-3)


def test_gauss_kruger_point_of_origin_is_in_crs_axis_order(client):
    """EPSG:4547's axes are northing, easting (morecantile alone gets this wrong: it reads the first axis'
    abbreviation, "X"); GDAL >= 3.7 follows the CRS and would otherwise ask for negative rows."""
    doc = get_json(client, "/tileMatrixSets/CGCS2000GK38")
    assert doc["crs"] == EPSG.format(4547)
    assert doc["tileMatrices"][0]["pointOfOrigin"] == [5900000.0, -100000.0]


def test_tile_matrix_set_bounding_boxes_are_tms_2_0(client):
    for grid in grids().values():
        doc = get_json(client, f"/tileMatrixSets/{grid.id}")
        bbox = doc.get("boundingBox")
        if bbox is None:
            continue  # optional
        assert {"lowerLeft", "upperRight"} <= set(bbox), (grid.id, bbox)
        if "lowerCorner" in bbox:
            assert (bbox["lowerLeft"], bbox["upperRight"]) == (bbox["lowerCorner"], bbox["upperCorner"])


def test_morecantile_reads_the_published_tile_matrix_sets(client, polygon):
    for grid, level in POLYGON_LEVELS:
        tms = morecantile.TileMatrixSet.model_validate(get_json(client, f"/tileMatrixSets/{grid}"))
        where, frame = spot(grid, level, polygon.lon, polygon.lat), FRAMES[grid]
        size = frame.size(level)
        bounds = tms.xy_bounds(morecantile.Tile(where.col, where.row, level))
        assert tuple(bounds) == pytest.approx((frame.left + where.col * size, frame.top - (where.row + 1) * size,
                                              frame.left + (where.col + 1) * size, frame.top - where.row * size))


# ---- 1b. GDAL's MVT driver (system ogrinfo) ------------------------------------------------------------
WKT_LINE = re.compile(r"^  ((?:MULTI)?(?:POINT|LINESTRING|POLYGON) .*)$", re.MULTILINE)


def gdal_mvt_feature(server: Server, tmp_path: Path, collection: str, where: Spot, fid: int) -> tuple[str, object]:
    """The feature ``fid`` of a tile read by ``ogrinfo`` through ``/vsicurl/``: its layer summary and geometry
    (in the grid's coordinates)."""
    frame = where.frame
    z = where.level + round(math.log2(frame.gdal_span0 / frame.span0))
    options = ["-oo", f"X={where.col}", "-oo", f"Y={where.row}", "-oo", f"Z={z}"]
    if where.grid == "WebMercatorQuad":
        options += ["-oo", "METADATA_FILE="]  # GDAL's default grid; no metadata.json next to the tile
    else:
        metadata = tmp_path / f"{where.grid}.json"
        metadata.write_text(json.dumps({
            "crs": f"EPSG:{frame.epsg or 4490}", "tile_origin_upper_left_x": frame.left,
            "tile_origin_upper_left_y": frame.top, "tile_dimension_zoom_0": frame.gdal_span0}))
        options += ["-oo", f"METADATA_FILE={metadata}"]
    source = f"MVT:/vsicurl/{server.url}/collections/{collection}/tiles/{where.path}?f=mvt"
    result = subprocess.run(["ogrinfo", "-ro", "-al", source, *options, "-where", f"mvt_id = {fid}"],
                            capture_output=True, text=True, timeout=60, env=dict(os.environ, CPL_DEBUG="OFF"))
    assert result.returncode == 0, f"ogrinfo {source} failed:\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}"
    assert "ERROR" not in result.stderr, result.stderr
    found = WKT_LINE.findall(result.stdout)
    assert len(found) == 1, result.stdout[-2000:]
    return result.stdout, shapely.from_wkt(found[0])


@pytest.mark.parametrize(("grid", "level"), POLYGON_LEVELS)
def test_gdal_mvt_driver_places_the_polygon(server, polygon, tmp_path, grid, level):
    where = spot(grid, level, polygon.lon, polygon.lat)
    out, geom = gdal_mvt_feature(server, tmp_path, "basic_farmland", where, polygon.fid)
    assert f"BSM (String) = {polygon.bsm}" in out
    assert geom.geom_type in ("Polygon", "MultiPolygon")
    assert geom.distance(Point(where.in_frame(polygon.lon, polygon.lat))) <= 1.5 * where.pixel_size


def test_gdal_mvt_driver_reads_lines_and_points(server, line, point, tmp_path):
    for planted, kinds in ((line, ("LineString", "MultiLineString")), (point, ("Point",))):
        where = spot("WebMercatorQuad", 15, planted.lon, planted.lat)
        out, geom = gdal_mvt_feature(server, tmp_path, planted.layer, where, planted.fid)
        assert f"BSM (String) = {planted.bsm}" in out
        assert geom.geom_type in kinds
        assert geom.distance(Point(where.in_frame(planted.lon, planted.lat))) <= 1.5 * where.pixel_size


# ---- 2. GDAL's OGCAPI driver ---------------------------------------------------------------------------
def _pyogrio_with_ogcapi():
    pyogrio = pytest.importorskip("pyogrio")
    if "OGCAPI" not in pyogrio.list_drivers():
        pytest.skip(f"pyogrio's GDAL {pyogrio.__gdal_version_string__} has no OGCAPI driver")
    return pyogrio


@pytest.mark.parametrize(("grid", "level"), POLYGON_LEVELS)
def test_gdal_ogcapi_driver_reads_a_collection_tileset(server, polygon, grid, level):
    """``OGCAPI:<collection> -oo API=TILES -oo TILEMATRIXSET=<grid>`` with the GDAL in pyogrio's wheel
    (3.12 here): collection → tilesets-vector link → tileset (self link) → tiling-scheme link + item link of
    type application/vnd.mapbox-vector-tile → tiles. GDAL names the layers "Zoom level <tileMatrix id>"."""
    pyogrio = _pyogrio_with_ogcapi()
    where = spot(grid, level, polygon.lon, polygon.lat)
    x, y = where.in_frame(polygon.lon, polygon.lat)
    options = {"API": "TILES", "TILEMATRIXSET": grid}
    if FRAMES[grid].epsg is not None:
        # GDAL's vector-tile layers use the collection's CRS84 extent as if it were in the grid's CRS (GDAL
        # reprojects it for map tiles only): give the area in the grid's CRS.
        xmin, ymin, xmax, ymax = (float(v) for v in where.storage_bounds())
        to_grid = transformer(4490, FRAMES[grid].epsg)
        minx, miny, maxx, maxy = to_grid.transform_bounds(xmin, ymin, xmax, ymax)
        options.update(MINX=str(minx), MINY=str(miny), MAXX=str(maxx), MAXY=str(maxy))
    d = where.pixel_size
    meta, _, geometries, fields = pyogrio.raw.read(
        f"OGCAPI:{server.url}/collections/basic_farmland", layer=f"Zoom level {level}",
        bbox=(x - d, y - d, x + d, y + d), **options)
    names = list(meta["fields"])
    assert "BSM" in names, names
    bsms = list(fields[names.index("BSM")])
    assert polygon.bsm in bsms
    geom = shapely.from_wkb(geometries[bsms.index(polygon.bsm)])
    assert geom.geom_type in ("Polygon", "MultiPolygon")
    assert geom.distance(Point(x, y)) <= 1.5 * d


def _ogrinfo_version() -> tuple[int, int]:
    out = subprocess.run(["ogrinfo", "--version"], capture_output=True, text=True).stdout
    major, minor = re.search(r"GDAL (\d+)\.(\d+)", out).groups()
    return int(major), int(minor)


# ---- 4. malformed or impossible addresses --------------------------------------------------------------
@pytest.mark.parametrize(("path", "status"), [
    ("/collections/basic_farmland/tiles/WebMercatorQuad/abc/0/0", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/3/x/0", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/3/0/1.5", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/-1/0/0", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/3/-1/0", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/99999999999/0/0", 400),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/%C2%B2/0/0", 400),  # '²': str.isdigit() but not a number
    ("/collections/basic_farmland/tiles/WebMercatorQuad/%D9%A3/0/0", 400),  # Arabic-Indic 3
    ("/collections/basic_farmland/tiles/NoSuchMatrixSet/3/0/0", 404),
    ("/collections/basic_farmland/tiles/webmercatorquad/3/0/0", 404),
    ("/collections/no_such_layer/tiles/WebMercatorQuad/3/0/0", 404),
    ("/collections/basic_farmland/tiles/CGCS2000Quad/0/0/0", 404),  # 天地图 levels start at 1
    ("/collections/basic_farmland/tiles/CGCS2000Quad/21/0/0", 404),
    ("/collections/basic_farmland/tiles/CGCS2000Quad/1/1/0", 404),  # level 1 is 2 × 1: no row 1
    ("/collections/basic_farmland/tiles/CGCS2000Quad/1/0/2", 404),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/23/0/0", 404),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/1/2/0", 404),
    ("/collections/basic_farmland/tiles/WebMercatorQuad/1/0/2", 404),
    ("/collections/basic_farmland/tiles/WorldCRS84Quad/0/1/0", 404),
    ("/collections/basic_farmland/tiles/CGCS2000GK38/15/0/0", 404),
    ("/tiles/blueprint/NoSuchMatrixSet/3/0/0", 404),
    ("/tiles/blueprint/WebMercatorQuad/3/8/0", 404),
    ("/tiles/blueprint/WebMercatorQuad/a/b/c", 400),
    ("/tileMatrixSets/NoSuchMatrixSet", 404),
    ("/collections/no_such_layer/tiles", 404),
    ("/collections/basic_farmland/tiles/NoSuchMatrixSet", 404),
    ("/collections/basic_farmland/tiles/WebMercatorQuad?f=xml", 400),
    ("/collections/basic_farmland/tiles/CGCS2000Quad?f=tilejson", 400),
])
def test_bad_tile_requests_are_json_exceptions(client, path, status):
    response = client.get(path)
    assert response.status_code == status, (path, response.get_data(as_text=True)[:300])
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status and body["title"] and body["detail"]


# ---- 5. metadata: TileJSON, tilesets, conformance, links, blueprint ------------------------------------
def test_tilejson_for_webmercatorquad(settings, registry, pool, small_demo, anonymous_may):
    # A fresh app: the tileset extents must not depend on an earlier /collections request.
    client = create_app(settings, registry).test_client()
    doc = get_json(client, "/collections/basic_farmland/tiles/WebMercatorQuad?f=tilejson")
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == [f"{settings.public_url}/collections/basic_farmland/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"]
    assert 0 <= doc["minzoom"] <= doc["maxzoom"] <= 22
    expected = sql_rows(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                              "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")[0]
    assert doc["bounds"] == pytest.approx(list(expected), abs=1e-9)  # lon/lat, as TileJSON wants
    (layer,) = doc["vector_layers"]
    assert layer["id"] == "basic_farmland"
    assert {"BSM", "DLBM", "ZLDJ"} <= set(layer["fields"]) and all(isinstance(v, str) for v in layer["fields"].values())
    farmland = registry.get("basic_farmland")
    assert (layer["minzoom"], layer["maxzoom"]) == (farmland.min_zoom, farmland.max_zoom)
    blueprint = get_json(client, "/tiles/blueprint/WebMercatorQuad?f=tilejson")
    assert blueprint["tiles"][0].endswith("/tiles/blueprint/WebMercatorQuad/{z}/{y}/{x}")
    # the blueprint as an anonymous caller may view it (access policy), in registry order
    assert [v["id"] for v in blueprint["vector_layers"]] == [layer.id for layer in registry.vector_layers()
                                                            if layer.id in anonymous_may("view")]


def test_tileset_metadata_links(client, settings, registry):
    for grid in grids().values():
        doc = get_json(client, f"/collections/basic_farmland/tiles/{grid.id}")
        assert doc["dataType"] == "vector" and doc["tileMatrixSetURI"] == grid.uri and doc["crs"] == grid.crs_uri
        links = {link["rel"]: link for link in doc["links"]}
        item = links["item"]
        assert item["type"] == MVT and item["templated"] is True
        assert item["href"] == (f"{settings.public_url}/collections/basic_farmland/tiles/{grid.id}/"
                                "{tileMatrix}/{tileRow}/{tileCol}")
        scheme = links[REL + "tiling-scheme"]
        assert scheme["type"] == "application/json"
        assert scheme["href"] == f"{settings.public_url}/tileMatrixSets/{grid.id}"
        assert links["self"]["type"] == "application/json"
        (layer,) = doc["layers"]
        assert layer["id"] == "basic_farmland" and layer["geometryType"] == "polygons"
    listing = get_json(client, "/collections/basic_farmland/tiles")
    assert {t["tileMatrixSetURI"] for t in listing["tilesets"]} == {g.uri for g in grids().values()}
    assert all({"self", "item", REL + "tiling-scheme"} <= {link["rel"] for link in t["links"]}
               for t in listing["tilesets"])
    sets = get_json(client, "/tileMatrixSets")["tileMatrixSets"]
    assert [s["id"] for s in sets] == list(grids())


def test_blueprint_tilesets_list_self_link_resolves(client, settings):
    doc = get_json(client, "/tiles")
    (self_link,) = [link for link in doc["links"] if link["rel"] == "self"]
    assert self_link["href"] == f"{settings.public_url}/tiles"


def test_conformance_lists_the_tiles_classes(client):
    classes = set(get_json(client, "/conformance")["conformsTo"])
    tiles = "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/"
    assert {tiles + c for c in ("core", "tileset", "tilesets-list", "geodata-tilesets", "dataset-tilesets",
                                "mvt")} <= classes
    assert {"http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
            "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset"} <= classes


def test_collections_and_landing_page_link_to_tilesets(client, settings, registry, anonymous_may):
    rel = REL + "tilesets-vector"
    doc = get_json(client, "/collections/basic_farmland?f=json")
    (link,) = [link for link in doc["links"] if link["rel"] == rel]
    assert link["href"] == f"{settings.public_url}/collections/basic_farmland/tiles"
    assert link["type"] == "application/json"
    listed = {c["id"]: c for c in get_json(client, "/collections?f=json")["collections"]}
    vector = anonymous_may("list")
    assert vector <= set(listed)
    for cid, collection in listed.items():
        hrefs = [lk["href"] for lk in collection["links"] if lk["rel"] == rel]
        if cid in vector:
            assert hrefs == [f"{settings.public_url}/collections/{cid}/tiles"]
        else:  # e.g. the DEM coverage: no vector tiles, so no link to them
            assert hrefs == [], cid
    landing = get_json(client, "/?f=json")
    assert any(lk["rel"] == rel and lk["href"] == f"{settings.public_url}/tiles" for lk in landing["links"])
    assert any(lk["rel"] == REL + "tiling-schemes" for lk in landing["links"])


def layers_with_data(pool, registry, where: Spot) -> set[str]:
    """Registry layers with a stored feature touching the tile plus its render buffer (SQL, not Lantu)."""
    found = set()
    with pool.connection() as conn, conn.cursor() as cur:
        for layer in registry.vector_layers():
            cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE ST_Intersects(geom, "
                                "ST_MakeEnvelope(%s, %s, %s, %s, 4490)))").format(table_id(layer)),
                        where.storage_bounds())
            if cur.fetchone()[0]:
                found.add(layer.id)
    return found


@pytest.mark.parametrize(("grid", "level"), [("CGCS2000Quad", 8), ("CGCS2000Quad", 13), ("CGCS2000Quad", 15),
                                             ("WebMercatorQuad", 9)])
def test_blueprint_tile_holds_the_layers_of_its_zoom(client, pool, registry, polygon, grid, level):
    where = spot(grid, level, polygon.lon, polygon.lat)
    web_zoom = grids()[grid].equivalent_web_zoom(level)
    in_range = {layer.id for layer in registry.vector_layers() if (layer.min_zoom or 0) <= web_zoom <= layer.max_zoom}
    with_data = layers_with_data(pool, registry, where)
    response = fetch_tile(client, f"/tiles/blueprint/{where.path}")
    tile = decode(response.data)
    assert set(tile) == with_data & in_range, (web_zoom, sorted(set(tile) ^ (with_data & in_range)))
    if web_zoom <= 13:
        # Non-vacuous: layers with data here that only start at a larger zoom are left out.
        assert with_data - in_range
    else:
        assert with_data <= in_range


# ---- 3. cache: loads invalidate their own area only ----------------------------------------------------
def test_empty_tile_is_204_and_etags_revalidate(client, polygon):
    empty = fetch_tile(client, "/collections/basic_farmland/tiles/WebMercatorQuad/14/0/0", status=204)
    assert empty.data == b"" and empty.headers["ETag"]
    url = f"/collections/basic_farmland/tiles/{spot('CGCS2000Quad', 12, polygon.lon, polygon.lat).path}"
    full = fetch_tile(client, url)
    etag = full.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')
    again = fetch_tile(client, url, status=304, headers={"If-None-Match": etag})
    assert again.data == b"" and again.headers["ETag"] == etag
    # Proxies that compress weaken strong ETags; If-None-Match uses the weak comparison (RFC 9110 13.1.2).
    fetch_tile(client, url, status=304, headers={"If-None-Match": f'"other", W/{etag}'})
    fetch_tile(client, url, status=200, headers={"If-None-Match": '"something-else"'})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: object  # case-insensitive mapping
    data: bytes


@pytest.fixture(params=["in-process", "lantu serve"])
def http(request, client):
    """GET through the in-process app, or through ``lantu serve`` (2 gunicorn workers sharing the disk cache
    and each following the change log on its own)."""
    if request.param == "in-process":
        def get(path: str) -> Answer:
            response = client.get(path)
            return Answer(response.status_code, response.headers, response.data)

        yield get
        return
    url = request.getfixturevalue("server").url
    with requests.Session() as session:  # closed after the test: open keep-alive connections delay shutdown
        def get(path: str) -> Answer:
            response = session.get(url + path, timeout=30)
            return Answer(response.status_code, response.headers, response.content)

        yield get


def test_a_load_replaces_the_cached_tiles_of_its_area_only(http, pool, registry, polygon):
    from lantu.providers.writer import delete_features, write_features

    layer = registry.get("basic_farmland")
    a = spot("WebMercatorQuad", 14, polygon.lon, polygon.lat)
    # B: the farmland polygon farthest from A, many tiles away.
    far = sql_rows(pool, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p, geom FROM "
                         "blueprint.basic_farmland) s ORDER BY ST_Distance(geom, ST_Point(%s, %s, 4490)) DESC "
                         "LIMIT 1", (polygon.lon, polygon.lat))[0]
    b = spot("WebMercatorQuad", 14, *far)
    assert abs(a.col - b.col) > 2 or abs(a.row - b.row) > 2
    paths = {"A": f"/collections/basic_farmland/tiles/{a.path}", "B": f"/collections/basic_farmland/tiles/{b.path}",
             "blueprint A": f"/tiles/blueprint/{a.path}"}
    before = {}
    for name, path in paths.items():
        assert http(path).status == 200
        second = http(path)
        assert second.status == 200 and second.headers["X-Lantu-Cache"] == "hit", name
        before[name] = second

    # A 100 m square in the middle of tile A.
    size = FRAMES["WebMercatorQuad"].size(14)
    to_lonlat = transformer(3857, 4490)
    cx, cy = -R + (a.col + 0.5) * size, R - (a.row + 0.5) * size
    lon0, lat0 = to_lonlat.transform(cx - 50, cy - 50)
    lon1, lat1 = to_lonlat.transform(cx + 50, cy + 50)
    square = box(lon0, lat0, lon1, lat1)
    bsm = "430121999999990001"
    row = {"BSM": bsm, "YSDM": layer.ysdm, "XZQDM": "430121", "XZQMC": "长沙县", "DLBM": "0101", "DLMC": "水田",
           "MJ": 10000.0}
    with pool.connection() as conn:
        write_features(conn, layer, [row], [square], mode="append", who="test-tiles", source="test_tiles")
    try:
        time.sleep(1.1)  # the cache reads the change log at most once a second
        after = {name: http(path) for name, path in paths.items()}
        assert after["A"].headers["X-Lantu-Cache"] == "miss"
        assert after["A"].headers["ETag"] != before["A"].headers["ETag"]
        new = [f for f in decode(after["A"].data)["basic_farmland"]["features"] if f["properties"]["BSM"] == bsm]
        assert len(new) == 1
        assert shape(new[0]["geometry"]).hausdorff_distance(a.to_pixels(square)) <= 2.0
        assert after["blueprint A"].headers["X-Lantu-Cache"] == "miss"
        assert after["blueprint A"].data != before["blueprint A"].data
        assert after["B"].headers["X-Lantu-Cache"] == "hit"
        assert after["B"].headers["ETag"] == before["B"].headers["ETag"]
    finally:
        # Undo through the change log too, so that no cache (ours, lantu serve's) keeps the square.
        with pool.connection() as conn:
            delete_features(conn, layer, [bsm], who="test-tiles", source="test_tiles")
        time.sleep(1.1)
    restored = http(paths["A"])
    assert restored.status == 200 and restored.headers["ETag"] == before["A"].headers["ETag"]


@pytest.mark.parametrize("srid", [3857, 4326, 4490, 4547])
def test_tile_params_match_the_composed_statement(registry, srid):
    """The hot path binds ``tile_params`` to SQL text rendered once per shape; both must list the same values
    in the same order as ``tile_sql`` composes them."""
    from lantu.providers.features import source_from_layer
    from lantu.providers.mvt import TileLayer, TileRequest, tile_params, tile_sql

    layers = [TileLayer(layer.id, source_from_layer(layer), source_from_layer(layer).properties[:3])
              for layer in registry.vector_layers()[:4]]
    req = TileRequest(srid, (113.0, 28.0, 113.5, 28.5) if srid in (4326, 4490) else (1.2e7, 3.2e6, 1.3e7, 3.3e6))
    assert tile_params(layers, req) == tile_sql(layers, req)[1]

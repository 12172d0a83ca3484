"""The generated MapServer 8 configuration, exercised with the real ``mapserv`` binary run CGI-style
(``REQUEST_METHOD=GET``, ``QUERY_STRING``, ``MAPSERVER_CONFIG_FILE``; no FastCGI) against the small demo.

Expected answers come from the registry, from SQL on the stored data and from pyproj, never from MapServer's
own output. The axis-order cases pin what MapServer 8.0 was measured to do (docs/ows.md lists them)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import warnings
from collections import Counter
from pathlib import Path
from types import MappingProxyType
from urllib.parse import quote, urlencode
from xml.etree import ElementTree

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from lantu.config import mapfile as mf
from lantu.config.registry import Registry

MAPSERV = shutil.which("mapserv") or "/usr/lib/cgi-bin/mapserv"
WMS = "{http://www.opengis.net/wms}"
WFS = "{http://www.opengis.net/wfs/2.0}"
SIZE = 256
PROBE = 64  # the probed interior point is drawn at pixel (PROBE, PROBE)


# ---- helpers ---------------------------------------------------------------------------------------------
def mapserv(files: mf.MapserverFiles, query: dict | str) -> tuple[str, bytes]:
    """One CGI request; returns (content type, body). A minimal environment: the config file must suffice."""
    if not Path(MAPSERV).exists():
        pytest.fail("mapserv not found: Debian package cgi-mapserver (deps/apt.txt, `make install`)")
    qs = query if isinstance(query, str) else urlencode(query, quote_via=quote)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "REQUEST_METHOD": "GET", "QUERY_STRING": qs,
           "MAPSERVER_CONFIG_FILE": str(files.config_file)}
    out = subprocess.run([MAPSERV, "-nh"], env=env, capture_output=True, timeout=60).stdout
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep:
        return "", out
    match = re.search(rb"Content-Type:\s*([^\r\n]+)", head, re.IGNORECASE)
    return (match[1].decode() if match else ""), body


def png(body: bytes) -> np.ndarray:
    assert body.startswith(b"\x89PNG"), body[:400]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile(body) as mem, mem.open() as ds:
            return ds.read()  # bands, rows, cols


def blend(colour: str, opacity: float) -> np.ndarray:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    return np.round(255 * (1 - opacity) + rgb * opacity)


def modal_colour(image: np.ndarray, col: int, row: int, half: int = 4) -> tuple[tuple[int, ...], float]:
    window = image[:3, row - half:row + half + 1, col - half:col + half + 1].reshape(3, -1).T
    counts = Counter(map(tuple, window.tolist()))
    colour, n = counts.most_common(1)[0]
    return colour, n / len(window)


def near(colour, expected, tol: int = 4) -> bool:
    return bool(np.all(np.abs(np.array(colour[:3], dtype=float) - np.asarray(expected)[:3]) <= tol))


def sql_one(pool, statement: str, params=None):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()


def xml(body: bytes) -> ElementTree.Element:
    return ElementTree.fromstring(body)


# ---- fixtures --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def files(registry, settings, cluster, small_demo, tmp_path_factory) -> mf.MapserverFiles:
    out = tmp_path_factory.mktemp("mapserver")
    return mf.write_mapserver_config(registry, settings, cluster.dsn, out, "http://lantu.test:8080")


@pytest.fixture(scope="module")
def farmland(pool, small_demo) -> dict:
    """The basic_farmland polygon with the largest inscribed circle (centre, radius in EPSG:4547 metres)."""
    row = sql_one(pool, """
        SELECT bsm, ST_X(c), ST_Y(c), radius FROM (
          SELECT bsm, (ST_MaximumInscribedCircle(ST_Transform(geom, 4547))).center AS c,
                 (ST_MaximumInscribedCircle(ST_Transform(geom, 4547))).radius AS radius
          FROM blueprint.basic_farmland) s
        ORDER BY radius DESC, bsm LIMIT 1""")
    bsm, east, north, radius = row
    lon, lat = Transformer.from_crs(4547, 4490, always_xy=True).transform(east, north)
    assert radius > 100, "the demo should have a farmland polygon wider than 200 m"
    return {"bsm": bsm, "east": east, "north": north, "radius": radius, "lon": lon, "lat": lat}


def view(farmland: dict, epsg: int | None) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) with x = east, in ``epsg`` (None = CRS84), placing the farmland's centre at
    pixel (PROBE, PROBE) of a SIZE × SIZE image whose whole extent lies inside the inscribed circle."""
    w = 0.8 * farmland["radius"]  # corners ≤ 0.85 r from the centre
    lat = math.radians(farmland["lat"])
    if epsg in (None, 4490, 4326):
        x, y = farmland["lon"], farmland["lat"]
        wx, wy = w / (111320 * math.cos(lat)), w / 110574
    else:
        x, y = Transformer.from_crs(4490, epsg, always_xy=True).transform(farmland["lon"], farmland["lat"])
        wx = wy = w / math.cos(lat) if epsg == 3857 else w
    f = PROBE / SIZE
    return (x - f * wx, y - (1 - f) * wy, x + (1 - f) * wx, y + f * wy)


def getmap(files, version: str, crs: str, bbox, layers: str = "basic_farmland", **extra) -> tuple[str, bytes]:
    key = "CRS" if version == "1.3.0" else "SRS"
    query = {"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap", "LAYERS": layers, "STYLES": "",
             key: crs, "BBOX": ",".join(f"{v:.10f}" for v in bbox), "WIDTH": SIZE, "HEIGHT": SIZE,
             "FORMAT": "image/png"}
    query.update(extra)
    return mapserv(files, query)


# ---- generation ------------------------------------------------------------------------------------------
def test_generated_files(files, registry, settings, cluster, tmp_path):
    text = files.mapfile.read_text("utf-8")
    vector = registry.vector_layers()
    assert len(vector) == 73
    assert text.count("CONNECTIONTYPE POSTGIS") == len(vector)
    for layer in vector:
        assert f'DATA "geom from blueprint.{layer.id} using unique fid using srid=4490"' in text
    assert oct(files.mapfile.stat().st_mode & 0o777) == "0o600"  # it holds the connection string
    conf = files.config_file.read_text("utf-8")
    assert f'LANTU "{files.mapfile}"' in conf
    assert "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc" in files.fontset.read_text()
    assert 'NAME "hatch"' in files.symbols.read_text() and 'NAME "star"' in files.symbols.read_text()
    assert (files.templates / "basic_farmland.html").read_text().startswith("<!-- MapServer Template -->")
    assert files.hillshade is not None and files.hillshade.exists()
    # deterministic and idempotent: the same inputs give the same bytes, and a rerun rewrites nothing
    again = mf.write_mapserver_config(registry, settings, cluster.dsn, files.mapfile.parent, "http://lantu.test:8080")
    assert again.changed is False and files.mapfile.read_text("utf-8") == text
    assert mf.build_mapfile(registry, settings, "dsn", "http://x") == mf.build_mapfile(registry, settings, "dsn",
                                                                                       "http://x")


def test_styles_from_the_registry(files, registry):
    text = files.mapfile.read_text("utf-8")

    def block(layer_id: str) -> str:
        start = text.index(f'NAME "{layer_id}"')
        return text[start:text.index("\n  END\n", start)]

    farmland = block("basic_farmland")
    assert 'SYMBOL "hatch"' in farmland and 'COLOR "#F2D98C"' in farmland and "OPACITY 35" in farmland
    assert 'LABELITEM "dlmc"' in farmland and 'FONT "wqy' in farmland
    assert "PATTERN 10 4 END" in block("urban_dev_boundary")
    assert "PATTERN 8 4 END" in block("road_red_line")
    survey = block("land_use_survey")
    assert 'CLASSITEM "dlbm"' in survey
    assert 'NAME "01 耕地"' in survey and "EXPRESSION /^01/" in survey and 'COLOR "#FFFF64"' in survey
    planned = block("planned_land_use")
    # first match wins: the R/A/B/… families come before the H catch-all, E1 before E
    assert planned.index("EXPRESSION /^R/") < planned.index("EXPRESSION /^H/") < planned.index("EXPRESSION /^E1/")
    assert 'NAME "R 居住用地"' in planned
    assert '"lantu_access" "internal"' in block("hazard_sources")
    assert '"lantu_access" "public"' in farmland
    assert 'SYMBOL "circle"' in block("key_projects")
    # labels: scale limit two zooms after min_zoom; layers themselves unlimited by default
    assert f"MAXSCALEDENOM {mf.max_scale_for(12)}" in farmland
    assert "MAXSCALEDENOM" not in farmland.split("CLASS", 1)[0]


def test_map_pattern_admits_only_the_generated_mapfile(files):
    caps = {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"}
    for map_param in (None, str(files.mapfile), "LANTU"):
        query = caps if map_param is None else {"MAP": map_param, **caps}
        ctype, body = mapserv(files, query)
        assert ctype.startswith("text/xml") and b"<WMS_Capabilities" in body, map_param
    other = files.mapfile.with_name("other.map")
    shutil.copy(files.mapfile, other)
    try:
        for map_param in (str(other), f"{files.mapfile.parent}/../{files.mapfile.parent.name}/lantu.map"):
            ctype, body = mapserv(files, {"MAP": map_param, **caps})
            assert b"<WMS_Capabilities" not in body and b"fails to validate" in body, map_param
    finally:
        other.unlink()


# ---- WMS -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wms_caps(files) -> ElementTree.Element:
    ctype, body = mapserv(files, {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"})
    assert ctype.startswith("text/xml")
    return xml(body)


def test_wms_capabilities_lists_every_layer_in_nested_groups(wms_caps, registry):
    root = wms_caps.find(f"{WMS}Capability/{WMS}Layer")
    assert root.findtext(f"{WMS}Title") == "蓝图 Lantu 一张图"
    crs = [e.text for e in root.findall(f"{WMS}CRS")]
    assert crs[0] == "EPSG:4490" and "CRS:84" in crs and "EPSG:3857" in crs
    assert {f"EPSG:{c}" for c in range(4513, 4555)} <= set(crs)
    parents: dict[str, list[str]] = {}

    def walk(node, path):
        for child in node.findall(f"{WMS}Layer"):
            title = child.findtext(f"{WMS}Title")
            parents[child.findtext(f"{WMS}Name")] = path
            walk(child, path + [title])

    walk(root, [])
    for layer in registry.vector_layers():
        assert layer.id in parents, layer.id
        node = next(n for n in root.iter(f"{WMS}Layer") if n.findtext(f"{WMS}Name") == layer.id)
        assert node.findtext(f"{WMS}Title") == layer.name_zh  # Chinese titles intact
        group = mf.GROUP_TITLES[layer.group]
        expected = [group] if layer.subgroup == group else [group, layer.subgroup]
        assert parents[layer.id] == expected, layer.id
    assert parents["basic_farmland"] == ["规划成果", "管控区与控制线"]
    assert parents["hazard_sources"] == ["现状数据", "部门专业现状"]  # internal layers are generated too
    assert {"dem", "dem_hillshade"} <= set(parents)  # the demo wrote its DEM
    assert "imagery" not in parents  # no imagery file in the demo
    # WMS 1.3.0 bounding boxes in EPSG:4490 are lat/lon
    bbox = next(n for n in root.iter(f"{WMS}Layer") if n.findtext(f"{WMS}Name") == "basic_farmland"
                ).find(f"{WMS}BoundingBox[@CRS='EPSG:4490']")
    assert 27 < float(bbox.get("minx")) < 29 and 112 < float(bbox.get("miny")) < 114
    online = wms_caps.find(f"{WMS}Service/{WMS}OnlineResource").get("{http://www.w3.org/1999/xlink}href")
    assert online == "http://lantu.test:8080/wms?"


# Measured MapServer 8.0 behaviour: (version, CRS, bbox axis order) → drawn / blank / error.
AXIS_CASES = [
    ("1.3.0", "EPSG:4490", "north_east", "drawn"),
    ("1.3.0", "EPSG:4490", "east_north", "blank"),
    ("1.3.0", "EPSG:4326", "north_east", "drawn"),
    ("1.3.0", "CRS:84", "east_north", "drawn"),
    ("1.3.0", "EPSG:3857", "east_north", "drawn"),
    ("1.3.0", "EPSG:4547", "north_east", "drawn"),
    ("1.3.0", "EPSG:4547", "east_north", "blank"),
    ("1.1.1", "EPSG:4490", "east_north", "drawn"),
    ("1.1.1", "EPSG:4490", "north_east", "blank"),
    ("1.1.1", "EPSG:4547", "east_north", "drawn"),
    ("1.1.1", "CRS:84", "east_north", "error"),  # MapServer: only EPSG and AUTO in 1.1.1 (docs/ows.md)
]


@pytest.mark.parametrize("version,crs,order,expected", AXIS_CASES)
def test_wms_getmap_axis_order(files, farmland, registry, version, crs, order, expected):
    epsg = None if crs == "CRS:84" else int(crs.split(":")[1])
    x0, y0, x1, y1 = view(farmland, epsg)
    bbox = (x0, y0, x1, y1) if order == "east_north" else (y0, x0, y1, x1)
    ctype, body = getmap(files, version, crs, bbox)
    if expected == "error":
        assert b"InvalidSRS" in body and not body.startswith(b"\x89PNG")
        return
    assert ctype == "image/png"
    image = png(body)
    style = registry.get("basic_farmland").style
    fill = blend(style.fill, style.fill_opacity)
    colour, share = modal_colour(image, PROBE, PROBE)
    if expected == "drawn":
        assert near(colour, fill) and share > 0.4, (colour, share)
        # the yellow-brown hatching over the light fill
        stroke = blend(style.stroke, 1.0)
        hatch = (np.abs(image[:3].astype(int) - stroke[:, None, None]).max(axis=0) <= 12).mean()
        assert hatch > 0.02, hatch
        window = image[:3, PROBE - 4:PROBE + 5, PROBE - 4:PROBE + 5]
        assert not np.any(np.all(window == 255, axis=0)), "background at the probe"
    else:
        assert not near(colour, fill)


def test_classified_land_use_colour(files, pool, small_demo):
    """land_use_survey draws 01xx (耕地) with the 耕地 colour of the class table, at its 80 % opacity."""
    bsm, east, north, radius = sql_one(pool, """
        SELECT bsm, ST_X(c), ST_Y(c), r FROM (
          SELECT bsm, (ST_MaximumInscribedCircle(ST_Transform(geom, 4547))).center c,
                 (ST_MaximumInscribedCircle(ST_Transform(geom, 4547))).radius r
          FROM blueprint.land_use_survey WHERE dlbm LIKE '01%') s ORDER BY r DESC, bsm LIMIT 1""")
    d = radius * 0.5
    ctype, body = getmap(files, "1.3.0", "EPSG:4547", (north - d, east - d, north + d, east + d),
                         layers="land_use_survey")
    colour, share = modal_colour(png(body), SIZE // 4, SIZE // 4)
    assert near(colour, blend(mf.GBT21010_COLOURS["01"], 0.8)), colour


def test_chinese_labels_render(files, pool):
    """Town names (admin_divisions, label XZQMC): glyphs and their white halo, on a transparent map."""
    xmin, ymin, xmax, ymax = sql_one(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                           "(SELECT ST_Extent(geom) e FROM blueprint.admin_divisions) s")
    ctype, body = mapserv(files, {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap",
                                  "LAYERS": "admin_divisions", "STYLES": "", "CRS": "CRS:84",
                                  "BBOX": f"{xmin},{ymin},{xmax},{ymax}", "WIDTH": 800, "HEIGHT": 900,
                                  "FORMAT": "image/png", "TRANSPARENT": "TRUE"})
    image = png(body)
    assert image.shape[0] == 4
    halo = np.all(image == 255, axis=0).sum()          # opaque white: label outlines only
    text = (np.all(image[:3] <= 0x40, axis=0) & (image[3] == 255)).sum()  # the #222222 glyphs
    assert halo > 500 and text > 300, (halo, text)
    transparent = (image[3] == 0).mean()
    assert transparent > 0.05  # outside the county: TRANSPARENT=TRUE honoured


def test_getfeatureinfo_returns_the_feature(files, farmland):
    bbox = view(farmland, 4490)
    base = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo", "LAYERS": "basic_farmland",
            "QUERY_LAYERS": "basic_farmland", "STYLES": "", "CRS": "EPSG:4490",
            "BBOX": f"{bbox[1]},{bbox[0]},{bbox[3]},{bbox[2]}", "WIDTH": SIZE, "HEIGHT": SIZE,
            "I": PROBE, "J": PROBE, "FORMAT": "image/png"}
    ctype, body = mapserv(files, {**base, "INFO_FORMAT": "application/json"})
    assert ctype.startswith("application/json")
    features = json.loads(body)["features"]
    assert [f["properties"]["BSM"] for f in features] == [farmland["bsm"]]
    lon, lat = features[0]["geometry"]["coordinates"][0][0]
    assert 112 < lon < 114 and 27 < lat < 29  # GeoJSON is lon/lat whatever the request CRS
    ctype, body = mapserv(files, {**base, "INFO_FORMAT": "text/html"})
    assert ctype.startswith("text/html")
    html = body.decode("utf-8")
    assert farmland["bsm"] in html and "永久基本农田" in html and "标识码" in html
    ctype, body = mapserv(files, {**base, "INFO_FORMAT": "application/vnd.ogc.gml"})
    assert f"<BSM>{farmland['bsm']}</BSM>" in body.decode("utf-8")
    # WMS 1.1.1: X/Y and lon/lat
    old = {**base, "VERSION": "1.1.1", "SRS": "EPSG:4490", "X": PROBE, "Y": PROBE,
           "BBOX": ",".join(map(str, bbox)), "INFO_FORMAT": "application/json"}
    for key in ("CRS", "I", "J"):
        old.pop(key)
    ctype, body = mapserv(files, old)
    assert [f["properties"]["BSM"] for f in json.loads(body)["features"]] == [farmland["bsm"]]


def test_dem_and_hillshade(files, farmland, settings):
    dem = settings.home / "demo" / "dem.tif"
    with rasterio.open(dem) as ds:
        expected = next(ds.sample([(farmland["lon"], farmland["lat"])]))[0]
    bbox = view(farmland, 4490)
    ctype, body = mapserv(files, {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo",
                                  "LAYERS": "dem", "QUERY_LAYERS": "dem", "STYLES": "", "CRS": "EPSG:4490",
                                  "BBOX": f"{bbox[1]},{bbox[0]},{bbox[3]},{bbox[2]}", "WIDTH": SIZE,
                                  "HEIGHT": SIZE, "I": PROBE, "J": PROBE, "INFO_FORMAT": "application/json"})
    value = float(json.loads(body)["features"][0]["properties"]["value_0"])
    assert value == pytest.approx(float(expected), abs=0.05)
    ctype, body = getmap(files, "1.3.0", "EPSG:4490", (bbox[1], bbox[0], bbox[3], bbox[2]),
                         layers="dem,dem_hillshade")
    image = png(body)
    assert image[:3].std() > 0 or not np.all(image[:3] == 255)  # something drawn
    assert files.hillshade.stat().st_mtime >= dem.stat().st_mtime


# ---- WFS -------------------------------------------------------------------------------------------------
def test_wfs_capabilities_lists_every_vector_layer(files, registry):
    ctype, body = mapserv(files, {"SERVICE": "WFS", "REQUEST": "GetCapabilities", "VERSION": "2.0.0"})
    root = xml(body)
    types = {ft.findtext(f"{WFS}Name"): ft for ft in root.iter(f"{WFS}FeatureType")}
    assert set(types) == {f"lantu:{layer.id}" for layer in registry.vector_layers()}
    farmland = types["lantu:basic_farmland"]
    assert farmland.findtext(f"{WFS}Title") == "永久基本农田"
    assert farmland.findtext(f"{WFS}DefaultCRS") == "urn:ogc:def:crs:EPSG::4490"
    other = {e.text for e in farmland.findall(f"{WFS}OtherCRS")}
    assert {"urn:ogc:def:crs:EPSG::4547", "urn:ogc:def:crs:EPSG::3857"} <= other
    formats = {e.text for e in farmland.iter(f"{WFS}Format")}
    assert {"application/gml+xml; version=3.2", "application/json", "application/geo+json"} <= formats


def test_wfs_getfeature_gml32_and_geojson(files, pool):
    total = sql_one(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0]
    ctype, body = mapserv(files, {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                                  "TYPENAMES": "lantu:basic_farmland", "COUNT": 5})
    assert "gml/3.2" in ctype
    root = xml(body)
    assert root.tag == f"{WFS}FeatureCollection"
    assert len(root.findall(f"{WFS}member")) == 5
    assert root.get("numberReturned") == "5" and root.get("numberMatched") == str(total)
    text = body.decode("utf-8")
    assert 'gml:id="basic_farmland.' in text and "<lantu:BSM>" in text
    first = re.search(r"<gml:posList[^>]*>([-\d.]+) ([-\d.]+)", text)
    assert 27 < float(first[1]) < 29 and 112 < float(first[2]) < 114  # 2.0 + EPSG:4490: lat/lon
    assert len(first[1].split(".")[1]) == 9  # wfs_geometry_precision
    for fmt in ("application/json", "geojson"):
        ctype, body = mapserv(files, {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                                      "TYPENAMES": "basic_farmland", "COUNT": 5, "OUTPUTFORMAT": fmt})
        assert "json" in ctype
        doc = json.loads(body)
        assert len(doc["features"]) == 5 and all(f["properties"]["BSM"] for f in doc["features"])
        assert "updated_at" not in doc["features"][0]["properties"]
        lon, lat = doc["features"][0]["geometry"]["coordinates"][0][0]
        assert 112 < lon < 114 and 27 < lat < 29  # GeoJSON: lon/lat


# Measured MapServer 8.0 WFS srsName handling: first coordinate of the output, (first, second) axis.
WFS_AXIS_CASES = [
    ("1.0.0", "EPSG:4547", ("lon", "lat")),  # 1.0.0 has no srsName on GetFeature: always 4490, lon/lat
    ("1.1.0", None, ("lat", "lon")),
    ("1.1.0", "EPSG:4490", ("lat", "lon")),
    ("1.1.0", "urn:ogc:def:crs:EPSG::4490", ("lat", "lon")),
    ("2.0.0", "EPSG:4490", ("lat", "lon")),
    ("2.0.0", "urn:ogc:def:crs:EPSG::4490", ("lat", "lon")),
    ("2.0.0", "urn:ogc:def:crs:EPSG::4547", ("north", "east")),
    ("2.0.0", "EPSG:3857", ("east", "north")),
    ("2.0.0", "http://www.opengis.net/def/crs/EPSG/0/4490", "error"),
]


def _axis(value: float) -> str:
    if 100 < value < 120:
        return "lon"
    if 20 < value < 40:
        return "lat"
    if 1e5 < value < 1e6 or 1.2e7 < value < 1.3e7:
        return "east"
    return "north" if 3e6 < value < 3.5e6 else "?"


@pytest.mark.parametrize("version,srs,expected", WFS_AXIS_CASES)
def test_wfs_srsname_axis_order(files, version, srs, expected):
    query = {"SERVICE": "WFS", "VERSION": version, "REQUEST": "GetFeature"}
    query.update({"TYPENAMES": "key_projects", "COUNT": 1} if version == "2.0.0"
                 else {"TYPENAME": "key_projects", "MAXFEATURES": 1})
    if srs:
        query["SRSNAME"] = srs
    ctype, body = mapserv(files, query)
    text = body.decode("utf-8")
    if expected == "error":
        assert "ExceptionReport" in text and 'locator="srsname"' in text
        return
    match = re.search(r"<gml:(?:pos|posList|coordinates)[^>]*>\s*([-\d.]+)[ ,]([-\d.]+)", text)
    assert match, text[:500]
    assert (_axis(float(match[1])), _axis(float(match[2]))) == expected


# ---- options and escaping --------------------------------------------------------------------------------
def test_layer_scale_limits_hide_getfeatureinfo_but_not_wfs(registry, settings, cluster, farmland, tmp_path):
    files = mf.write_mapserver_config(registry, settings, cluster.dsn, tmp_path, "http://x",
                                      layer_scale_limits=True)
    text = files.mapfile.read_text("utf-8")
    assert f"MAXSCALEDENOM {mf.max_scale_for(10)}" in text
    d = 0.3  # ≈ 1:1.2 million on 256 px: beyond basic_farmland's zoom-10 limit
    query = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetFeatureInfo", "LAYERS": "basic_farmland",
             "QUERY_LAYERS": "basic_farmland", "STYLES": "", "CRS": "EPSG:4490",
             "BBOX": f"{farmland['lat'] - d},{farmland['lon'] - d},{farmland['lat'] + d},{farmland['lon'] + d}",
             "WIDTH": SIZE, "HEIGHT": SIZE, "I": SIZE // 2, "J": SIZE // 2, "INFO_FORMAT": "application/json"}
    ctype, body = mapserv(files, query)
    assert ctype.startswith("application/json") and body.strip() == b""  # MapServer 8.0: an empty body
    ctype, body = mapserv(files, {**query, "INFO_FORMAT": "application/vnd.ogc.gml"})
    assert b"<BSM>" not in body
    ctype, body = mapserv(files, {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                                  "TYPENAMES": "basic_farmland", "COUNT": 1})
    assert len(xml(body).findall(f"{WFS}member")) == 1  # WFS ignores scale limits


def test_titles_with_quotes_and_backslashes_survive(registry, settings, cluster, tmp_path):
    layer = registry.get("key_projects")
    odd = layer.model_copy(update={"name_zh": '重点"项目"\\ <b>&'})
    small = Registry(MappingProxyType({odd.id: odd}), registry.code_lists, "test")
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "basic_farmland.html").write_text("stale")
    files = mf.write_mapserver_config(small, settings, cluster.dsn, tmp_path, "http://x")
    ctype, body = mapserv(files, {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"})
    titles = [e.text for e in xml(body).iter(f"{WMS}Title")]
    assert odd.name_zh in titles
    assert not (tmp_path / "templates" / "basic_farmland.html").exists()


def test_owslib_reads_both_capabilities(files, registry):
    """OWSLib (the client pycsw pins) parses the documents: nested groups, Chinese titles, CRSs, formats."""
    from owslib.wfs import WebFeatureService
    from owslib.wms import WebMapService

    _, caps = mapserv(files, {"SERVICE": "WMS", "REQUEST": "GetCapabilities", "VERSION": "1.3.0"})
    wms = WebMapService("http://lantu.test:8080/wms", version="1.3.0", xml=caps)
    farmland = wms["basic_farmland"]
    assert (farmland.title, farmland.parent.title, farmland.parent.parent.title) == ("永久基本农田", "管控区与控制线",
                                                                                    "规划成果")
    assert "EPSG:4547" in farmland.crsOptions
    assert "application/json" in wms.getOperationByName("GetFeatureInfo").formatOptions
    _, caps = mapserv(files, {"SERVICE": "WFS", "REQUEST": "GetCapabilities", "VERSION": "2.0.0"})
    wfs = WebFeatureService("http://lantu.test:8080/wfs", version="2.0.0", xml=caps)
    assert len(wfs.contents) == len(registry.vector_layers())
    assert wfs["lantu:eco_red_line"].title == "生态保护红线"

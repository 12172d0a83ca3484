"""WMS, WFS and WMTS through a real ``lantu serve``: /wms and /wfs (Lantu → FastCGI → mapserv workers) and
/wmts (MapProxy inside Lantu), with real clients (design brief §11).

One ``lantu serve`` (gunicorn, 2 workers; its master starts and supervises the mapserv pool) per module, on a
free loopback port, over the session database with the small demo. ``tests/test_mapfile.py`` covers the
generated mapfile with ``mapserv`` run CGI-style; everything here goes through Lantu's HTTP endpoints:

1. clients: OWSLib 0.28 (main venv) and the newest OWSLib (side venv, ``tests/clients/owslib-requirements.txt``)
   run ``tests/clients/owslib_ows.py``, which reads every layer; GDAL's WMS, WFS and WMTS drivers;
2. XML Schema validation of the capabilities, a GML 3.2 GetFeature response and the exception reports, offline
   (``../shared/conformance/xsd`` and its OASIS catalog; the SLD 1.1 capabilities extension from MapProxy's
   wheel; MapServer's own schema extension and DescribeFeatureType from the server);
3. a planted farmland polygon: GetFeatureInfo returns its attributes, GetMap draws its style colour, EPSG:4490
   and EPSG:4547 maps of one area draw the same features;
4. axis order of every WMS CRS and WFS srsName form (brief §10);
5. bad and hostile requests get the protocol's exception, never a 500 or a hung worker; a SIGKILLed mapserv
   worker is replaced while requests keep succeeding;
6. the WMTS disk cache: a load into a tile's area removes that tile and its neighbours only.

Known server bugs are ``xfail(strict=True)`` with the request, what happens and what should: when a fix lands
the test XPASSes, fails, and the marker must go.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest
import requests
from lxml import etree
from PIL import Image
from pyproj import Transformer

SHARED_XSD = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "xsd"
# libxml2 reads XML_CATALOG_FILES when it first resolves through a catalog: set it at import (collection
# happens before any test compiles a schema), so every schema import resolves to the kit, never the network.
os.environ["XML_CATALOG_FILES"] = str(SHARED_XSD / "catalog.xml")

CLIENTS = Path(__file__).resolve().parent / "clients"
FARMLAND = "basic_farmland"
NS = {"wms": "http://www.opengis.net/wms", "ogc": "http://www.opengis.net/ogc", "wfs": "http://www.opengis.net/wfs/2.0",
      "ows11": "http://www.opengis.net/ows/1.1", "ows20": "http://www.opengis.net/ows/2.0",
      "wmts": "http://www.opengis.net/wmts/1.0", "gml": "http://www.opengis.net/gml/3.2"}


# ---- helpers ---------------------------------------------------------------------------------------------
def sql_rows(pool, statement: str, params=()) -> list[tuple]:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def rgba(body: bytes) -> np.ndarray:
    """rows × cols × 4."""
    assert body.startswith(b"\x89PNG"), body[:500]
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGBA"))


def blend(colour: str, opacity: float) -> np.ndarray:
    rgb = np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=float)
    return np.round(255 * (1 - opacity) + rgb * opacity)


def modal(image: np.ndarray, col: int, row: int, half: int) -> tuple[tuple[int, ...], float]:
    """Most frequent colour (RGB) in a window and its share: hatch lines and labels are a minority."""
    window = image[row - half:row + half + 1, col - half:col + half + 1, :3].reshape(-1, 3)
    values, counts = np.unique(window, axis=0, return_counts=True)
    return tuple(int(v) for v in values[counts.argmax()]), counts.max() / len(window)


def near(colour, expected, tol: int = 4) -> bool:
    return bool(np.all(np.abs(np.asarray(colour[:3], dtype=float) - np.asarray(expected)[:3]) <= tol))


def xml(body: bytes) -> etree._Element:
    return etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))


# The line before each traceback MapProxy logs (twice) for TILEROW=abc (a known bug, see below).
@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen
    home: Path

    def get(self, path: str, params=None, **kw) -> requests.Response:
        response = requests.get(f"{self.url}{path}", params=params, timeout=60, **kw)
        assert response.status_code < 500, (response.url, response.status_code, response.text[:800])
        return response

    def mapserv_pids(self) -> list[int]:
        """The mapserv FastCGI workers: children of the gunicorn master named mapserv."""
        pids = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:
                continue
            comm = text[text.index("(") + 1:text.rindex(")")]
            ppid = int(text[text.rindex(")") + 2:].split()[1])
            if ppid == self.process.pid and comm == "mapserv":
                pids.append(int(stat.parent.name))
        return sorted(pids)


@pytest.fixture(scope="module")
def server(settings, small_demo, lantu_serve):
    with lantu_serve("serve-ows") as (url, log, process):
        srv = Server(url, log, process, settings.home)
        assert len(srv.mapserv_pids()) == settings.mapserver_workers, "gunicorn's master did not start the pool"
        yield srv
    # A server-side traceback is a bug even when every client was content.
    text = log.read_text("utf-8", "replace")
    assert "Traceback" not in text, text[text.index("Traceback") - 500:][:4000] if "Traceback" in text else ""


@pytest.fixture(scope="module")
def planted(pool, small_demo, registry) -> dict:
    """The basic_farmland polygon whose ST_PointOnSurface lies deepest inside it (distance to its boundary in
    EPSG:4547 metres), that point in lon/lat and GK, its attributes by field code and its first vertex."""
    layer = registry.get(FARMLAND)
    columns = ", ".join(f.column for f in layer.fields)
    row = sql_rows(pool, f"""
        SELECT fid, ST_X(p), ST_Y(p), clearance, {columns} FROM (
          SELECT *, ST_PointOnSurface(geom) p,
                 ST_Distance(ST_Transform(ST_PointOnSurface(geom), 4547), ST_Boundary(ST_Transform(geom, 4547)))
                   AS clearance
          FROM blueprint.{layer.table}) s
        ORDER BY clearance DESC, fid LIMIT 1""")[0]
    fid, lon, lat, clearance, *values = row
    assert clearance > 100, "the demo should hold a farmland polygon with a point 100 m inside"
    east, north = Transformer.from_crs(4490, 4547, always_xy=True).transform(lon, lat)
    vertices = sql_rows(pool, f"SELECT ST_X(g), ST_Y(g) FROM ST_DumpPoints((SELECT geom FROM blueprint.{layer.table} "
                              "WHERE fid = %s)) d(path, g)", (fid,))
    return {"fid": fid, "lon": lon, "lat": lat, "east": east, "north": north, "clearance": clearance,
            "attrs": dict(zip([f.code for f in layer.fields], values, strict=True)), "vertices": vertices,
            "style": layer.style}


def degrees(metres: float, lat: float) -> tuple[float, float]:
    """(Δlon, Δlat) of ``metres`` at latitude ``lat``."""
    return metres / (111320 * math.cos(math.radians(lat))), metres / 110574


# ---- 1. clients: OWSLib ----------------------------------------------------------------------------------
def run_owslib(python: Path, server: Server, out: Path, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([str(python), str(CLIENTS / "owslib_ows.py"), server.url, str(out), *extra],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def check_owslib(result: dict, out: Path, registry, pool, tiles: bool, anonymous_may) -> None:
    # No credentials: the layers the access policy lets anyone view (WMS, WMTS) and download (WFS).
    viewable, downloadable = anonymous_may("view"), anonymous_may("download")
    vector = {layer.id: layer.name_zh for layer in registry.vector_layers() if layer.id in viewable}
    assert len(registry.vector_layers()) == 73 and len(vector) > 60
    assert not (set(result["wms_layers"]) | set(result["wmts_layers"])) & (
        {layer.id for layer in registry.vector_layers()} - viewable)
    wms = result["wms_layers"]
    assert set(vector) <= set(wms)
    assert all(wms[lid]["title"] == title for lid, title in vector.items())
    assert (wms[FARMLAND]["parent"], wms[FARMLAND]["crs"]) == ("管控区与控制线", True)
    assert set(result["getmap"]) == set(vector) | {"dem", "dem_hillshade"}
    for name, ctype in result["getmap"].items():
        assert ctype == "image/png", (name, ctype)
        image = rgba((out / f"{name}.png").read_bytes())
        assert (image[..., 3] > 0).any(), f"WMS GetMap of {name} over its own bbox drew nothing"
    assert result["wfs_types"] == {f"lantu:{layer.id}": layer.name_zh for layer in registry.vector_layers()
                                   if layer.id in downloadable}
    counts = dict(sql_rows(pool, " UNION ALL ".join(
        f"SELECT '{layer.id}', count(*) FROM blueprint.{layer.table}" for layer in registry.vector_layers())))
    assert result["getfeature"] == {f"lantu:{lid}": min(1, counts[lid]) for lid in downloadable}
    assert set(vector) <= set(result["wmts_layers"])
    assert all(grids == ["CGCS2000Quad", "WebMercatorQuad"] for grids in result["wmts_layers"].values())
    assert result["wmts_sets"]["CGCS2000Quad"]["crs"].replace("::", ":") == "urn:ogc:def:crs:EPSG:4490"
    if tiles:
        assert set(result["gettile"]) == set(result["wmts_layers"])
        for name, ctype in result["gettile"].items():
            assert ctype == "image/png", (name, ctype)
            image = rgba((out / f"{name}.tile.png").read_bytes())
            assert image.shape == (256, 256, 4) and (image[..., 3] > 0).any(), f"WMTS tile of {name} is empty"


def test_owslib_main_venv_reads_every_layer(server, registry, pool, tmp_path, anonymous_may):
    import owslib

    result = run_owslib(Path(sys.executable), server, tmp_path, "--tiles")
    assert result["version"] == owslib.__version__ == "0.28.1"
    check_owslib(result, tmp_path, registry, pool, tiles=True, anonymous_may=anonymous_may)


def test_owslib_newest_reads_every_layer(server, registry, pool, tmp_path, side_venv, anonymous_may):
    python = side_venv("owslib")
    result = run_owslib(python, server, tmp_path)
    assert tuple(map(int, result["version"].split(".")[:2])) >= (0, 35), result["version"]
    check_owslib(result, tmp_path, registry, pool, tiles=False, anonymous_may=anonymous_may)


def test_owslib_getfeatureinfo_and_getmap_at_the_planted_polygon(server, planted):
    """GetFeatureInfo at the planted point returns that polygon's attributes; GetMap draws its style there."""
    from owslib.wms import WebMapService

    wms = WebMapService(f"{server.url}/wms", version="1.3.0", timeout=60)
    dx, dy = degrees(0.7 * planted["clearance"], planted["lat"])  # corners < clearance: all inside
    bbox = (planted["lon"] - dx, planted["lat"] - dy, planted["lon"] + dx, planted["lat"] + dy)
    info = wms.getfeatureinfo(layers=[FARMLAND], query_layers=[FARMLAND], srs="EPSG:4490", bbox=bbox,
                              size=(101, 101), xy=(50, 50), info_format="application/json", format="image/png")
    features = json.loads(info.read())["features"]
    assert len(features) == 1
    props = features[0]["properties"]
    assert int(props["fid"]) == planted["fid"]
    for code, value in planted["attrs"].items():
        if value is None:
            assert props.get(code) in (None, ""), code
        elif isinstance(value, float):
            assert float(props[code]) == pytest.approx(value, rel=1e-9), code
        else:
            assert str(props[code]) == str(value), code
    # The request OWSLib made: 1.3.0 + EPSG:4490 → BBOX in lat,lon order.
    sent = {k.upper(): v for k, v in parse_qsl(urlsplit(info.geturl()).query)}
    assert [float(v) for v in sent["BBOX"].split(",")] == pytest.approx([bbox[1], bbox[0], bbox[3], bbox[2]])

    img = wms.getmap(layers=[FARMLAND], styles=[""], srs="EPSG:4490", bbox=bbox, size=(101, 101),
                     format="image/png")
    colour, share = modal(rgba(img.read()), 50, 50, 20)
    style = planted["style"]
    assert near(colour, blend(style.fill, style.fill_opacity)) and share > 0.4, (colour, share)


# ---- 1. clients: GDAL ------------------------------------------------------------------------------------
def gdal(tool: str, *args: str, cwd: Path) -> str:
    env = dict(os.environ, GDAL_HTTP_TIMEOUT="60", CPL_DEBUG="OFF", GDAL_ENABLE_WMS_CACHE="NO")
    result = subprocess.run([tool, *args], env=env, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, f"{tool} {' '.join(args)}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "ERROR" not in result.stderr, result.stderr[-2000:]
    return result.stdout


def ogr_values(output: str, field: str) -> list[str]:
    return sorted(re.findall(rf"^\s+{field} \(String\) = (.*)$", output, re.MULTILINE))


def test_gdal_wfs_lists_layers_and_filters(server, registry, pool, tmp_path, anonymous_may):
    out = gdal("ogrinfo", "-ro", "-so", f"WFS:{server.url}/wfs", cwd=tmp_path)
    listed = dict(re.findall(r"^\d+: lantu:(\w+) \(title: ([^)]*)\)", out, re.MULTILINE))
    assert set(listed) == anonymous_may("download")
    assert listed[FARMLAND] == "永久基本农田"
    out = gdal("ogrinfo", "-ro", "-so", f"WFS:{server.url}/wfs", f"lantu:{FARMLAND}", cwd=tmp_path)
    total = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    assert f"Feature Count: {total}" in out and 'ID["EPSG",4490]' in out

    expected = [r[0] for r in sql_rows(pool, "SELECT bsm FROM blueprint.basic_farmland WHERE dlbm = '0101'")]
    assert 0 < len(expected) < total
    out = gdal("ogrinfo", "-ro", "-geom=NO", f"WFS:{server.url}/wfs", f"lantu:{FARMLAND}", "-where", "DLBM = '0101'",
               cwd=tmp_path)
    assert ogr_values(out, "BSM") == sorted(expected)

    xmin, ymin, xmax, ymax = sql_rows(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                            "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")[0]
    box = [xmin + (xmax - xmin) * 0.3 + 1.7e-7, ymin + (ymax - ymin) * 0.35 + 1.3e-7,
           xmin + (xmax - xmin) * 0.65 + 1.1e-7, ymin + (ymax - ymin) * 0.7 + 1.9e-7]
    expected = [r[0] for r in sql_rows(pool, "SELECT bsm FROM blueprint.basic_farmland WHERE ST_Intersects(geom, "
                                             "ST_MakeEnvelope(%s, %s, %s, %s, 4490))", box)]
    assert 0 < len(expected) < total
    # -spat in the layer's CRS with GDAL's GIS order (x = lon); GDAL sends the 2.0 BBOX in EPSG order itself.
    out = gdal("ogrinfo", "-ro", "-geom=NO", f"WFS:{server.url}/wfs", f"lantu:{FARMLAND}", "-spat", *map(repr, box),
               cwd=tmp_path)
    assert ogr_values(out, "BSM") == sorted(expected)


def test_gdal_wfs_110_reads_lon_lat(server, planted, tmp_path):
    out = gdal("ogrinfo", "-ro", f"WFS:{server.url}/wfs?VERSION=1.1.0", f"lantu:{FARMLAND}", "-where",
               f"fid = {planted['fid']}", cwd=tmp_path)
    x, y = map(float, re.search(r"MULTI(?:SURFACE|POLYGON) \(\(\(([-\d.]+) ([-\d.]+)", out).groups())
    assert any(abs(x - vx) < 2e-9 and abs(y - vy) < 2e-9 for vx, vy in planted["vertices"]), (x, y)


def test_gdal_wms_reads_a_map_and_the_capabilities(server, registry, planted, tmp_path, anonymous_may):
    import rasterio

    dx, dy = degrees(0.7 * planted["clearance"], planted["lat"])
    lon0, lat0, lon1, lat1 = planted["lon"] - dx, planted["lat"] - dy, planted["lon"] + dx, planted["lat"] + dy
    source = (f"WMS:{server.url}/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetMap&LAYERS={FARMLAND}&CRS=EPSG:4490"
              f"&BBOX={lat0},{lon0},{lat1},{lon1}&FORMAT=image/png")
    gdal("gdal_translate", "-q", "-outsize", "101", "101", source, str(tmp_path / "map.tif"), cwd=tmp_path)
    with rasterio.open(tmp_path / "map.tif") as ds:
        assert ds.crs.to_epsg() == 4490
        assert (ds.bounds.left, ds.bounds.bottom, ds.bounds.right, ds.bounds.top) == pytest.approx(
            (lon0, lat0, lon1, lat1), abs=1e-9)  # GDAL's GIS order: x = lon
        image = np.moveaxis(ds.read(), 0, -1)
    colour, share = modal(image, 50, 50, 20)
    style = planted["style"]
    assert near(colour, blend(style.fill, style.fill_opacity)) and share > 0.4, (colour, share)

    out = gdal("gdalinfo", f"WMS:{server.url}/wms", cwd=tmp_path)
    layers = set(re.findall(r"SUBDATASET_\d+_NAME=WMS:\S*?LAYERS=([^&\s]+)", out))
    assert anonymous_may("view") <= layers and not layers & ({lay.id for lay in registry.vector_layers()}
                                                               - anonymous_may("view"))


def wmts_source(server: Server, caps: str, layer: str = FARMLAND) -> str:
    return f"WMTS:{server.url}{caps},layer={layer},tilematrixset=CGCS2000Quad"


KVP_CAPS = "/wmts?SERVICE=WMTS&REQUEST=GetCapabilities"
KVP_TILE = ("/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER=basic_farmland&STYLE=default&TILEMATRIXSET="
            "CGCS2000Quad&TILEMATRIX=01&TILEROW={row}&TILECOL=0&FORMAT=image/png")
REST_CAPS = "/wmts/1.0.0/WMTSCapabilities.xml"


def gdal_wmts_window(server: Server, caps: str, planted: dict, tmp_path: Path) -> np.ndarray:
    dx, dy = degrees(0.7 * planted["clearance"], planted["lat"])
    window = [planted["lon"] - dx, planted["lat"] + dy, planted["lon"] + dx, planted["lat"] - dy]
    target = tmp_path / f"wmts-{abs(hash(caps))}.tif"
    gdal("gdal_translate", "-q", "-projwin", *map(repr, window), "-outsize", "101", "101",
         wmts_source(server, caps), str(target), cwd=tmp_path)
    import rasterio

    with rasterio.open(target) as ds:
        return np.moveaxis(ds.read(), 0, -1)


def test_gdal_wmts_opens_both_capabilities(server, tmp_path):
    for caps in (KVP_CAPS, REST_CAPS):
        out = gdal("gdalinfo", wmts_source(server, caps), cwd=tmp_path)
        assert 'ID["EPSG",4490]' in out and "TITLE=永久基本农田" in out, out[:2000]


def test_gdal_wmts_reads_tiles_through_the_rest_capabilities(server, planted, tmp_path):
    image = gdal_wmts_window(server, REST_CAPS, planted, tmp_path)
    assert image.shape[2] == 4 and (image[40:61, 40:61, 3] > 0).mean() > 0.9, "the planted polygon is not drawn"


def test_gdal_wmts_reads_tiles_through_the_kvp_capabilities(server, planted, tmp_path):
    image = gdal_wmts_window(server, KVP_CAPS, planted, tmp_path)
    assert (image[40:61, 40:61, 3] > 0).mean() > 0.9


def test_wmts_kvp_capabilities_point_to_the_wmts_endpoint(server):
    root = xml(server.get("/wmts", {"SERVICE": "WMTS", "REQUEST": "GetCapabilities"}).content)
    hrefs = {e.get("{http://www.w3.org/1999/xlink}href") for e in root.iterfind(".//ows11:Get", NS)}
    assert hrefs == {f"{server.url}/wmts?"}


def test_wmts_capabilities_urls_use_the_public_url(server):
    text = server.get(REST_CAPS, headers={"Host": "evil.example:9"}).text
    assert "evil.example" not in text and f"{server.url}/wmts/{FARMLAND}/" in text


# ---- 2. XML Schema validation (offline) ------------------------------------------------------------------
@pytest.fixture(scope="module")
def schemas(server, tmp_path_factory) -> dict:
    """Compiled schemas. WMS 1.3.0 capabilities carry two extensions MapServer declares in xsi:schemaLocation:
    SLD 1.1.0 (sld:DescribeLayer, sld:UserDefinedSymbolization; from MapProxy's wheel, the kit has no SLD) and
    MapServer's own (ms:GetStyles; GetSchemaExtension from the server). GetFeature is checked against the
    server's DescribeFeatureType, so feature content is validated strictly, not laxly."""
    import mapproxy

    assert (SHARED_XSD / "catalog.xml").exists(), f"conformance kit not found at {SHARED_XSD}"
    work = tmp_path_factory.mktemp("xsd")
    sld = Path(mapproxy.__file__).parent / "test" / "schemas" / "sld" / "1.1.0" / "sld_capabilities.xsd"
    assert sld.exists(), sld
    ext = server.get("/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetSchemaExtension"}).content
    (work / "ms-extension.xsd").write_bytes(ext)
    dft = server.get("/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "DescribeFeatureType",
                              "TYPENAMES": f"lantu:{FARMLAND}"}).content
    (work / "lantu.xsd").write_bytes(dft)
    lantu_ns = xml(dft).get("targetNamespace")

    def wrapper(name: str, imports: dict[str, str]) -> etree.XMLSchema:
        lines = "".join(f'<xs:import namespace="{ns}" schemaLocation="{loc}"/>' for ns, loc in imports.items())
        path = work / name
        path.write_text(f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="urn:x-lantu-test:'
                        f'{name}">{lines}</xs:schema>')
        return etree.XMLSchema(etree.parse(str(path)))

    wfs_all = "urn:x-conformance-kit:wfs20-all"
    return {
        "wms": wrapper("wms.xsd", {NS["wms"]: "http://schemas.opengis.net/wms/1.3.0/capabilities_1_3_0.xsd",
                                   "http://www.opengis.net/sld": sld.as_uri(),
                                   "http://mapserver.gis.umn.edu/mapserver": (work / "ms-extension.xsd").as_uri()}),
        "wms-plain": etree.XMLSchema(etree.parse(str(SHARED_XSD / "ogc/wms/1.3.0/capabilities_1_3_0.xsd"))),
        "wms-exception": etree.XMLSchema(etree.parse(str(SHARED_XSD / "ogc/wms/1.3.0/exceptions_1_3_0.xsd"))),
        "wmts": etree.XMLSchema(etree.parse(str(SHARED_XSD / "ogc/wmts/1.0/wmtsGetCapabilities_response.xsd"))),
        "wfs": wrapper("wfs.xsd", {wfs_all: (SHARED_XSD / "wfs20-all.xsd").as_uri(),
                                   lantu_ns: (work / "lantu.xsd").as_uri()}),
    }


def validate(schema: etree.XMLSchema, body: bytes) -> list[str]:
    ok = schema.validate(etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True)))
    return [] if ok else [f"{e.line}: {e.message}" for e in schema.error_log][:10]


def test_wms_130_capabilities_validate(server, schemas):
    body = server.get("/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetCapabilities"}).content
    assert validate(schemas["wms"], body) == []
    # Without the extension schemas the same document fails exactly on the three extension elements.
    errors = validate(schemas["wms-plain"], body)
    assert errors and all(re.search(r"\{http://www\.opengis\.net/sld\}|\{http://mapserver", e) for e in errors), errors


def test_wfs_20_capabilities_validate(server, schemas):
    body = server.get("/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetCapabilities"}).content
    assert validate(schemas["wfs"], body) == []


@pytest.mark.parametrize("caps", [KVP_CAPS, REST_CAPS])
def test_wmts_capabilities_validate(server, schemas, caps):
    body = server.get(caps).content
    assert validate(schemas["wmts"], body) == []
    root = xml(body)
    sets = {e.findtext("ows11:Identifier", namespaces=NS)
            for e in root.iterfind("wmts:Contents/wmts:TileMatrixSet", NS)}
    assert sets == {"WebMercatorQuad", "CGCS2000Quad"}


def test_getfeature_gml32_validates_strictly(server, schemas, pool):
    body = server.get("/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                               "TYPENAMES": f"lantu:{FARMLAND}", "COUNT": 5}).content
    root = xml(body)
    assert root.tag == f"{{{NS['wfs']}}}FeatureCollection" and len(root.findall("wfs:member", NS)) == 5
    assert validate(schemas["wfs"], body) == []
    # Strict, not lax: a property the application schema does not declare makes it invalid.
    tampered = re.sub(rb"(<lantu:BSM>)", rb"<lantu:NOPE>1</lantu:NOPE>\1", body, count=1)
    assert tampered != body and validate(schemas["wfs"], tampered)


# ---- 3. EPSG:4490 and EPSG:4547 draw the same features ---------------------------------------------------
def test_getmap_4490_and_4547_draw_the_same_features(server, planted):
    half, size = 1500.0, 300  # a 3 km square in GK, 10 m pixels
    e0, n0 = planted["east"] - half, planted["north"] - half
    gk = rgba(server.get("/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": FARMLAND,
                                  "STYLES": "", "CRS": "EPSG:4547",
                                  "BBOX": f"{n0},{e0},{n0 + 2 * half},{e0 + 2 * half}",  # GK: north, east
                                  "WIDTH": size, "HEIGHT": size, "FORMAT": "image/png", "TRANSPARENT": "TRUE"}).content)
    to_geo = Transformer.from_crs(4547, 4490, always_xy=True)
    edge = np.linspace(0, 2 * half, 61)
    ring_e = np.concatenate([e0 + edge, e0 + edge, np.full(61, e0), np.full(61, e0 + 2 * half)])
    ring_n = np.concatenate([np.full(61, n0), np.full(61, n0 + 2 * half), n0 + edge, n0 + edge])
    lons, lats = to_geo.transform(ring_e, ring_n)
    lon0, lon1, lat0, lat1 = lons.min(), lons.max(), lats.min(), lats.max()
    width = round((lon1 - lon0) / degrees(10, planted["lat"])[0])
    height = round((lat1 - lat0) / degrees(10, planted["lat"])[1])
    geo = rgba(server.get("/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": FARMLAND,
                                   "STYLES": "", "CRS": "EPSG:4490", "BBOX": f"{lat0},{lon0},{lat1},{lon1}",
                                   "WIDTH": width, "HEIGHT": height, "FORMAT": "image/png",
                                   "TRANSPARENT": "TRUE"}).content)
    # Each GK pixel centre, located in the 4490 image.
    cols, rows = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    lon, lat = to_geo.transform(e0 + cols * (2 * half / size), n0 + 2 * half - rows * (2 * half / size))
    gx = np.clip(((lon - lon0) / (lon1 - lon0) * width).astype(int), 0, width - 1)
    gy = np.clip(((lat1 - lat) / (lat1 - lat0) * height).astype(int), 0, height - 1)
    drawn_gk = gk[..., 3] > 0
    drawn_geo = geo[..., 3] > 0
    # Edge tolerance: compare only where the 4490 image is uniform over a 5 × 5 neighbourhood.
    padded = np.pad(drawn_geo, 2, mode="edge")
    stack = np.stack([padded[dy:dy + height, dx:dx + width] for dy in range(5) for dx in range(5)])
    uniform = stack.all(axis=0) | ~stack.any(axis=0)
    compared = uniform[gy, gx]
    mismatch = (drawn_gk != drawn_geo[gy, gx]) & compared
    share = drawn_gk.mean()
    assert 0.1 < share < 0.9, f"the view should hold farmland and non-farmland ({share:.2f} drawn)"
    assert compared.mean() > 0.8
    assert mismatch.sum() / compared.sum() < 0.002, (mismatch.sum(), compared.sum())


# ---- 4. axis order (brief §10) ---------------------------------------------------------------------------
WMS_AXES = [  # (version, CRS parameter value, BBOX order sent, drawn?)
    ("1.3.0", "EPSG:4490", "lat,lon", True),
    ("1.3.0", "EPSG:4490", "lon,lat", False),
    ("1.3.0", "CRS:84", "lon,lat", True),
    ("1.1.1", "EPSG:4490", "lon,lat", True),
    ("1.1.1", "EPSG:4490", "lat,lon", False),
    ("1.1.1", "CRS:84", "lon,lat", True),  # MapServer refuses CRS:84 in 1.1.1; Lantu sends EPSG:4326 (same order)
]


@pytest.mark.parametrize("version,crs,order,drawn", WMS_AXES)
def test_wms_bbox_axis_order(server, planted, version, crs, order, drawn):
    dx, dy = degrees(0.5 * planted["clearance"], planted["lat"])
    lon0, lat0, lon1, lat1 = planted["lon"] - dx, planted["lat"] - dy, planted["lon"] + dx, planted["lat"] + dy
    bbox = (lat0, lon0, lat1, lon1) if order == "lat,lon" else (lon0, lat0, lon1, lat1)
    key = "CRS" if version == "1.3.0" else "SRS"
    response = server.get("/wms", {"SERVICE": "WMS", "VERSION": version, "REQUEST": "GetMap", "LAYERS": FARMLAND,
                                   "STYLES": "", key: crs, "BBOX": ",".join(map(repr, bbox)), "WIDTH": 33,
                                   "HEIGHT": 33, "FORMAT": "image/png", "TRANSPARENT": "TRUE"})
    assert response.headers["Content-Type"] == "image/png", response.text[:800]
    alpha = rgba(response.content)[..., 3]
    assert ((alpha > 0).mean() > 0.95) if drawn else not (alpha > 0).any()


def first_position(body: bytes) -> tuple[float, float]:
    match = re.search(rb"<gml:(?:posList|pos)[^>]*>\s*([-\d.]+)\s+([-\d.]+)", body)
    assert match, body[:1500]
    return float(match[1]), float(match[2])


def srs_of(body: bytes) -> str:
    return re.search(rb'srsName="([^"]+)"', body)[1].decode()


WFS_AXES = [  # (version, srsName, output axis order, srsName echoed in the GML)
    ("2.0.0", None, "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
    ("2.0.0", "urn:ogc:def:crs:EPSG::4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
    ("2.0.0", "http://www.opengis.net/def/crs/EPSG/0/4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),  # Lantu: → URN
    # A bare `EPSG:4490` request: MapServer 8.0 answers lat/lon, but labels the GML with the URN, so the answer
    # describes itself correctly and clients read it right (brief §10 would prefer lon/lat here; docs/ows.md).
    ("2.0.0", "EPSG:4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
    # WFS 1.1.0: MapServer writes lat/lon for every form but labels it "EPSG:4490", which by the convention
    # means lon/lat; Lantu relabels it with the URN (server/ows.py), so GDAL reads x = lon.
    ("1.1.0", "urn:ogc:def:crs:EPSG::4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
    ("1.1.0", "http://www.opengis.net/def/crs/EPSG/0/4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
    ("1.1.0", "EPSG:4490", "lat,lon", "urn:ogc:def:crs:EPSG::4490"),
]


@pytest.mark.parametrize("version,srs,order,echo", WFS_AXES)
def test_wfs_srsname_axis_order(server, planted, version, srs, order, echo):
    params = {"SERVICE": "WFS", "VERSION": version, "REQUEST": "GetFeature"}
    if version == "2.0.0":
        params.update(TYPENAMES=f"lantu:{FARMLAND}", RESOURCEID=f"{FARMLAND}.{planted['fid']}")
    else:
        params.update(TYPENAME=f"lantu:{FARMLAND}", FEATUREID=f"{FARMLAND}.{planted['fid']}")
    if srs:
        params["SRSNAME"] = srs
    body = server.get("/wfs", params).content
    a, b = first_position(body)
    vertices = planted["vertices"]
    position = (b, a) if order == "lat,lon" else (a, b)  # as (lon, lat)
    assert any(abs(position[0] - x) < 2e-9 and abs(position[1] - y) < 2e-9 for x, y in vertices), (a, b)
    if echo:
        assert srs_of(body) == echo


def test_wfs_post_query_srsname_http_form(server, planted):
    body = (f'<wfs:GetFeature service="WFS" version="2.0.0" xmlns:wfs="{NS["wfs"]}" '
            f'xmlns:fes="http://www.opengis.net/fes/2.0"><wfs:Query typeNames="lantu:{FARMLAND}" '
            f'srsName="http://www.opengis.net/def/crs/EPSG/0/4490"><fes:Filter><fes:ResourceId '
            f'rid="{FARMLAND}.{planted["fid"]}"/></fes:Filter></wfs:Query></wfs:GetFeature>').encode()
    response = requests.post(f"{server.url}/wfs", data=body, headers={"Content-Type": "application/xml"}, timeout=60)
    assert response.status_code == 200, response.text[:800]
    lat, lon = first_position(response.content)
    assert any(abs(lon - x) < 2e-9 and abs(lat - y) < 2e-9 for x, y in planted["vertices"])


# ---- 5. bad and hostile requests ---------------------------------------------------------------------------
def wms_getmap(**override) -> dict:
    params = {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetMap", "LAYERS": FARMLAND, "STYLES": "",
              "CRS": "EPSG:4490", "BBOX": "28.05,113.2,28.1,113.25", "WIDTH": 64, "HEIGHT": 64, "FORMAT": "image/png"}
    params.update(override)
    return params


def wfs_getfeature(**override) -> dict:
    params = {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature", "TYPENAMES": f"lantu:{FARMLAND}",
              "COUNT": 1}
    params.update(override)
    return params


BAD_FILTER = ('<fes:Filter xmlns:fes="http://www.opengis.net/fes/2.0"><fes:PropertyIsEqualTo><fes:ValueReference>'
              "NOPE</fes:ValueReference><fes:Literal>1</fes:Literal></fes:PropertyIsEqualTo></fes:Filter>")
BAD_REQUESTS = [  # (id, path, params, exception code (None = a code-less WMS ServiceException), locator, text)
    ("wms-unknown-layer", "/wms", wms_getmap(LAYERS="nope"), "LayerNotDefined", None, "LAYERS"),
    # WMS 1.3.0 §E names the code InvalidCRS; MapServer 8.0 answers InvalidSRS in 1.3.0 too (reported).
    ("wms-unknown-crs", "/wms", wms_getmap(CRS="EPSG:9999"), ("InvalidCRS", "InvalidSRS"), None, "CRS"),
    ("wms-111-unknown-srs", "/wms", wms_getmap(VERSION="1.1.1", CRS=None, SRS="EPSG:9999"), "InvalidSRS", None, "SRS"),
    ("wms-urn-crs", "/wms", wms_getmap(CRS="urn:ogc:def:crs:EPSG::4490"), ("InvalidCRS", "InvalidSRS"), None, "CRS"),
    # WMS has no code for a bad BBOX or size: a ServiceException without one (WMS 1.3.0 §E.1).
    ("wms-bbox-not-numbers", "/wms", wms_getmap(BBOX="28,113,abc"), None, None, "BBOX"),
    ("wms-bbox-inverted", "/wms", wms_getmap(BBOX="28.1,113.2,28.05,113.25"), None, None, "BBOX"),
    ("wms-width-100000", "/wms", wms_getmap(WIDTH=100000), None, None, "WIDTH and HEIGHT"),
    ("wms-bad-format", "/wms", wms_getmap(FORMAT="image/nope"), "InvalidFormat", None, "nope"),
    ("wms-bad-style", "/wms", wms_getmap(STYLES="nope"), "StyleNotDefined", None, "nope"),
    ("wfs-unknown-type", "/wfs", wfs_getfeature(TYPENAMES="lantu:nope"), "InvalidParameterValue", "typename", "nope"),
    ("wfs-unknown-srs", "/wfs", wfs_getfeature(SRSNAME="EPSG:9999"), "InvalidParameterValue", "srsname", "SRS"),
    ("wfs-bbox-not-numbers", "/wfs", wfs_getfeature(BBOX="1,2,abc"), "InvalidParameterValue", "bbox", "BBOX"),
    ("wfs-filter-unknown-property", "/wfs", wfs_getfeature(FILTER=BAD_FILTER), "InvalidParameterValue", "filter",
     "NOPE"),
    ("wfs-filter-not-xml", "/wfs", wfs_getfeature(FILTER="<fes:Filter"), "InvalidParameterValue", "filter", "FILTER"),
    ("wfs-filter-unknown-operator", "/wfs", wfs_getfeature(
        FILTER='<fes:Filter xmlns:fes="http://www.opengis.net/fes/2.0"><fes:Bogus/></fes:Filter>'),
     "InvalidParameterValue", "filter", "FILTER"),
    # OWS Common 1.1 §8.6 names an unknown operation OperationNotSupported; MapServer 8.0 answers
    # InvalidParameterValue (WFS) and a code-less exception (WMS). Pinned, reported.
    ("wfs-unknown-request", "/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "Nope"},
     ("OperationNotSupported", "InvalidParameterValue"), "request", "Nope"),
    ("wms-unknown-request", "/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "Nope"},
     ("OperationNotSupported", None), None, "unsupported WMS request"),
    ("wms-on-wfs", "/wfs", {"SERVICE": "WMS", "REQUEST": "GetCapabilities"}, "InvalidParameterValue", "service",
     "WFS"),
    ("wmts-unknown-layer", "/wmts", {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0", "LAYER": "nope",
                                     "STYLE": "default", "TILEMATRIXSET": "CGCS2000Quad", "TILEMATRIX": "01",
                                     "TILEROW": 0, "TILECOL": 0, "FORMAT": "image/png"},
     "InvalidParameterValue", None, "nope"),
    ("wmts-tile-out-of-range", "/wmts", {"SERVICE": "WMTS", "REQUEST": "GetTile", "VERSION": "1.0.0",
                                         "LAYER": FARMLAND, "STYLE": "default", "TILEMATRIXSET": "CGCS2000Quad",
                                         "TILEMATRIX": "01", "TILEROW": 99, "TILECOL": 0, "FORMAT": "image/png"},
     "TileOutOfRange", None, "outside"),
]


def exception_of(body: bytes) -> tuple[str, str | None, str | None, str]:
    """(root kind, code, locator, text) of a ServiceExceptionReport or ows:ExceptionReport."""
    root = xml(body)
    for kind in ("ows11", "ows20"):
        if root.tag == f"{{{NS[kind]}}}ExceptionReport":
            exc = root.find(f"{kind}:Exception", NS)
            return kind, exc.get("exceptionCode"), exc.get("locator"), exc.findtext(f"{kind}:ExceptionText", "", NS)
    assert root.tag in ("{http://www.opengis.net/ogc}ServiceExceptionReport", "ServiceExceptionReport"), root.tag
    exc = root.find("{http://www.opengis.net/ogc}ServiceException")
    exc = exc if exc is not None else root.find("ServiceException")
    return "wms", exc.get("code"), None, exc.text or ""


@pytest.mark.parametrize("path,params,code,locator,text", [case[1:] for case in BAD_REQUESTS],
                         ids=[case[0] for case in BAD_REQUESTS])
def test_bad_requests_get_the_protocol_exception(server, schemas, path, params, code, locator, text):
    params = {k: v for k, v in params.items() if v is not None}
    response = server.get(path, params)
    assert response.status_code in (200, 400, 404), response.status_code
    kind, got_code, got_locator, got_text = exception_of(response.content)
    # ows20: Lantu's own WFS refusals (see test_lantu_wfs_refusal_uses_the_wfs_20_exception_namespace).
    assert kind in (("wms",) if path == "/wms" else ("ows11", "ows20")), kind
    assert got_code in (code if isinstance(code, tuple) else (code,)), (got_code, got_text)
    assert (got_locator or "").lower() == (locator or ""), got_locator
    assert text.lower() in got_text.lower(), got_text
    if kind == "wms" and params["VERSION"] == "1.3.0":
        assert validate(schemas["wms-exception"], response.content) == []
    elif kind != "wms":
        assert validate(schemas["wfs"], response.content) == []


XXE = (b'<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
       b'<wfs:GetFeature service="WFS" version="2.0.0" xmlns:wfs="http://www.opengis.net/wfs/2.0" '
       b'xmlns:fes="http://www.opengis.net/fes/2.0"><wfs:Query typeNames="lantu:basic_farmland"><fes:Filter>'
       b"<fes:PropertyIsEqualTo><fes:ValueReference>BSM</fes:ValueReference><fes:Literal>&xxe;</fes:Literal>"
       b"</fes:PropertyIsEqualTo></fes:Filter></wfs:Query></wfs:GetFeature>")
# The same attack through an external DTD only (no <!ENTITY in the body), its DOCTYPE after a 5 kB comment.
XXE_LATE = XXE.replace(b'<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
                       b"<!-- " + b"x" * 5000 + b' -->\n<!DOCTYPE wfs:GetFeature SYSTEM "http://127.0.0.1:9/x.dtd">')


@pytest.mark.parametrize("path", ["/wfs", "/wms"])
@pytest.mark.parametrize("body", [XXE, XXE_LATE], ids=["doctype", "doctype-after-5kB"])
def test_xxe_post_is_refused_before_mapserver(server, schemas, path, body):
    response = requests.post(f"{server.url}{path}", data=body, headers={"Content-Type": "application/xml"},
                             timeout=60)
    assert response.status_code == 400, response.text[:800]
    kind, code, _, text = exception_of(response.content)
    assert code == "OperationParsingFailed" and "DOCTYPE" in text
    assert "root:" not in response.text
    if kind == "wms":
        assert validate(schemas["wms-exception"], response.content) == []
    else:
        assert validate(schemas["wfs"], response.content) == []


def test_lantu_wfs_refusal_uses_the_wfs_20_exception_namespace(server):
    response = requests.post(f"{server.url}/wfs", data=XXE, headers={"Content-Type": "application/xml"}, timeout=60)
    assert exception_of(response.content)[0] == "ows11"


@pytest.mark.parametrize("key", ["MAP", "map", "Map"])
def test_map_parameter_is_ignored(server, key):
    caps = server.get("/wms", {"SERVICE": "WMS", "VERSION": "1.3.0", "REQUEST": "GetCapabilities", key: "/etc/passwd"})
    assert caps.status_code == 200 and xml(caps.content).tag == f"{{{NS['wms']}}}WMS_Capabilities"
    assert "root:" not in caps.text and "passwd" not in caps.text
    image = server.get("/wms", {**wms_getmap(), key: "/etc/passwd"})
    assert image.headers["Content-Type"] == "image/png"
    feature = server.get("/wfs", {**wfs_getfeature(), key: "/etc/passwd"})
    assert xml(feature.content).tag == f"{{{NS['wfs']}}}FeatureCollection"


TRAVERSALS = ["/wmts/basic_farmland/CGCS2000Quad/01/0/..%2F..%2F..%2Fetc%2Fpasswd.png",
              "/wmts/..%2F..%2Fetc/CGCS2000Quad/01/0/0.png", "/tms/1.0.0/..%2F..%2Fetc%2Fpasswd",
              "/wmts/basic_farmland/CGCS2000Quad/01/0/0.png/..%2F..%2F..%2F..%2Fetc%2Fpasswd"]


def test_wmts_path_traversal_reads_no_file(server):
    for path in TRAVERSALS:
        response = requests.get(f"{server.url}{path}", timeout=60)
        assert "root:" not in response.text, path
        # A 4xx, or a tile: MapProxy matches the start of a REST path and ignores a trailing "/../…".
        assert response.status_code >= 400 or response.content.startswith(b"\x89PNG"), (path, response.status_code)


# Malformed WMTS/TMS requests MapProxy answers with a 500 (§7: never a 500 for bad input).
WMTS_MALFORMED = [*TRAVERSALS[:2], "/wmts/basic_farmland/CGCS2000Quad/01/0/abc.png",
                  KVP_TILE.format(row="abc"), "/wmts?SERVICE=WMTS&REQUEST=Nope"]


@pytest.mark.parametrize("path", WMTS_MALFORMED)
def test_malformed_wmts_requests_are_4xx_exception_reports(server, path):
    response = requests.get(f"{server.url}{path}", timeout=60)
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    assert exception_of(response.content)[0] == "ows11"


def test_every_mapserv_worker_still_answers(server, settings):
    """After the bad requests above (module order), each worker answers on its own socket: none hung."""
    from lantu.server import fcgi
    from lantu.server.mapserver_pool import socket_paths

    for path in socket_paths(settings.run_dir, settings.mapserver_workers):
        answer = fcgi.request(str(path), {"REQUEST_METHOD": "GET", "QUERY_STRING": "SERVICE=WMS&REQUEST="
                                          "GetCapabilities&VERSION=1.3.0", "SCRIPT_NAME": "/wms"}, timeout=10)
        assert answer.status == 200 and b"WMS_Capabilities" in answer.body, path


def test_killed_mapserv_worker_is_replaced(server, settings):
    before = server.mapserv_pids()
    assert len(before) == settings.mapserver_workers
    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    statuses = []
    for i in range(12):  # right after the kill: Lantu skips the dead socket
        response = server.get("/wms", wms_getmap(BBOX=f"28.05,113.2,28.1,{113.25 + i * 1e-4}"))
        statuses.append((response.status_code, response.headers["Content-Type"]))
    assert statuses == [(200, "image/png")] * 12, statuses
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        now = server.mapserv_pids()
        if len(now) == settings.mapserver_workers and victim not in now:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"the killed worker {victim} was not replaced: {server.mapserv_pids()}")
    for _ in range(2 * settings.mapserver_workers):
        assert server.get("/wfs", wfs_getfeature()).status_code == 200


# ---- 6. WMTS cache invalidation --------------------------------------------------------------------------
def cgcs_tile(lon: float, lat: float, level: int) -> tuple[int, int]:
    span = 360 / 2 ** level  # CGCS2000Quad (MapProxy level = 天地图 level): 256 px of 1.40625 / 2^level degrees
    return int((lon + 180) // span), int((90 - lat) // span)


def mercator_tile(lon: float, lat: float, level: int) -> tuple[int, int]:
    n = 2 ** level
    y = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2
    return int((lon + 180) / 360 * n), int(y * n)


def cgcs_bounds(col: int, row: int, level: int) -> tuple[float, float, float, float]:
    span = 360 / 2 ** level
    return -180 + col * span, 90 - (row + 1) * span, -180 + (col + 1) * span, 90 - row * span


def cached(server: Server) -> set[tuple[str, int, int, int]]:
    base = server.home / "cache" / "wmts" / f"{FARMLAND}_cache"
    return {(p.parts[-4], int(p.parts[-3]), int(p.parts[-2]), int(p.stem)) for p in base.glob("*/*/*/*.png")}


def tile_url(grid: str, level: int, col: int, row: int) -> str:
    return f"/wmts/{FARMLAND}/{grid}/{level:02d}/{col}/{row}.png"


def test_a_load_removes_only_the_cached_tiles_of_its_area(server, pool, registry, planted):
    from shapely.geometry import box

    from lantu.providers.writer import delete_features, write_features

    level = 14
    get_tile = lambda grid, col, row: server.get(tile_url(grid, level, col, row))  # noqa: E731
    # Tile A: near the planted polygon, with a transparent 40 × 40 px block in its middle for the new square.
    col, row = cgcs_tile(planted["lon"], planted["lat"], level)
    for dc, dr in [(0, 0), (1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, -1), (2, 0), (-2, 0)]:
        a = (col + dc, row + dr)
        alpha = rgba(get_tile("CGCS2000Quad", *a).content)[..., 3]
        spot = next(((x, y) for y in range(64, 160, 8) for x in range(64, 160, 8)
                     if not alpha[y:y + 40, x:x + 40].any()), None)
        if spot:
            break
    else:
        pytest.fail("no tile near the planted polygon has a clear 40 px block")
    x0, y0, x1, y1 = cgcs_bounds(*a, level)
    px = (x1 - x0) / 256
    square = box(x0 + (spot[0] + 8) * px, y1 - (spot[1] + 32) * px, x0 + (spot[0] + 32) * px, y1 - (spot[1] + 8) * px)
    centre = square.centroid
    # B: the far end of the layer; C: three tiles east of A; A in WebMercatorQuad too.
    far = sql_rows(pool, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p, geom FROM "
                         "blueprint.basic_farmland) s ORDER BY ST_Distance(geom, ST_Point(%s, %s, 4490)) DESC LIMIT 1",
                   (centre.x, centre.y))[0]
    b = cgcs_tile(*far, level)
    c = (a[0] + 3, a[1])
    wm = mercator_tile(centre.x, centre.y, level)
    assert abs(a[0] - b[0]) > 3 or abs(a[1] - b[1]) > 3
    for grid, tile in [("CGCS2000Quad", b), ("CGCS2000Quad", c), ("WebMercatorQuad", wm)]:
        get_tile(grid, *tile)
    before = cached(server)
    for key in [("CGCS2000Quad", level, *a), ("CGCS2000Quad", level, *b), ("CGCS2000Quad", level, *c),
                ("WebMercatorQuad", level, *wm)]:
        assert key in before, f"{key} not cached on disk as $LANTU_HOME/cache/wmts/<layer>_cache/<grid>/z/x/y.png"
    b_file = server.home / "cache" / "wmts" / f"{FARMLAND}_cache" / "CGCS2000Quad" / f"{level}/{b[0]}/{b[1]}.png"
    b_stat = b_file.stat()

    layer = registry.get(FARMLAND)
    bsm = "430121999999990002"
    row_values = {"BSM": bsm, "YSDM": layer.ysdm, "XZQDM": "430121", "XZQMC": "长沙县", "DLBM": "0101",
                  "DLMC": "水田", "MJ": 40000.0}
    with pool.connection() as conn:
        write_features(conn, layer, [row_values], [square], mode="append", who="test-ows", source="test_ows")
    try:
        time.sleep(1.1)  # the WMTS invalidator reads the change log at most once a second
        assert get_tile("CGCS2000Quad", *b).status_code == 200  # any /wmts request applies the change log
        after = cached(server)
        removed = before - after
        assert ("CGCS2000Quad", level, *a) in removed and ("WebMercatorQuad", level, *wm) in removed
        assert ("CGCS2000Quad", level, *b) in after and ("CGCS2000Quad", level, *c) in after
        assert b_file.stat().st_mtime_ns == b_stat.st_mtime_ns
        # Only nearby tiles went: within one tile of the square's tiles, at every cached level.
        for grid, z, x, y in removed:
            tiles = [(cgcs_tile if grid == "CGCS2000Quad" else mercator_tile)(lon, lat, z)
                     for lon in (square.bounds[0], square.bounds[2]) for lat in (square.bounds[1], square.bounds[3])]
            assert min(t[0] for t in tiles) - 1 <= x <= max(t[0] for t in tiles) + 1, (grid, z, x, y)
            assert min(t[1] for t in tiles) - 1 <= y <= max(t[1] for t in tiles) + 1, (grid, z, x, y)
        # The re-rendered tile shows the new square.
        alpha = rgba(get_tile("CGCS2000Quad", *a).content)[..., 3]
        assert (alpha[spot[1] + 11:spot[1] + 29, spot[0] + 11:spot[0] + 29] > 0).mean() > 0.9
        assert not alpha[spot[1]:spot[1] + 5, spot[0]:spot[0] + 40].any()  # above the square: still clear
    finally:
        with pool.connection() as conn:
            delete_features(conn, layer, [bsm], who="test-ows", source="test_ows")
        time.sleep(1.1)
        get_tile("CGCS2000Quad", *b)
    alpha = rgba(get_tile("CGCS2000Quad", *a).content)[..., 3]
    assert not alpha[spot[1]:spot[1] + 40, spot[0]:spot[0] + 40].any(), "the removed square is still drawn"


def test_wfs_paging_without_sortby_is_stable_and_complete(server, pool):
    """MapServer pages without ORDER BY; Lantu adds SORTBY=fid to paged GetFeature requests, so walking the
    pages of a layer returns every feature exactly once (compared with SQL)."""
    total = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    seen = []
    for start in range(0, total, 50):
        answer = server.get("/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                                     "TYPENAMES": "lantu:basic_farmland", "COUNT": "50", "STARTINDEX": str(start),
                                     "OUTPUTFORMAT": "application/json"})
        assert answer.status_code == 200
        seen += [f["properties"]["BSM"] for f in answer.json()["features"]]
    assert len(seen) == total == len(set(seen))
    again = server.get("/wfs", {"SERVICE": "WFS", "VERSION": "2.0.0", "REQUEST": "GetFeature",
                                "TYPENAMES": "lantu:basic_farmland", "COUNT": "50", "STARTINDEX": "50",
                                "OUTPUTFORMAT": "application/json"}).json()["features"]
    assert [f["properties"]["BSM"] for f in again] == seen[50:100]  # the same page every time


def test_paged_getfeature_gets_a_sort_order():
    from lantu.server.ows import _normalise

    paged = _normalise([("REQUEST", "GetFeature"), ("STARTINDEX", "100"), ("COUNT", "10")])
    assert ("SORTBY", "fid") in paged
    chosen = _normalise([("REQUEST", "GetFeature"), ("STARTINDEX", "100"), ("SORTBY", "BSM")])
    assert [v for k, v in chosen if k == "SORTBY"] == ["BSM"]
    assert ("SORTBY", "fid") not in _normalise([("REQUEST", "GetMap"), ("STARTINDEX", "1")])

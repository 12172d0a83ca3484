"""OGC API – Features semantics against the small demo: collections, CRS and axis order, bbox, paging,
selection, sorting, datetime, filters, formats, and the malformed inputs each refused with the right 4xx.

Expected answers come from SQL on the stored data (or pyproj), never from the server's own output."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

import pytest
from pyproj import Transformer

from lantu.providers import crs as crs_mod
from lantu.server.app import create_app

EPSG = "http://www.opengis.net/def/crs/EPSG/0/{}"


@pytest.fixture(scope="module")
def client(settings, registry, pool, small_demo):
    return create_app(settings, registry).test_client()


def sql_one(pool, statement, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchone()


def get_json(client, url, status=200):
    response = client.get(url)
    assert response.status_code == status, (url, response.get_data(as_text=True)[:500])
    return response.get_json(force=True)


def test_every_vector_layer_is_a_collection_with_crs_and_extent(client, registry, pool, anonymous_may):
    doc = get_json(client, "/collections?f=json")
    by_id = {c["id"]: c for c in doc["collections"]}
    # every vector layer (the DEM coverage is described at /collections/dem but not listed: see features.py)
    # (those an anonymous caller may discover under the shipped access policy)
    vector = {cid for cid in by_id if registry.get(cid) and registry.get(cid).is_vector}
    assert vector == anonymous_may("list") and len(vector) > 60
    farmland = by_id["basic_farmland"]
    assert farmland["title"] == "永久基本农田"
    assert farmland["storageCrs"] == EPSG.format(4490)
    offered = set(farmland["crs"])
    assert {crs_mod.CRS84_URI, EPSG.format(4490), EPSG.format(4326), EPSG.format(3857)} <= offered
    assert {EPSG.format(c) for c in range(4513, 4555)} <= offered
    expected = sql_one(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                             "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")
    assert farmland["extent"]["spatial"]["bbox"][0] == pytest.approx(list(expected), abs=1e-9)
    rels = {link["rel"] for link in farmland["links"]}
    assert {"items", "http://www.opengis.net/def/rel/ogc/1.0/queryables"} <= rels
    english = client.get("/collections/basic_farmland?f=json", headers={"Accept-Language": "en"}).get_json()
    assert english["title"] == "Permanent basic farmland"


def test_extent_follows_loads(client, pool, registry):
    from shapely.geometry import Point

    from lantu.providers.writer import delete_features, write_features

    layer = registry.get("key_projects")
    before = get_json(client, "/collections/key_projects")["extent"]["spatial"]["bbox"][0]
    row = {"BSM": "430121999999999999", "YSDM": layer.ysdm, "XZQDM": "430121", "XZQMC": "长沙县", "XMMC": "远处项目"}
    with pool.connection() as conn:
        write_features(conn, layer, [row], [Point(120.5, 30.25)], mode="append", who="test", source="test")
    try:
        time.sleep(1.1)  # the collection metadata re-checks the change log at most once a second
        after = get_json(client, "/collections/key_projects")["extent"]["spatial"]["bbox"][0]
        assert after[2] == pytest.approx(120.5) and after[3] == pytest.approx(30.25)
        assert after[:2] == pytest.approx(before[:2])
    finally:
        with pool.connection() as conn:  # through the change log, so the extent shrinks back too
            delete_features(conn, layer, [row["BSM"]], who="test", source="test")


def _first_point(client, crs_uri=None):
    url = "/collections/key_projects/items?limit=1&sortby=BSM"
    if crs_uri:
        url += "&crs=" + quote(crs_uri)
    response = client.get(url)
    assert response.status_code == 200
    feature = response.get_json(force=True)["features"][0]
    return feature, response.headers["Content-Crs"]


def test_axis_order_per_crs(client, pool):
    default, header = _first_point(client)
    lon, lat = sql_one(pool, "SELECT ST_X(geom), ST_Y(geom) FROM blueprint.key_projects WHERE fid = %s",
                       (default["id"],))
    assert 112 < lon < 114 and 27 < lat < 29  # stored x = lon
    assert header == f"<{crs_mod.CRS84_URI}>"
    assert default["geometry"]["coordinates"] == pytest.approx([lon, lat], abs=1e-9)  # CRS84: lon, lat
    for code in (4490, 4326):
        feature, header = _first_point(client, EPSG.format(code))
        assert header == f"<{EPSG.format(code)}>"
        assert feature["geometry"]["coordinates"] == pytest.approx([lat, lon], abs=1e-9)  # EPSG order: lat, lon
    mercator, _ = _first_point(client, EPSG.format(3857))
    x, y = Transformer.from_crs(4490, 3857, always_xy=True).transform(lon, lat)
    assert mercator["geometry"]["coordinates"] == pytest.approx([x, y], abs=1e-3)


@pytest.mark.parametrize("code", [4547, 4546, 4525])
def test_gauss_kruger_output_round_trips_within_a_millimetre(client, pool, code):
    feature, header = _first_point(client, EPSG.format(code))
    assert header == f"<{EPSG.format(code)}>"
    north, east = feature["geometry"]["coordinates"]
    lon, lat = sql_one(pool, "SELECT ST_X(geom), ST_Y(geom) FROM blueprint.key_projects WHERE fid = %s",
                       (feature["id"],))
    back_lon, back_lat = Transformer.from_crs(code, 4490, always_xy=True).transform(east, north)
    to_metres = Transformer.from_crs(4490, 4547, always_xy=True)
    dx = to_metres.transform(back_lon, back_lat)[0] - to_metres.transform(lon, lat)[0]
    dy = to_metres.transform(back_lon, back_lat)[1] - to_metres.transform(lon, lat)[1]
    assert (dx * dx + dy * dy) ** 0.5 < 0.001


def _bbox_count(pool, box):
    return sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey WHERE ST_Intersects(geom, "
                         "ST_MakeEnvelope(%s, %s, %s, %s, 4490))", box)[0]


def test_bbox_in_crs84_4490_and_gk(client, pool):
    box = sql_one(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent(geom) e FROM blueprint.land_use_survey) s")
    lon0, lat0, lon1, lat1 = box
    quarter = (lon0, lat0, (lon0 + lon1) / 2, (lat0 + lat1) / 2)
    expected = _bbox_count(pool, quarter)
    assert 0 < expected < sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey")[0]
    crs84 = get_json(client, "/collections/land_use_survey/items?limit=1&bbox=" + ",".join(map(str, quarter)))
    assert crs84["numberMatched"] == expected  # pygeoapi 0.21 matches nothing here with a 4490 table
    latlon = f"{quarter[1]},{quarter[0]},{quarter[3]},{quarter[2]}"
    in_4490 = get_json(client, f"/collections/land_use_survey/items?limit=1&bbox={latlon}"
                               f"&bbox-crs={quote(EPSG.format(4490))}")
    assert in_4490["numberMatched"] == expected
    # A GK bbox (north/east order) of a small square: compare with the same densified square in SQL.
    t = Transformer.from_crs(4490, 4547, always_xy=True)
    e0, n0 = t.transform(quarter[0], quarter[1])
    e1, n1 = e0 + 3000, n0 + 3000
    gk = get_json(client, f"/collections/land_use_survey/items?limit=1&bbox={n0},{e0},{n1},{e1}"
                          f"&bbox-crs={quote(EPSG.format(4547))}")
    expected_gk = sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey WHERE ST_Intersects(ST_Transform(geom, "
                                "4547), ST_MakeEnvelope(%s, %s, %s, %s, 4547))", (e0, n0, e1, n1))[0]
    assert gk["numberMatched"] == expected_gk


def test_paging_walks_every_feature_once(client, pool):
    total = sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey")[0]
    seen, url, pages = [], "/collections/land_use_survey/items?limit=97", 0
    while url:
        doc = get_json(client, url)
        assert doc["numberMatched"] == total
        assert doc["numberReturned"] == len(doc["features"])
        seen += [f["id"] for f in doc["features"]]
        nxt = [link["href"] for link in doc["links"] if link["rel"] == "next"]
        url = nxt[0].split("127.0.0.1:8080", 1)[1] if nxt else None
        pages += 1
        if pages > 1:
            assert any(link["rel"] == "prev" for link in doc["links"])
    assert len(seen) == total == len(set(seen))
    assert pages == -(-total // 97)


def test_properties_sortby_csv_and_item(client, pool):
    doc = get_json(client, "/collections/land_use_survey/items?limit=20&properties=DLBM,DLMC&sortby=-DLBM")
    assert all(set(f["properties"]) == {"DLBM", "DLMC"} for f in doc["features"])
    codes = [f["properties"]["DLBM"] for f in doc["features"]]
    top = sql_one(pool, "SELECT array_agg(dlbm) FROM (SELECT dlbm FROM blueprint.land_use_survey "
                        "ORDER BY dlbm COLLATE \"C\" DESC, fid LIMIT 20) s")[0]
    assert codes == top
    csv = client.get("/collections/land_use_survey/items?f=csv&limit=3&properties=BSM")
    assert csv.status_code == 200 and csv.mimetype == "text/csv"
    lines = csv.get_data(as_text=True).strip().splitlines()
    assert lines[0] == "id,BSM,wkt" and len(lines) == 4 and "MULTIPOLYGON" in lines[1]
    fid = doc["features"][0]["id"]
    one = get_json(client, f"/collections/land_use_survey/items/{fid}")
    assert one["id"] == fid and one["type"] == "Feature"
    assert client.get(f"/collections/land_use_survey/items/{fid}?f=html").status_code == 200


def test_datetime_on_a_layer_with_a_time_field(client, pool):
    dates = sql_one(pool, "SELECT min(pfsj), max(pfsj), count(*) FROM blueprint.land_use_red_line")
    assert dates[2] > 0 and dates[0] is not None
    start = dates[0].isoformat()
    expected = sql_one(pool, "SELECT count(*) FROM blueprint.land_use_red_line WHERE pfsj = %s", (dates[0],))[0]
    assert get_json(client, f"/collections/land_use_red_line/items?datetime={start}")["numberMatched"] == expected
    open_end = get_json(client, f"/collections/land_use_red_line/items?datetime={start}/..")
    assert open_end["numberMatched"] == dates[2]


def test_cql2_filters_on_demo_data(client, pool):
    expected = sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey WHERE dlbm LIKE '01%%'")[0]
    text = get_json(client, "/collections/land_use_survey/items?limit=1&filter=" + quote("DLBM LIKE '01%'"))
    assert text["numberMatched"] == expected
    as_json = json.dumps({"op": "like", "args": [{"property": "DLBM"}, "01%"]})
    doc = get_json(client, "/collections/land_use_survey/items?limit=1&filter-lang=cql2-json&filter=" + quote(as_json))
    assert doc["numberMatched"] == expected
    box = sql_one(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                        "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")
    poly = (f"POLYGON(({box[0]} {box[1]},{box[2]} {box[1]},{box[2]} {box[3]},{box[0]} {box[3]},{box[0]} {box[1]}))")
    spatial = get_json(client, "/collections/land_use_survey/items?limit=1&filter=" +
                       quote(f"S_INTERSECTS(geometry,{poly})"))
    assert spatial["numberMatched"] == _bbox_count(pool, box)
    flipped = (f"POLYGON(({box[1]} {box[0]},{box[1]} {box[2]},{box[3]} {box[2]},{box[3]} {box[0]},{box[1]} {box[0]}))")
    in_4490 = get_json(client, "/collections/land_use_survey/items?limit=1&filter-crs=" + quote(EPSG.format(4490)) +
                       "&filter=" + quote(f"S_INTERSECTS(geometry,{flipped})"))
    assert in_4490["numberMatched"] == spatial["numberMatched"]


MALFORMED = [
    ("limit=-1", 400), ("limit=0", 400), (f"limit={10**9}", 400), ("limit=abc", 400), ("limit=1.5", 400),
    ("offset=-5", 400), ("offset=99999999", 400), ("bbox=1,2,3", 400), ("bbox=1,2,3,4,5", 400),
    ("bbox=a,b,c,d", 400), ("bbox=113,29,114,28", 400), ("bbox=nan,1,2,3", 400),
    ("bbox=1,2,3,4&bbox-crs=EPSG:9999", 400), ("crs=EPSG:9999", 400), ("crs=http://evil.example/crs", 400),
    ("datetime=yesterday", 400), ("datetime=2024-13-45", 400), ("datetime=2024-05-01/2023-01-01", 400),
    ("properties=NOPE", 400), ("properties=BSM,\"; DROP TABLE x; --", 400), ("sortby=NOPE", 400),
    ("sortby=BSM;DELETE FROM blueprint.land_use_survey", 400), ("sortby=(SELECT 1)", 400),
    ("filter=DLBM = ", 400), ("filter=NOPE = 1", 400), ("filter=DLBM = '0101'; DROP TABLE x", 400),
    ("filter=S_INTERSECTS(geometry, POLYGON((1 2, 3)))", 400), ("filter=DLBM > DATE('not-a-date')", 400),
    ("filter-lang=sql&filter=1=1", 400), ("filter-lang=cql2-json&filter={not json", 400),
    ("filter=DLBM='0101'&filter-crs=EPSG:1", 400), ("f=xml", 400), ("unknown=1", 400),
    ("skipGeometry=maybe", 400),
]


@pytest.mark.parametrize("query,status", MALFORMED, ids=[q for q, _ in MALFORMED])
def test_malformed_inputs_get_a_clear_4xx(client, pool, query, status):
    before = sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey")[0]
    response = client.get("/collections/land_use_survey/items?" + query.replace(" ", "%20").replace(";", "%3B"))
    assert response.status_code == status, response.get_data(as_text=True)[:300]
    body = response.get_json(force=True)
    assert body["status"] == status and body["detail"] and "Traceback" not in body["detail"]
    assert sql_one(pool, "SELECT count(*) FROM blueprint.land_use_survey")[0] == before


@pytest.mark.parametrize("url", ["/collections/nope/items", "/collections/land_use_survey/items/abc",
                                 "/collections/land_use_survey/items/999999999", "/collections/nope",
                                 "/collections/nope/queryables", "/collections/land_use_survey/items/1;DROP"])
def test_unknown_things_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response.get_json(force=True)["status"] == 404


def test_conformance_openapi_and_queryables(client):
    conf = get_json(client, "/conformance")["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs" in conf
    assert "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter" in conf
    assert len(conf) == len(set(conf))
    spec = client.get("/openapi")
    assert spec.status_code == 200 and spec.mimetype == "application/vnd.oai.openapi+json"
    text = spec.get_data(as_text=True)
    refs = [part.split('"', 1)[0] for part in text.split('"$ref": "')[1:]]
    assert refs and all(ref.startswith("#/") for ref in refs)  # self-contained: no remote $ref
    q = client.get("/collections/basic_farmland/queryables")
    assert q.mimetype == "application/schema+json"
    props = q.get_json()["properties"]
    assert props["DLBM"]["title"] == "地类编码" and props["geometry"]["x-ogc-role"] == "primary-geometry"

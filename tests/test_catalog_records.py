"""OGC API – Records: the ``metadata`` collection over catalog.records, with q, bbox, datetime and filter, each
checked against the records table itself; bad parameters are 400 JSON exceptions."""

from __future__ import annotations

import json

import pytest

from lantu.server.app import create_app

PREFIX = "urn:lantu:430121"


@pytest.fixture(scope="module")
def client(settings, registry, small_demo):
    app = create_app(settings, registry)
    c = app.test_client()
    assert c.get("/csw?service=CSW&request=GetCapabilities").status_code == 200  # records generated
    return c


@pytest.fixture(scope="module")
def hidden(registry) -> set[str]:
    """Records an anonymous caller may not see: layers it may not discover (config/policy.yaml)."""
    from lantu.config.policy import ANONYMOUS, load_policy

    policy = load_policy(registry)
    return {f"{PREFIX}:layer:{layer.id}" for layer in registry if not policy.allows(ANONYMOUS, layer.id, "discover")}


def sql(pool, statement: str, params=()) -> list[tuple]:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def page(client, **params) -> dict:
    answer = client.get("/collections/metadata/items", query_string={"limit": "1000", **params})
    assert answer.status_code == 200, answer.data[:500]
    assert answer.mimetype == "application/geo+json"
    return json.loads(answer.data)


def ids(doc: dict) -> set[str]:
    return {f["id"] for f in doc["features"]}


def test_collection_and_every_record(client, pool, registry, hidden):
    doc = json.loads(client.get("/collections/metadata").data)
    assert doc["itemType"] == "record"
    everything = page(client)
    all_ids = {row[0] for row in sql(pool, "SELECT identifier FROM catalog.records")}
    assert hidden and hidden <= all_ids
    assert everything["numberMatched"] == len(all_ids - hidden)
    assert ids(everything) == all_ids - hidden
    assert client.get(f"/collections/metadata/items/{sorted(hidden)[0]}").status_code == 404
    farmland = next(f for f in everything["features"] if f["id"] == f"{PREFIX}:layer:basic_farmland")
    assert farmland["properties"]["title"] == "永久基本农田"
    assert farmland["geometry"]["type"] == "Polygon"
    assert any(link["href"].endswith("/wms") for link in farmland["links"])
    one = json.loads(client.get(f"/collections/metadata/items/{PREFIX}:layer:basic_farmland").data)
    assert one["id"] == f"{PREFIX}:layer:basic_farmland"
    assert client.get("/collections/metadata/items/urn:nothing").status_code == 404


def test_paging(client, pool, hidden):
    total = sql(pool, "SELECT count(*) FROM catalog.records")[0][0] - len(hidden)
    seen: list[str] = []
    offset = 0
    while True:
        doc = page(client, limit="25", offset=str(offset))
        seen += [f["id"] for f in doc["features"]]
        if not any(link["rel"] == "next" for link in doc["links"]):
            break
        offset += 25
    assert len(seen) == len(set(seen)) == total
    assert seen == sorted(seen)


def test_q_finds_chinese_terms(client, pool, hidden):
    found = ids(page(client, q="永久基本农田"))
    want = {row[0] for row in sql(pool, "SELECT identifier FROM catalog.records WHERE position(%s in anytext) > 0",
                                  ("永久基本农田",))} - hidden
    assert f"{PREFIX}:layer:basic_farmland" in found and found == want
    either = ids(page(client, q="永久基本农田,生态保护红线"))
    assert found < either and f"{PREFIX}:layer:eco_red_line" in either
    assert ids(page(client, q="%")) == set()  # a literal percent sign, not a wildcard


def test_bbox_matches_the_stored_extents(client, pool, hidden):
    lon, lat = sql(pool, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM "
                         "blueprint.basic_farmland ORDER BY fid LIMIT 1) s")[0]
    box = (lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
    found = ids(page(client, bbox=",".join(map(str, box))))
    want = {row[0] for row in sql(pool, "SELECT identifier FROM catalog.records WHERE ST_Intersects(wkb_geometry, "
                                        "ST_MakeEnvelope(%s, %s, %s, %s, 4326))", box)} - hidden
    assert f"{PREFIX}:layer:basic_farmland" in found and found == want
    assert ids(page(client, bbox="116,39.5,116.8,40.2")) & {f"{PREFIX}:layer:basic_farmland"} == set()


def test_datetime_on_the_update_time(client, pool, hidden):
    stamps = sorted({row[0] for row in sql(pool, "SELECT date_modified FROM catalog.records WHERE identifier "
                                                 "LIKE %s", (PREFIX + ":%",))})
    day = stamps[-1][:10]
    found = ids(page(client, datetime=day))
    want = {row[0] for row in sql(pool, "SELECT identifier FROM catalog.records WHERE date_modified LIKE %s",
                                  (day + "%",))} - hidden
    assert found == want and found
    assert ids(page(client, datetime=f"../{stamps[0]}")) == {
        row[0] for row in sql(pool, "SELECT identifier FROM catalog.records WHERE date_modified <= %s",
                              (stamps[0],))} - hidden
    assert ids(page(client, datetime="2999-01-01/..")) == set()


def test_cql2_filter(client):
    found = ids(page(client, filter="title = '永久基本农田'"))
    assert found == {f"{PREFIX}:layer:basic_farmland"}
    services = ids(page(client, filter="type = 'service' AND title LIKE '%WMS%'"))
    assert services == {f"{PREFIX}:service:wms"}
    as_json = json.dumps({"op": "=", "args": [{"property": "title"}, "永久基本农田"]})
    assert ids(page(client, filter=as_json, **{"filter-lang": "cql2-json"})) == found
    near = ids(page(client, filter="S_INTERSECTS(geometry, POINT(113.2 28.3))"))
    assert f"{PREFIX}:layer:admin_divisions" in near


@pytest.mark.parametrize("params", [
    {"limit": "-1"}, {"limit": "abc"}, {"limit": "5000"}, {"offset": "x"}, {"bbox": "1,2,3"},
    {"bbox": "a,b,c,d"}, {"bbox": "10,10,5,5"}, {"datetime": "yesterday"}, {"filter": "title ="},
    {"filter": "nosuch = 1"}, {"filter": "title = 'x'; DROP TABLE catalog.records"},
    {"filter-lang": "sql", "filter": "1=1"}, {"q": ","}, {"foo": "bar"},
])
def test_bad_parameters_are_400(client, params):
    answer = client.get("/collections/metadata/items", query_string=params)
    assert answer.status_code == 400, (params, answer.data[:300])
    assert json.loads(answer.data)["status"] == 400

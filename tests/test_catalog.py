"""The resource catalog at /csw (issue 7): records generated for every registry layer and every service,
checked against the registry and PostGIS; BBOX and Chinese AnyText search; refresh after a load; and the
exception report of every malformed request (never a 500)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from lxml import etree

from lantu.processes.catalogue import PROCESS_CLASSES
from lantu.server.app import create_app

NS = {"csw": "http://www.opengis.net/cat/csw/2.0.2", "csw30": "http://www.opengis.net/cat/csw/3.0",
      "dc": "http://purl.org/dc/elements/1.1/", "dct": "http://purl.org/dc/terms/",
      "ows": "http://www.opengis.net/ows", "ows20": "http://www.opengis.net/ows/2.0",
      "gmd": "http://www.isotc211.org/2005/gmd", "gco": "http://www.isotc211.org/2005/gco",
      "ogc": "http://www.opengis.net/ogc", "gml": "http://www.opengis.net/gml"}
PREFIX = "urn:lantu:430121"
PROCESSES = tuple(PROCESS_CLASSES)  # conflict-check, control-line-check, site-selection, ledger, and any later
SERVICES = ("wms", "wfs", "wmts", "features", "tiles", "records") + tuple(f"process-{p}" for p in PROCESSES)
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


@pytest.fixture(scope="module")
def client(settings, registry, small_demo):
    return create_app(settings, registry).test_client()


@pytest.fixture(scope="module")
def admin(pool) -> dict:
    """Headers of an account with the admin role (sees every record, may run transactions)."""
    from lantu.providers.accounts import create_account, create_key

    account = create_account(pool, f"catalog-admin-{time.time_ns()}", "测试管理员", ["admin"])
    return {"X-API-Key": create_key(pool, account)}


def discoverable(registry) -> set[str]:
    """Layers an anonymous caller may discover under the project's policy (config/policy.yaml)."""
    from lantu.config.policy import ANONYMOUS, load_policy

    policy = load_policy(registry)
    return {layer.id for layer in registry if policy.allows(ANONYMOUS, layer.id, "discover")}


def xml(body: bytes) -> etree._Element:
    return etree.fromstring(body, PARSER)


def get(client, **params) -> tuple[int, etree._Element]:
    answer = client.get("/csw", query_string={"service": "CSW", **params})
    return answer.status_code, xml(answer.data)


def records_2(client, ogc_filter: str | None = None, headers: dict | None = None
              ) -> tuple[etree._Element, list[str]]:
    """GetRecords 2.0.2 (POST, brief) with an optional ogc:Filter body; returns SearchResults and the ids."""
    constraint = (f'<csw:Constraint version="1.1.0"><ogc:Filter xmlns:ogc="{NS["ogc"]}" xmlns:gml="{NS["gml"]}">'
                  f"{ogc_filter}</ogc:Filter></csw:Constraint>") if ogc_filter else ""
    body = (f'<csw:GetRecords xmlns:csw="{NS["csw"]}" xmlns:ows="{NS["ows"]}" service="CSW" version="2.0.2" '
            f'resultType="results" maxRecords="1000"><csw:Query typeNames="csw:Record"><csw:ElementSetName>brief'
            f"</csw:ElementSetName>{constraint}</csw:Query></csw:GetRecords>")
    answer = client.post("/csw", data=body.encode("utf-8"), content_type="application/xml", headers=headers or {})
    assert answer.status_code == 200, answer.data[:500]
    results = xml(answer.data).find("csw:SearchResults", NS)
    assert results is not None, answer.data[:800]
    return results, [e.text for e in results.iterfind("csw:BriefRecord/dc:identifier", NS)]


def bbox(xmin: float, ymin: float, xmax: float, ymax: float) -> str:
    """ogc:BBOX on the record's bounding box, in EPSG:4326's own axis order (lat/lon), as pycsw reads it."""
    return (f'<ogc:BBOX><ogc:PropertyName>ows:BoundingBox</ogc:PropertyName><gml:Envelope '
            f'srsName="urn:ogc:def:crs:EPSG::4326"><gml:lowerCorner>{ymin} {xmin}</gml:lowerCorner>'
            f"<gml:upperCorner>{ymax} {xmax}</gml:upperCorner></gml:Envelope></ogc:BBOX>")


def like(prop: str, pattern: str) -> str:
    return (f'<ogc:PropertyIsLike wildCard="%" singleChar="_" escapeChar="\\"><ogc:PropertyName>{prop}'
            f"</ogc:PropertyName><ogc:Literal>{pattern}</ogc:Literal></ogc:PropertyIsLike>")


def iso(client, identifier: str, headers: dict | None = None) -> etree._Element:
    answer = client.get("/csw", headers=headers or {}, query_string={
        "service": "CSW", "version": "2.0.2", "request": "GetRecordById", "id": identifier,
        "outputschema": "http://www.isotc211.org/2005/gmd", "elementsetname": "full"})
    assert answer.status_code == 200
    root = xml(answer.data)
    record = root.find("gmd:MD_Metadata", NS)
    assert record is not None, etree.tostring(root)[:500]
    return record


def sql(pool, statement: str, params=()) -> list[tuple]:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def expected_ids(registry, everything: bool = False) -> set[str]:
    """Generated records a caller should see: all (admin) or those of discoverable layers (anonymous)."""
    layers = {layer.id for layer in registry} if everything else discoverable(registry)
    return {f"{PREFIX}:layer:{lid}" for lid in layers} | {f"{PREFIX}:service:{s}" for s in SERVICES}


def test_every_layer_and_service_has_a_record(client, registry, pool, admin):
    results, ids = records_2(client, headers=admin)
    assert len(registry) == 84
    assert set(ids) == expected_ids(registry, everything=True)
    assert int(results.get("numberOfRecordsMatched")) == len(ids) == 84 + len(SERVICES)
    stored = {row[0] for row in sql(pool, "SELECT identifier FROM catalog.records WHERE mdsource = 'local'")}
    assert expected_ids(registry, everything=True) <= stored


def test_records_follow_the_discover_right(client, registry, admin):
    """An anonymous caller sees the records of the layers it may discover, and no others (config/policy.yaml:
    the open-data group, key polluters, hazard sources … are hidden); GetRecordById too."""
    hidden = {layer.id for layer in registry} - discoverable(registry)
    assert {"mobile_signaling", "hazard_sources"} <= hidden
    _, ids = records_2(client)
    assert set(ids) == expected_ids(registry)
    status, root = get(client, version="2.0.2", request="GetRecordById", id=f"{PREFIX}:layer:hazard_sources")
    assert status == 200 and root.find("csw:Record", NS) is None
    assert iso(client, f"{PREFIX}:layer:hazard_sources", admin) is not None


def test_bbox_over_the_county_returns_every_record(client, registry, pool, admin):
    xmin, ymin, xmax, ymax = sql(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                       "(SELECT ST_Extent(geom) e FROM blueprint.admin_divisions) s")[0]
    # CSW 2.0.2 KVP BBOX is the CQL spatial predicate; the envelope is lon/lat (CRS84 order)
    _, ids = records_2(client, bbox(xmin, ymin, xmax, ymax))
    assert set(ids) == expected_ids(registry)
    _, ids = records_2(client, bbox(xmin, ymin, xmax, ymax), headers=admin)  # every layer's record
    assert set(ids) == expected_ids(registry, everything=True)
    # the same box in CRS84 (lon/lat order)
    crs84 = (f'<ogc:BBOX><ogc:PropertyName>ows:BoundingBox</ogc:PropertyName><gml:Envelope srsName='
             f'"urn:ogc:def:crs:OGC:1.3:CRS84"><gml:lowerCorner>{xmin} {ymin}</gml:lowerCorner><gml:upperCorner>'
             f"{xmax} {ymax}</gml:upperCorner></gml:Envelope></ogc:BBOX>")
    _, ids = records_2(client, crs84)
    assert set(ids) == expected_ids(registry)
    # and a box elsewhere in China (Beijing) returns none of them
    _, ids = records_2(client, bbox(116.0, 39.5, 116.8, 40.2))
    assert ids == []


def test_bbox_csw3_kvp_matches_the_layers_whose_data_touch_the_box(client, pool, registry):
    """A small box around one farmland polygon: exactly the layers whose extent (computed here in PostGIS)
    intersects it, plus the records that carry the county's extent."""
    lon, lat = sql(pool, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM "
                         "blueprint.basic_farmland ORDER BY fid LIMIT 1) s")[0]
    box = (lon - 0.001, lat - 0.001, lon + 0.001, lat + 0.001)
    # CSW 3.0 KVP: bbox is minx,miny,maxx,maxy in CRS84 (OGC 12-176r7 Table 6)
    status, root = get(client, version="3.0.0", request="GetRecords", typenames="csw:Record",
                       elementsetname="brief", maxrecords="1000", bbox=",".join(map(str, box)))
    assert status == 200, etree.tostring(root)[:600]
    ids = {e.text for e in root.iterfind(".//csw30:BriefRecord/dc:identifier", NS)}
    assert root.find("csw30:SearchResults", NS).get("numberOfRecordsMatched") == str(len(ids))
    expected = set()
    for layer in registry:
        if layer.id not in discoverable(registry):
            continue
        if layer.is_vector:
            rows = sql(pool, f"SELECT ST_Extent(geom) && ST_MakeEnvelope(%s, %s, %s, %s, 4490) "
                             f"FROM blueprint.{layer.table}", box)
            if rows[0][0]:
                expected.add(f"{PREFIX}:layer:{layer.id}")
        else:  # raster and catalog-only layers carry the county's extent
            expected.add(f"{PREFIX}:layer:{layer.id}")
    expected |= {f"{PREFIX}:service:{s}" for s in SERVICES}
    assert f"{PREFIX}:layer:basic_farmland" in ids
    assert ids == expected


def test_anytext_in_chinese_finds_the_right_record(client, registry):
    _, ids = records_2(client, like("csw:AnyText", "%永久基本农田%"))
    assert f"{PREFIX}:layer:basic_farmland" in ids
    # every hit mentions the term, and every record that does not mention it is missing
    for layer in registry:
        identifier = f"{PREFIX}:layer:{layer.id}"
        mentions = "永久基本农田" in " ".join((layer.name_zh, layer.metadata.abstract_zh, *layer.metadata.keywords))
        assert (identifier in ids) == (mentions and layer.id in discoverable(registry)), layer.id
    _, ids = records_2(client, like("csw:AnyText", "%生态保护红线%"))
    assert f"{PREFIX}:layer:eco_red_line" in ids and f"{PREFIX}:layer:basic_farmland" not in ids
    _, ids = records_2(client, "<ogc:PropertyIsEqualTo><ogc:PropertyName>dc:title</ogc:PropertyName>"
                               "<ogc:Literal>永久基本农田</ogc:Literal></ogc:PropertyIsEqualTo>")
    assert ids == [f"{PREFIX}:layer:basic_farmland"]
    # the CQL text form of the same search (KVP)
    status, root = get(client, version="2.0.2", request="GetRecords", typenames="csw:Record", resulttype="results",
                       elementsetname="brief", maxrecords="1000", constraintlanguage="CQL_TEXT",
                       constraint_language_version="1.1.0", constraint="csw:AnyText like '%永久基本农田%'")
    assert status == 200
    assert f"{PREFIX}:layer:basic_farmland" in {e.text for e in root.iterfind(".//dc:identifier", NS)}


def _text(record: etree._Element, path: str) -> list[str]:
    return [e.text for e in record.iterfind(path, NS)]


def test_layer_record_content(client, registry, pool):
    layer = registry.get("basic_farmland")
    record = iso(client, f"{PREFIX}:layer:basic_farmland")
    ident = record.find("gmd:identificationInfo/gmd:MD_DataIdentification", NS)
    title = ident.find("gmd:citation/gmd:CI_Citation/gmd:title", NS)
    assert title.findtext("gco:CharacterString", namespaces=NS) == "永久基本农田"
    assert title.findtext(".//gmd:LocalisedCharacterString", namespaces=NS) == layer.title_en
    locale = record.find("gmd:locale/gmd:PT_Locale", NS)
    assert ("#" + locale.get("id")) == title.find(".//gmd:LocalisedCharacterString", NS).get("locale")
    keywords = _text(ident, "gmd:descriptiveKeywords/gmd:MD_Keywords/gmd:keyword/gco:CharacterString")
    assert set(layer.metadata.keywords) <= set(keywords)
    # CGCS2000 reference system, extent from the data
    assert _text(record, ".//gmd:referenceSystemInfo//gmd:code/gco:CharacterString") == ["urn:ogc:def:crs:EPSG::4490"]
    box = ident.find(".//gmd:EX_GeographicBoundingBox", NS)
    got = [float(box.findtext(f"gmd:{n}/gco:Decimal", namespaces=NS))
           for n in ("westBoundLongitude", "southBoundLatitude", "eastBoundLongitude", "northBoundLatitude")]
    want = sql(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                     "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")[0]
    assert got == pytest.approx(want, abs=1e-6)
    # lineage: source department and the last load from the change log
    lineage = record.findtext(".//gmd:lineage//gmd:statement/gco:CharacterString", namespaces=NS)
    last = sql(pool, "SELECT to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), count(*) OVER () "
                     "FROM lantu.change_log WHERE layer = 'basic_farmland' ORDER BY id DESC LIMIT 1")[0]
    assert layer.metadata.department in lineage and last[0] in lineage
    count = sql(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    assert f"{count} features" in lineage
    # update cycle (年度 → annually) and access constraints from the layer's policy
    assert _text(ident, ".//gmd:MD_MaintenanceFrequencyCode") == ["annually"]
    # online resources: every endpoint that serves the layer
    urls = set(_text(record, ".//gmd:transferOptions//gmd:CI_OnlineResource/gmd:linkage/gmd:URL"))
    protocols = set(_text(record, ".//gmd:transferOptions//gmd:CI_OnlineResource/gmd:protocol/gco:CharacterString"))
    base = "http://127.0.0.1:8080"
    assert {f"{base}/wms", f"{base}/wfs", f"{base}/collections/basic_farmland",
            f"{base}/collections/basic_farmland/tiles"} <= urls
    assert {"OGC:WMS", "OGC:WFS", "OGC:WMTS", "OGC API - Features", "OGC API - Tiles"} <= protocols


def test_internal_layer_states_its_access_constraints(client, registry, admin):
    layer = registry.get("mobile_signaling")
    assert layer.access.level == "internal"
    record = iso(client, f"{PREFIX}:layer:mobile_signaling", admin)
    constraints = etree.tostring(record.find(".//gmd:resourceConstraints", NS), encoding="unicode")
    assert "otherRestrictions" in constraints and "internal" in constraints
    public = etree.tostring(iso(client, f"{PREFIX}:layer:basic_farmland").find(".//gmd:resourceConstraints", NS),
                            encoding="unicode")
    assert "otherRestrictions" not in public and "public" in public
    # a catalog-only layer links no map service
    urls = _text(record, ".//gmd:CI_OnlineResource/gmd:linkage/gmd:URL")
    assert not any(u.endswith(("/wms", "/wfs")) for u in urls)


def test_service_records_link_their_endpoints(client, pool):
    types = dict(sql(pool, "SELECT identifier, servicetype FROM catalog.records WHERE identifier LIKE %s",
                     (f"{PREFIX}:service:%",)))
    assert types[f"{PREFIX}:service:wms"] == "OGC:WMS" and types[f"{PREFIX}:service:records"] == "OGC:CSW"
    assert types[f"{PREFIX}:service:process-ledger"] == "OGC API - Processes"
    for name, path in (("wms", "/wms?"), ("wfs", "/wfs?"), ("wmts", "/wmts/1.0.0/WMTSCapabilities.xml"),
                       ("features", "/collections"), ("tiles", "/tiles"),
                       *((f"process-{p}", f"/processes/{p}") for p in PROCESSES)):
        record = iso(client, f"{PREFIX}:service:{name}")
        assert record.findtext("gmd:hierarchyLevel/gmd:MD_ScopeCode", namespaces=NS) == "service"
        urls = _text(record, ".//gmd:transferOptions//gmd:linkage/gmd:URL")
        assert any(u.startswith("http://127.0.0.1:8080" + path) for u in urls), (name, urls)
        target = path.split("?")[0]
        answer = client.get(target, query_string={"service": name.upper(), "request": "GetCapabilities"}
                            if name in ("wms", "wfs") else {})
        if name not in ("wms", "wfs", "wmts"):  # map engines are not running under the test client
            assert answer.status_code == 200, (name, answer.status_code)


def test_records_follow_a_load(client, registry, pool):
    """A load moves the layer's record: new extent, new datestamp; other records keep theirs."""
    from shapely.geometry import box as shp_box

    from lantu.providers.writer import delete_features, write_features

    layer = registry.get("scenic_areas")
    before = iso(client, f"{PREFIX}:layer:scenic_areas")
    other = etree.tostring(iso(client, f"{PREFIX}:layer:basic_farmland"))
    stamp = before.findtext("gmd:dateStamp/gco:DateTime", namespaces=NS)
    square = shp_box(114.30, 28.60, 114.31, 28.61)  # north-east of the county, outside every feature
    row = {"BSM": "CATALOG-TEST-1", "YSDM": layer.ysdm, "XZQDM": "430121", "XZQMC": "长沙县", "MJ": 1.0}
    for fdef in layer.fields:
        if fdef.required and fdef.code not in row:
            row[fdef.code] = "1" if fdef.type == "string" else 1
    time.sleep(1.1)  # a new datestamp needs a new second
    with pool.connection() as conn:
        write_features(conn, layer, [row], [square], mode="append", who="test-catalog", source="test_catalog")
    try:
        time.sleep(1.1)  # the catalog reads the change log at most once a second
        after = iso(client, f"{PREFIX}:layer:scenic_areas")
        box = after.find(".//gmd:EX_GeographicBoundingBox", NS)
        got = [float(box.findtext(f"gmd:{n}/gco:Decimal", namespaces=NS))
               for n in ("westBoundLongitude", "southBoundLatitude", "eastBoundLongitude", "northBoundLatitude")]
        want = sql(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                         "(SELECT ST_Extent(geom) e FROM blueprint.scenic_areas) s")[0]
        assert got == pytest.approx(want, abs=1e-6) and got[2] == pytest.approx(114.31)
        assert after.findtext("gmd:dateStamp/gco:DateTime", namespaces=NS) > stamp
        assert "test-catalog" in after.findtext(".//gmd:lineage//gmd:statement/gco:CharacterString", namespaces=NS)
        assert etree.tostring(iso(client, f"{PREFIX}:layer:basic_farmland")) == other
        _, ids = records_2(client, bbox(114.302, 28.602, 114.308, 28.608))
        assert f"{PREFIX}:layer:scenic_areas" in ids
    finally:
        with pool.connection() as conn:
            delete_features(conn, layer, ["CATALOG-TEST-1"], who="test-catalog", source="test_catalog")
        time.sleep(1.1)
    _, ids = records_2(client, bbox(114.302, 28.602, 114.308, 28.608))
    assert f"{PREFIX}:layer:scenic_areas" not in ids


def test_opensearch_and_csw3_kvp_q(client):
    answer = client.get("/csw", query_string={"mode": "opensearch", "service": "CSW", "version": "3.0.0",
                                              "request": "GetRecords", "q": "永久基本农田", "elementsetname": "brief",
                                              "typenames": "csw:Record"})
    assert answer.status_code == 200
    assert f"{PREFIX}:layer:basic_farmland".encode() in answer.data
    status, root = get(client, version="3.0.0", request="GetRecords", q="永久基本农田", typenames="csw:Record",
                       elementsetname="brief")
    assert status == 200
    assert f"{PREFIX}:layer:basic_farmland" in {e.text for e in root.iterfind(".//dc:identifier", NS)}


# ---- malformed requests: the exception report with the standard code, never a 500 --------------------------
GET_ERRORS = [
    ({"version": "2.0.2", "request": "Foo"}, "InvalidParameterValue", "request"),
    ({"version": "2.0.2", "request": "GetCapabilities", "service": "WMS"}, "InvalidParameterValue", "service"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "foo:Bar", "elementsetname": "brief"},
     "InvalidParameterValue", "typenames"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "huge"},
     "InvalidParameterValue", "elementsetname"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "maxrecords": "abc"}, "InvalidParameterValue", "maxrecords"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "startposition": "-1"}, "InvalidParameterValue", "startposition"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "constraintlanguage": "CQL_TEXT", "constraint": "title LIKE"}, "InvalidParameterValue", "constraint"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "constraintlanguage": "CQL_TEXT", "constraint": "title = 'x'; DROP TABLE catalog.records"},
     "InvalidParameterValue", "constraint"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "outputschema": "urn:bad"}, "InvalidParameterValue", "outputschema"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "sortby": "title;DROP:A"}, "InvalidParameterValue", "sortby"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "outputformat": "text/foo"}, "InvalidParameterValue", "outputformat"),
    ({"version": "2.0.2", "request": "GetRecordById"}, "MissingParameterValue", "id"),
    ({"version": "3.0.0", "request": "GetRecordById", "id": "urn:nothing"}, "NotFound", "id"),
    ({"version": "3.0.0", "request": "GetRecords", "typenames": "csw:Record", "bbox": "1,2,3"},
     "InvalidParameterValue", "bbox"),
    ({"request": "GetCapabilities"}, "MissingParameterValue", "service"),
    ({"version": "2.0.2", "request": "GetRecords", "typenames": "csw:Record", "elementsetname": "brief",
      "responsehandler": "ftp://example.org/x"}, "InvalidParameterValue", "ResponseHandler"),
]


@pytest.mark.parametrize("params,code,locator", GET_ERRORS, ids=[f"{c}-{loc}" for _, c, loc in GET_ERRORS])
def test_malformed_get_requests_get_an_exception_report(client, params, code, locator):
    query = dict(params) if "service" in params or params.get("request") == "GetCapabilities" and \
        "version" not in params else {"service": "CSW", **params}
    answer = client.get("/csw", query_string=query)
    assert answer.status_code < 500
    root = xml(answer.data)
    assert etree.QName(root).localname == "ExceptionReport", answer.data[:400]
    exception = root[0]
    assert exception.get("exceptionCode") == code
    assert (exception.get("locator") or "").lower() == locator.lower()


CSW2 = 'xmlns:csw="http://www.opengis.net/cat/csw/2.0.2" service="CSW" version="2.0.2"'
POST_ERRORS = [
    (b"<notxml", "NoApplicableCode", None),
    (b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><csw:GetRecords " + CSW2.encode()
     + b"><csw:Query typeNames='csw:Record'><csw:ElementSetName>&e;</csw:ElementSetName></csw:Query>"
       b"</csw:GetRecords>", "NoApplicableCode", None),
    (f'<csw:GetRecords {CSW2} maxRecords="many"><csw:Query typeNames="csw:Record"><csw:ElementSetName>brief'
     f'</csw:ElementSetName></csw:Query></csw:GetRecords>'.encode(), "InvalidParameterValue", "maxrecords"),
    (f'<csw:GetRecords {CSW2}><csw:Query typeNames="csw:Record"><csw:ElementSetName>brief</csw:ElementSetName>'
     f'<csw:Constraint version="1.1.0"><ogc:Filter xmlns:ogc="http://www.opengis.net/ogc"><ogc:PropertyIsEqualTo>'
     f'<ogc:PropertyName>nosuch</ogc:PropertyName><ogc:Literal>1</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter>'
     f'</csw:Constraint></csw:Query></csw:GetRecords>'.encode(), "InvalidParameterValue", None),
    (f'<csw:Harvest {CSW2}><csw:Source>http://127.0.0.1:1/csw</csw:Source><csw:ResourceType>'
     f'http://www.opengis.net/cat/csw/2.0.2</csw:ResourceType></csw:Harvest>'.encode(),
     "InvalidParameterValue", "Source"),
    (f'<csw:Harvest {CSW2}><csw:Source>http://10.0.0.8/wms</csw:Source><csw:ResourceType>'
     f'http://www.opengis.net/wms</csw:ResourceType></csw:Harvest>'.encode(), "InvalidParameterValue", "Source"),
    (f'<csw:Harvest {CSW2}><csw:Source>file:///etc/passwd</csw:Source><csw:ResourceType>'
     f'http://www.opengis.net/cat/csw/2.0.2</csw:ResourceType></csw:Harvest>'.encode(),
     "InvalidParameterValue", "Source"),
]


@pytest.mark.parametrize("body,code,locator", POST_ERRORS, ids=[f"{i}-{c}" for i, (_, c, _) in enumerate(POST_ERRORS)])
def test_malformed_post_requests_get_an_exception_report(client, body, code, locator):
    answer = client.post("/csw", data=body, content_type="application/xml")
    assert answer.status_code < 500, answer.data[:300]
    root = xml(answer.data)
    assert etree.QName(root).localname == "ExceptionReport", answer.data[:400]
    assert root[0].get("exceptionCode") == code
    if locator:
        assert root[0].get("locator") == locator
    assert b"root:" not in answer.data  # nothing of /etc/passwd


def _insert_body(identifier: str) -> bytes:
    return f"""<csw:Transaction {CSW2}><csw:Insert><csw:Record xmlns:dc="http://purl.org/dc/elements/1.1/">
      <dc:identifier>{identifier}</dc:identifier><dc:title>测试记录</dc:title><dc:type>dataset</dc:type></csw:Record>
      </csw:Insert></csw:Transaction>""".encode()


def test_transactions_only_from_manager_addresses(client, pool, admin):
    from lantu.providers import catalog_store

    # a forwarded-for header naming loopback does not make a remote caller a manager
    answer = client.post("/csw", data=_insert_body("urn:test:tx-1"), content_type="application/xml",
                         environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers={"X-Forwarded-For": "127.0.0.1"})
    root = xml(answer.data)
    assert etree.QName(root).localname == "ExceptionReport" and answer.status_code < 500
    assert catalog_store.record_xml(pool, "urn:test:tx-1") is None
    # an admin account may, from any address
    answer = client.post("/csw", data=_insert_body("urn:test:tx-2"), content_type="application/xml",
                         environ_base={"REMOTE_ADDR": "203.0.113.9"}, headers=admin)
    assert xml(answer.data).findtext(".//csw:totalInserted", namespaces=NS) == "1", answer.data[:500]
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM catalog.records WHERE identifier = 'urn:test:tx-2'")
        conn.commit()
    # loopback may insert and delete
    answer = client.post("/csw", data=_insert_body("urn:test:tx-1"), content_type="application/xml")
    assert xml(answer.data).findtext(".//csw:totalInserted", namespaces=NS) == "1", answer.data[:500]
    stored = xml(catalog_store.record_xml(pool, "urn:test:tx-1").encode())
    assert stored.findtext("dc:title", namespaces=NS) == "测试记录"
    delete = f"""<csw:Transaction {CSW2}><csw:Delete><csw:Constraint version="1.1.0"><ogc:Filter
      xmlns:ogc="http://www.opengis.net/ogc"><ogc:PropertyIsEqualTo><ogc:PropertyName>dc:identifier</ogc:PropertyName>
      <ogc:Literal>urn:test:tx-1</ogc:Literal></ogc:PropertyIsEqualTo></ogc:Filter></csw:Constraint></csw:Delete>
      </csw:Transaction>""".encode()
    answer = client.post("/csw", data=delete, content_type="application/xml")
    assert xml(answer.data).findtext(".//csw:totalDeleted", namespaces=NS) == "1", answer.data[:500]
    assert catalog_store.record_xml(pool, "urn:test:tx-1") is None


def test_capabilities_use_the_public_url_and_list_transactions(client):
    status, root = get(client, version="2.0.2", request="GetCapabilities")
    assert status == 200
    operations = {e.get("name") for e in root.iterfind(".//ows:OperationsMetadata/ows:Operation", NS)}
    assert {"GetCapabilities", "DescribeRecord", "GetDomain", "GetRecords", "GetRecordById", "Transaction",
            "Harvest"} <= operations
    hrefs = {e.get("{http://www.w3.org/1999/xlink}href") for e in root.iterfind(".//ows:Get", NS)}
    assert hrefs == {"http://127.0.0.1:8080/csw"}


def test_cli_rebuild_and_usage_errors(settings, registry, small_demo, tmp_path):
    import os
    import subprocess
    import sys

    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(f"pg_port: {settings.pg_port}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("LANTU_DATABASE_URL", "LANTU_PUBLIC_URL")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(settings_file))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lantu.server.cli", "catalog", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    rebuilt = run("rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr[-1500:]
    assert f"{len(registry) + len(SERVICES)} records generated" in rebuilt.stdout
    again = run("rebuild")  # nothing changed: nothing rewritten, datestamps stay (harvesters compare them)
    assert again.returncode == 0 and "0 written" in again.stdout, again.stdout
    assert run("sync").returncode == 2  # no peers configured
    refused = run("harvest", "http://192.168.1.10/csw")
    assert refused.returncode == 1 and "catalog_harvest_allow" in refused.stderr
    assert run("harvest", "http://example.org/csw", "--type", "gopher").returncode == 2


def test_harvested_documents_with_entities_leak_nothing(settings, pool, tmp_path):
    """A source serving capabilities and CSW answers with external entities that point at a local file
    (XXE in harvested documents): the file's text never reaches the catalog."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from lantu.catalog.harvest import HarvestError, harvest

    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    entity = f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY leak SYSTEM "file://{secret}">]>'
    dcp = ('<DCPType><HTTP><Get><OnlineResource xlink:href="http://127.0.0.1/wms?"/></Get></HTTP></DCPType>')
    contact = ("<ContactInformation><ContactPersonPrimary><ContactPerson>&leak;</ContactPerson><ContactOrganization>"
               "&leak;</ContactOrganization></ContactPersonPrimary></ContactInformation>")
    # pycsw asks for 1.1.1 first, then 1.3.0
    caps_111 = (entity.replace("<!DOCTYPE x", "<!DOCTYPE WMT_MS_Capabilities") + '<WMT_MS_Capabilities '
                'xmlns:xlink="http://www.w3.org/1999/xlink" version="1.1.1"><Service><Name>OGC:WMS</Name><Title>&leak;'
                f'</Title><OnlineResource xlink:href="http://127.0.0.1/wms"/>{contact}</Service><Capability><Request>'
                f"<GetCapabilities><Format>application/vnd.ogc.wms_xml</Format>{dcp}</GetCapabilities><GetMap><Format>"
                f"image/png</Format>{dcp}</GetMap></Request><Exception><Format>application/vnd.ogc.se_xml</Format>"
                '</Exception><Layer><Title>root &leak;</Title><SRS>EPSG:4326</SRS><LatLonBoundingBox minx="112" '
                'miny="27" maxx="114" maxy="29"/><Layer queryable="0"><Name>x</Name><Title>&leak;</Title></Layer>'
                "</Layer></Capability></WMT_MS_Capabilities>")
    caps = (entity + '<WMS_Capabilities xmlns="http://www.opengis.net/wms" xmlns:xlink="http://www.w3.org/1999/xlink" '
            'version="1.3.0"><Service><Name>WMS</Name><Title>&leak;</Title><OnlineResource '
            f'xlink:href="http://127.0.0.1/wms"/>{contact}</Service><Capability><Request><GetCapabilities><Format>text/xml'
            f"</Format>{dcp}</GetCapabilities><GetMap><Format>image/png</Format>{dcp}</GetMap></Request><Exception>"
            "<Format>XML</Format></Exception><Layer><Title>root &leak;</Title><CRS>EPSG:4326</CRS>"
            "<EX_GeographicBoundingBox><westBoundLongitude>112</westBoundLongitude><eastBoundLongitude>114"
            "</eastBoundLongitude><southBoundLatitude>27</southBoundLatitude><northBoundLatitude>29</northBoundLatitude>"
            '</EX_GeographicBoundingBox><Layer queryable="0"><Name>x</Name><Title>&leak;</Title><Abstract>&leak;'
            "</Abstract></Layer></Layer></Capability></WMS_Capabilities>")
    records = (entity + f'<csw:GetRecordsResponse xmlns:csw="{NS["csw"]}" xmlns:dc="{NS["dc"]}" version="2.0.2">'
               '<csw:SearchResults numberOfRecordsMatched="1" numberOfRecordsReturned="1" nextRecord="0">'
               "<csw:SummaryRecord><dc:identifier>urn:x:1</dc:identifier><dc:title>&leak;</dc:title>"
               "</csw:SummaryRecord></csw:SearchResults></csw:GetRecordsResponse>")
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            hits.append(self.path)
            if self.path.startswith("/wms"):
                body = (caps if "1.3.0" in self.path else caps_111).encode()
            else:
                body = records.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    allowed = settings.model_copy(update={"catalog_harvest_allow": ("127.0.0.0/8",)})
    try:
        for kind, path in (("wms", "/wms"), ("csw", "/csw")):
            hits.clear()
            try:
                harvest(allowed, pool, base + path, kind)
            except HarvestError:
                pass  # refusing the document is as good as reading it without its entities
            assert hits, f"{kind}: the source was never asked"
            rows = sql(pool, "SELECT xml || anytext FROM catalog.records WHERE mdsource = %s", (base + path,))
            # (with a parser that resolves entities, the WMS records do carry the secret: checked when written)
            assert all("TOP-SECRET" not in row[0] for row in rows)
    finally:
        httpd.shutdown()
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM catalog.records WHERE mdsource LIKE %s", (base + "%",))
            cur.execute("DELETE FROM catalog.harvest_sources WHERE url LIKE %s", (base + "%",))
            conn.commit()


def _schema(relative: str) -> etree.XMLSchema:
    """An XML schema shipped with pycsw 2.6.2 (OWS, CSW, filter, GML: all imports resolve inside the package)."""
    import pycsw

    return etree.XMLSchema(etree.parse(str(Path(pycsw.__file__).parent / "core" / "schemas" / "ogc" / relative)))


def test_lantus_own_answers_are_schema_valid(client):
    """Exception reports Lantu writes itself (OWS 1.0 for CSW 2.0.2, OWS 2.0 for 3.0) and a GetRecords answer
    validate against the OGC schemas."""
    for body, relative in ((f'<csw:GetRecords {CSW2} maxRecords="x"/>'.encode(), "ows/1.0.0/owsExceptionReport.xsd"),
                           (b"<notxml", "ows/2.0/owsExceptionReport.xsd"),
                           (b'<csw30:GetRecords xmlns:csw30="http://www.opengis.net/cat/csw/3.0" maxRecords="x"/>',
                            "ows/2.0/owsExceptionReport.xsd")):
        answer = client.post("/csw", data=body, content_type="application/xml")
        schema = _schema(relative)
        assert schema.validate(xml(answer.data)), schema.error_log
    answer = client.post("/csw", content_type="application/xml", data=(
        f'<csw:GetRecords {CSW2} resultType="results"><csw:Query typeNames="csw:Record"><csw:ElementSetName>'
        f"summary</csw:ElementSetName></csw:Query></csw:GetRecords>").encode())
    schema = _schema("csw/2.0.2/CSW-discovery.xsd")
    assert schema.validate(xml(answer.data)), schema.error_log

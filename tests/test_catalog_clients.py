"""Real clients read the catalog of a running ``lantu serve``: OWSLib's CatalogueServiceWeb for CSW 2.0.2 and
3.0, GDAL's CSW driver (ogrinfo), and a gzip-accepting HTTP client (pycsw's WSGI gzip path sends a wrong
Content-Length; Lantu does not use it)."""

from __future__ import annotations

import gzip
import http.client
import subprocess
from urllib.parse import urlsplit

import pytest
from owslib.catalogue.csw3 import CatalogueServiceWeb as Csw3
from owslib.csw import CatalogueServiceWeb as Csw2
from owslib.fes import PropertyIsLike
from owslib.fes2 import PropertyIsLike as PropertyIsLike2

PREFIX = "urn:lantu:430121"


def discoverable(registry) -> set[str]:
    """Record ids of the layers an anonymous caller may discover (config/policy.yaml)."""
    from lantu.config.policy import ANONYMOUS, load_policy

    policy = load_policy(registry)
    return {f"{PREFIX}:layer:{layer.id}" for layer in registry if policy.allows(ANONYMOUS, layer.id, "discover")}


@pytest.fixture(scope="module")
def server(small_demo, lantu_serve):
    with lantu_serve("catalog-clients") as (url, _log, _process):
        yield url


def test_owslib_csw202_reads_the_catalog(server, registry):
    csw = Csw2(f"{server}/csw", timeout=60)
    assert csw.identification.type == "CSW" and "2.0.2" in csw.identification.version
    operations = {op.name for op in csw.operations}
    assert {"GetRecords", "GetRecordById", "Transaction", "Harvest"} <= operations
    ids: list[str] = []
    start = 1
    while start:
        csw.getrecords2(esn="brief", startposition=start, maxrecords=40)
        ids += list(csw.records)
        start = csw.results["nextrecord"]
        if start == 0 or start > csw.results["matches"]:
            break
    assert discoverable(registry) <= set(ids)
    assert len(ids) == len(set(ids)) == csw.results["matches"]
    csw.getrecords2(constraints=[PropertyIsLike("csw:AnyText", "%永久基本农田%")], esn="full", maxrecords=100)
    assert f"{PREFIX}:layer:basic_farmland" in csw.records
    assert csw.records[f"{PREFIX}:layer:basic_farmland"].title == "永久基本农田"
    csw.getrecordbyid([f"{PREFIX}:layer:basic_farmland"], outputschema="http://www.isotc211.org/2005/gmd")
    iso = csw.records[f"{PREFIX}:layer:basic_farmland"]
    assert iso.identification.title == "永久基本农田"
    assert {"OGC:WMS", "OGC:WFS"} <= {res.protocol for res in iso.distribution.online}


def test_owslib_csw30_reads_the_catalog(server):
    csw = Csw3(f"{server}/csw", timeout=60)
    assert csw.version == "3.0.0" and csw._exml.getroot().tag == "{http://www.opengis.net/cat/csw/3.0}Capabilities"
    # a Chinese full-text condition in FES 2.0 (pycsw 2.6.2 cannot validate a GML envelope inside a CSW 3.0
    # POST, so a 3.0 BBOX goes as KVP: tests/test_catalog.py::test_bbox_csw3_kvp_matches…)
    csw.getrecords(constraints=[PropertyIsLike2("csw:AnyText", "%农田%")], esn="brief", maxrecords=200)
    assert f"{PREFIX}:layer:basic_farmland" in csw.records
    assert f"{PREFIX}:layer:eco_red_line" not in csw.records
    assert csw.results["matches"] == len(csw.records) > 0
    assert csw.records[f"{PREFIX}:layer:basic_farmland"].title == "永久基本农田"
    csw.getrecords(constraints=[PropertyIsLike2("dc:type", "service")], esn="summary", maxrecords=200)
    assert f"{PREFIX}:service:wms" in csw.records and f"{PREFIX}:layer:basic_farmland" not in csw.records


def _county(pool) -> tuple[float, float, float, float]:
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                    "(SELECT ST_Extent(geom) e FROM blueprint.admin_divisions) s")
        return cur.fetchone()


def test_gdal_csw_driver_reads_the_catalog(server, registry):
    out = subprocess.run(["ogrinfo", "-ro", "-al", "-q", f"CSW:{server}/csw",
                          "-oo", "ELEMENTSETNAME=full", "-oo", "MAX_RECORDS=500"],
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    identifiers = {line.split("=", 1)[1].strip() for line in out.stdout.splitlines()
                   if line.strip().startswith("identifier (String) =")}
    assert discoverable(registry) <= identifiers
    assert "永久基本农田" in out.stdout


def test_gzip_answers_have_a_true_content_length(server):
    parts = urlsplit(server)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    connection.request("GET", "/csw?service=CSW&version=2.0.2&request=GetCapabilities",
                       headers={"Accept-Encoding": "gzip"})
    answer = connection.getresponse()
    body = answer.read()
    assert answer.status == 200
    length = answer.getheader("Content-Length")
    assert length is None or int(length) == len(body)
    if answer.getheader("Content-Encoding") == "gzip":
        body = gzip.decompress(body)
    assert b"Capabilities" in body

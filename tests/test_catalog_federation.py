"""Two Lantu instances on loopback, "county" (the session database with the demo) and "city" (a database of
its own in the same cluster): distributed search from the city returns county records and marks a missing
peer; the city harvests the county (``lantu catalog sync``); a load in the county reaches the city at the
next sync; stopping the county mid-sync leaves the city consistent and the next sync completes. Also harvest
of capabilities and OGC API sources, incremental re-runs, and the SSRF refusal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from lantu_process import serve_process, stop
from lxml import etree

from lantu.config.settings import load_settings
from lantu.providers.cluster import Cluster
from lantu.providers.database import prepare

COUNTY, CITY = "urn:lantu:430121", "urn:lantu:430100"
NS = {"csw": "http://www.opengis.net/cat/csw/2.0.2", "csw30": "http://www.opengis.net/cat/csw/3.0",
      "dc": "http://purl.org/dc/elements/1.1/", "gmd": "http://www.isotc211.org/2005/gmd",
      "gco": "http://www.isotc211.org/2005/gco"}
PARSER = etree.XMLParser(resolve_entities=False, no_network=True)
PREFIX = COUNTY


def discoverable(registry) -> set[str]:
    """Record ids of the layers an anonymous caller may discover (config/policy.yaml)."""
    from lantu.config.policy import ANONYMOUS, load_policy

    policy = load_policy(registry)
    return {f"{PREFIX}:layer:{layer.id}" for layer in registry if policy.allows(ANONYMOUS, layer.id, "discover")}


def serve(home: Path, settings_file: Path, port: int, log: Path):
    """``lantu serve`` on a fixed port (a restarted peer must come back at the same URL)."""
    return serve_process(home, settings_file, port, log)


@pytest.fixture(scope="module")
def ports(port_factory):
    return {"county": port_factory(), "city": port_factory()}


@pytest.fixture(scope="module")
def city_url_db(settings, pool):
    """A second database in the session cluster for the city (TCP URL with the cluster's password)."""
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS lantu_city")
        cur.execute("CREATE DATABASE lantu_city")
    return Cluster.from_settings(settings).tcp_url().rsplit("/", 1)[0] + "/lantu_city"


@pytest.fixture(scope="module")
def homes(tmp_path_factory, settings, ports, city_url_db, registry):
    """Settings files of both instances; the city's database prepared (migrations, layer tables)."""
    work = tmp_path_factory.mktemp("federation")
    county_home, city_home = settings.home, work / "city-home"
    city_home.mkdir()
    county = work / "county.yaml"
    # each names the other as a peer: a distributed search must not go round in circles
    county.write_text(f"pg_port: {settings.pg_port}\npublic_url: http://127.0.0.1:{ports['county']}\n"
                      f"job_workers: 0\nmapserver_workers: 1\ncatalog_harvest_allow: [127.0.0.0/8]\n"
                      f"catalog_peers:\n  - {{name: city, url: 'http://127.0.0.1:{ports['city']}/csw'}}\n")
    city = work / "city.yaml"
    city.write_text(f"database_url: {city_url_db}\npublic_url: http://127.0.0.1:{ports['city']}\njob_workers: 0\n"
                    f"mapserver_workers: 1\ncatalog_id_prefix: {CITY}\ncatalog_harvest_allow: [127.0.0.0/8]\n"
                    f"catalog_peer_timeout_s: 5\ncatalog_peers:\n"
                    f"  - {{name: county, url: 'http://127.0.0.1:{ports['county']}/csw'}}\n")
    city_settings = load_settings(environ={"LANTU_HOME": str(city_home), "LANTU_SETTINGS": str(city)})
    city_pool = prepare(city_settings, registry, start=False)
    yield {"county": (county_home, county), "city": (city_home, city), "work": work, "city_pool": city_pool,
           "city_settings": city_settings}
    city_pool.close()


def cli(home: Path, settings_file: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LANTU_DATABASE_URL", "LANTU_PUBLIC_URL")}
    env.update(LANTU_HOME=str(home), LANTU_SETTINGS=str(settings_file))
    return subprocess.run([sys.executable, "-m", "lantu.server.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def city_rows(homes, statement: str, params=()) -> list[tuple]:
    with homes["city_pool"].connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


def distributed(url: str, hop: int, version: str = "2.0.2") -> etree._Element:
    if version == "2.0.2":
        body = (f'<csw:GetRecords xmlns:csw="{NS["csw"]}" xmlns:ogc="http://www.opengis.net/ogc" service="CSW" '
                f'version="2.0.2" resultType="results" maxRecords="200"><csw:DistributedSearch hopCount="{hop}"/>'
                f'<csw:Query typeNames="csw:Record"><csw:ElementSetName>brief</csw:ElementSetName>'
                f'<csw:Constraint version="1.1.0"><ogc:Filter><ogc:PropertyIsLike wildCard="%" singleChar="_" '
                f'escapeChar="\\"><ogc:PropertyName>csw:AnyText</ogc:PropertyName><ogc:Literal>%永久基本农田%'
                f"</ogc:Literal></ogc:PropertyIsLike></ogc:Filter></csw:Constraint></csw:Query></csw:GetRecords>")
    else:
        body = (f'<csw30:GetRecords xmlns:csw30="{NS["csw30"]}" xmlns:fes="http://www.opengis.net/fes/2.0" '
                f'service="CSW" version="3.0.0" maxRecords="200"><csw30:DistributedSearch hopCount="{hop}"/>'
                f'<csw30:Query typeNames="csw30:Record"><csw30:ElementSetName>brief</csw30:ElementSetName>'
                f'<csw30:Constraint version="2.0.0"><fes:Filter><fes:PropertyIsLike wildCard="%" singleChar="_" '
                f'escapeChar="\\"><fes:ValueReference>csw:AnyText</fes:ValueReference><fes:Literal>%永久基本农田%'
                f"</fes:Literal></fes:PropertyIsLike></fes:Filter></csw30:Constraint></csw30:Query>"
                f"</csw30:GetRecords>")
    answer = requests.post(f"{url}/csw", data=body.encode(), headers={"Content-Type": "application/xml"},
                           timeout=60)
    assert answer.status_code == 200, answer.text[:500]
    return etree.fromstring(answer.content, PARSER)


def ids_of(root: etree._Element) -> list[str]:
    return [e.text for e in root.iter("{http://purl.org/dc/elements/1.1/}identifier")]


def test_distributed_search_from_the_city(homes, ports, small_demo):
    county_home, county_file = homes["county"]
    city_home, city_file = homes["city"]
    work = homes["work"]
    with serve(city_home, city_file, ports["city"], work / "city.log") as (city_url, _):
        # the county is down: the city answers with its own records and says the answer is partial
        root = distributed(city_url, 2, "3.0.0")
        results = root.find("csw30:SearchResults", NS)
        assert results.get("status") == "subset"
        ids = ids_of(root)
        assert f"{CITY}:layer:basic_farmland" in ids and not any(i.startswith(COUNTY) for i in ids)
        assert b"peer county did not answer" in etree.tostring(root)
        with serve(county_home, county_file, ports["county"], work / "county.log") as (county_url, _):
            root = distributed(city_url, 2)
            ids = ids_of(root)
            assert f"{COUNTY}:layer:basic_farmland" in ids and f"{CITY}:layer:basic_farmland" in ids
            results = root.find("csw:SearchResults", NS)
            assert int(results.get("numberOfRecordsReturned")) == len(ids) == len(set(ids))
            assert int(results.get("numberOfRecordsMatched")) == len(ids)
            # hopCount 1: this catalog only
            ids = ids_of(distributed(city_url, 1))
            assert not any(i.startswith(COUNTY) for i in ids)
            # a long hopCount between two catalogs that name each other: each record once, no endless loop
            for url in (city_url, county_url):
                started = time.monotonic()
                root = distributed(url, 10)
                ids = ids_of(root)
                assert len(ids) == len(set(ids))
                assert f"{COUNTY}:layer:basic_farmland" in ids and f"{CITY}:layer:basic_farmland" in ids
                assert int(root.find("csw:SearchResults", NS).get("numberOfRecordsMatched")) == len(ids)
                assert time.monotonic() - started < 20


def test_sync_harvest_load_and_interrupted_sync(homes, ports, small_demo, pool, registry):
    from shapely.geometry import box as shp_box

    from lantu.providers.writer import delete_features, write_features

    county_home, county_file = homes["county"]
    city_home, city_file = homes["city"]
    work = homes["work"]
    source = f"http://127.0.0.1:{ports['county']}/csw"
    with serve(county_home, county_file, ports["county"], work / "county.log") as (county_url, _):
        first = cli(city_home, city_file, "catalog", "sync")
        assert first.returncode == 0, first.stderr[-2000:]
        county_ids = {row[0] for row in city_rows(homes, "SELECT identifier FROM catalog.records "
                                                         "WHERE mdsource = %s", (source,))}
        # what the county shows an anonymous harvester: the discoverable layers' records and the services
        assert discoverable(registry) <= county_ids
        assert not any(i.startswith(f"{COUNTY}:layer:") and i not in discoverable(registry) for i in county_ids)
        assert "complete" in first.stdout and f"added {len(county_ids)}," in first.stdout
        sources = cli(city_home, city_file, "catalog", "sources")
        assert f"{source} (csw, peer county): last complete 20" in sources.stdout, sources.stdout
        assert f"added {len(county_ids)}," in sources.stdout
        # re-run: nothing changed, nothing fetched
        again = cli(city_home, city_file, "catalog", "sync")
        assert again.returncode == 0 and "added 0, updated 0, removed 0" in again.stdout, again.stdout
        # a load in the county reaches the city at the next sync, and only that record is fetched
        layer = registry.get("scenic_areas")
        row = {"BSM": "FEDERATION-1", "YSDM": layer.ysdm, "XZQDM": "430121", "XZQMC": "长沙县", "MJ": 1.0}
        with pool.connection() as conn:
            write_features(conn, layer, [row], [shp_box(114.30, 28.60, 114.32, 28.62)], mode="append",
                           who="test-federation", source="test_catalog_federation")
        try:
            time.sleep(1.2)
            third = cli(city_home, city_file, "catalog", "sync")
            assert third.returncode == 0 and "added 0, updated 1, removed 0" in third.stdout, third.stdout
            xml = city_rows(homes, "SELECT xml FROM catalog.records WHERE identifier = %s",
                            (f"{COUNTY}:layer:scenic_areas",))[0][0]
            east = etree.fromstring(xml.encode(), PARSER).findtext(
                ".//gmd:EX_GeographicBoundingBox/gmd:eastBoundLongitude/gco:Decimal", namespaces=NS)
            assert float(east) == pytest.approx(114.32)
        finally:
            with pool.connection() as conn:
                delete_features(conn, layer, ["FEDERATION-1"], who="test-federation",
                                source="test_catalog_federation")
        back = cli(city_home, city_file, "catalog", "sync")  # the square removed again: the record moves back
        assert back.returncode == 0 and "added 0, updated 1, removed 0" in back.stdout, back.stdout
        # a record that disappears from the county disappears from the city
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("UPDATE catalog.records SET date_modified = '2000-01-01T00:00:00Z' WHERE identifier = %s",
                        (f"{COUNTY}:service:tiles",))
            cur.execute("INSERT INTO catalog.records (identifier, typename, schema, mdsource, insert_date, xml, "
                        "anytext, title, type, date_modified) SELECT 'urn:test:gone', typename, schema, 'local', "
                        "insert_date, replace(xml, identifier, 'urn:test:gone'), anytext, title, type, date_modified "
                        "FROM catalog.records WHERE identifier = %s", (f"{COUNTY}:service:wms",))
            conn.commit()
        fourth = cli(city_home, city_file, "catalog", "sync")
        assert fourth.returncode == 0 and "added 1, updated 1, removed 0" in fourth.stdout, fourth.stdout
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM catalog.records WHERE identifier = 'urn:test:gone'")
            conn.commit()
        fifth = cli(city_home, city_file, "catalog", "sync")
        assert "added 0, updated 0, removed 1" in fifth.stdout, fifth.stdout
        assert not city_rows(homes, "SELECT 1 FROM catalog.records WHERE identifier = 'urn:test:gone'")

        # stop the county mid-sync: force a full re-fetch, kill the county after the first committed page
        with homes["city_pool"].connection() as conn, conn.cursor() as cur:
            cur.execute("UPDATE catalog.harvest_items SET modified = 'stale' WHERE source = %s", (source,))
            conn.commit()
    with serve(county_home, county_file, ports["county"], work / "county2.log") as (county_url, county):
        sync = subprocess.Popen([sys.executable, "-m", "lantu.server.cli", "catalog", "sync"],
                                env={**{k: v for k, v in os.environ.items() if k != "LANTU_DATABASE_URL"},
                                     "LANTU_HOME": str(city_home), "LANTU_SETTINGS": str(city_file)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            position = city_rows(homes, "SELECT resume_position FROM catalog.harvest_sources WHERE url = %s",
                                 (source,))[0][0]
            if position and position > 1:
                break
            time.sleep(0.05)
        stop(county)
        out, err = sync.communicate(timeout=120)
    assert sync.returncode == 1, out + err
    assert "INTERRUPTED" in out
    # consistent: every record the city lists for the county is whole, the run can resume
    state = city_rows(homes, "SELECT resume_position, run_started FROM catalog.harvest_sources WHERE url = %s",
                      (source,))[0]
    assert state[0] and state[0] > 1 and state[1] is not None
    stored = city_rows(homes, "SELECT identifier, xml FROM catalog.records WHERE mdsource = %s", (source,))
    assert {i for i, _ in stored} == county_ids
    for _, xml in stored:
        etree.fromstring(xml.encode(), PARSER)
    with serve(county_home, county_file, ports["county"], work / "county3.log"):
        resumed = cli(city_home, city_file, "catalog", "sync")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"resumed at record {state[0]}" in resumed.stdout and "complete" in resumed.stdout
    assert city_rows(homes, "SELECT resume_position FROM catalog.harvest_sources WHERE url = %s",
                     (source,))[0][0] is None
    assert {row[0] for row in city_rows(homes, "SELECT identifier FROM catalog.records WHERE mdsource = %s",
                                        (source,))} == county_ids
    assert not city_rows(homes, "SELECT 1 FROM catalog.harvest_items WHERE source = %s AND modified = 'stale'",
                         (source,))


def test_harvest_refuses_private_addresses_unless_configured(settings, pool):
    from lantu.catalog.harvest import harvest
    from lantu.catalog.ssrf import RefusedURL

    for url in ("http://127.0.0.1:9/csw", "http://10.1.2.3/csw", "http://[::1]:9/csw", "http://169.254.169.254/",
                "file:///etc/passwd", "http://user:pw@example.org/csw"):
        with pytest.raises(RefusedURL):
            harvest(settings, pool, url, "csw")
    with pytest.raises(ValueError, match="--type"):
        harvest(settings, pool, "http://127.0.0.1:9/csw", "gopher")


def test_harvest_services_and_ogcapi_incrementally(homes, ports, small_demo):
    """The city harvests the county's WMS, WFS, WMTS capabilities and its OGC API landing page; counts are
    checked against what OWSLib and the JSON itself list; a second run changes nothing."""
    from owslib.wfs import WebFeatureService
    from owslib.wms import WebMapService
    from owslib.wmts import WebMapTileService

    county_home, county_file = homes["county"]
    city_home, city_file = homes["city"]
    with serve(county_home, county_file, ports["county"], homes["work"] / "county4.log") as (county_url, _):
        expected = {
            "wms": 1 + len(WebMapService(f"{county_url}/wms", version="1.3.0", timeout=60).contents),
            "wfs": 1 + len(WebFeatureService(f"{county_url}/wfs", version="2.0.0", timeout=60).contents),
            "wmts": 1 + len(WebMapTileService(f"{county_url}/wmts/1.0.0/WMTSCapabilities.xml", timeout=60).contents),
            "ogcapi": len(requests.get(f"{county_url}/collections?f=json", timeout=60).json()["collections"]),
        }
        urls = {"wms": f"{county_url}/wms", "wfs": f"{county_url}/wfs",
                "wmts": f"{county_url}/wmts/1.0.0/WMTSCapabilities.xml", "ogcapi": county_url}
        for kind, url in urls.items():
            first = cli(city_home, city_file, "catalog", "harvest", url, "--type", kind)
            assert first.returncode == 0, first.stderr[-1500:]
            assert f"added {expected[kind]}, updated 0, removed 0, unchanged 0" in first.stdout, (kind, first.stdout)
            again = cli(city_home, city_file, "catalog", "harvest", url, "--type", kind)
            assert f"added 0, updated 0, removed 0, unchanged {expected[kind]}" in again.stdout, (kind, again.stdout)
            stored = city_rows(homes, "SELECT count(*) FROM catalog.records WHERE mdsource = %s", (url,))[0][0]
            assert stored == expected[kind]
        farmland = city_rows(homes, "SELECT title FROM catalog.records WHERE mdsource = %s AND identifier LIKE %s",
                             (county_url, "%/collections/basic_farmland"))
        assert farmland == [("永久基本农田",)]
    refused = cli(city_home, city_file, "catalog", "harvest", "http://10.0.0.1/wms", "--type", "wms")
    assert refused.returncode == 1 and "catalog_harvest_allow" in refused.stderr


def test_worker_syncs_the_peers_on_its_schedule(homes, ports, small_demo, registry):
    from lantu.processes.base import Env
    from lantu.processes.worker import Worker

    source = f"http://127.0.0.1:{ports['county']}/csw"
    settings = homes["city_settings"].model_copy(update={"catalog_sync_interval_s": 3600.0})
    city_pool = homes["city_pool"]
    with city_pool.connection() as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM catalog.state WHERE key = 'peer_sync_at'")
        conn.commit()
    before = city_rows(homes, "SELECT last_completed FROM catalog.harvest_sources WHERE url = %s", (source,))
    with serve(homes["county"][0], homes["county"][1], ports["county"], homes["work"] / "county5.log"):
        Worker(Env(settings, registry, city_pool)).run_catalog_sync()
        after = city_rows(homes, "SELECT last_completed FROM catalog.harvest_sources WHERE url = %s", (source,))
        assert after[0][0] is not None and (not before or after[0][0] > before[0][0])
        synced_at = city_rows(homes, "SELECT value FROM catalog.state WHERE key = 'peer_sync_at'")[0][0]
        # not due again within the interval, whichever worker asks
        Worker(Env(settings, registry, city_pool)).run_catalog_sync()
        assert city_rows(homes, "SELECT last_completed FROM catalog.harvest_sources WHERE url = %s",
                         (source,)) == after
        assert city_rows(homes, "SELECT value FROM catalog.state WHERE key = 'peer_sync_at'")[0][0] == synced_at

"""OGC API – Processes against a real ``lantu serve`` and real ``lantu worker`` processes over plain HTTP and
OWSLib. Answers are checked against the demo's truth.json (computed by the generator with shapely and pyproj,
never by Lantu's SQL)."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import signal
import subprocess
import sys
import time
import zipfile
from contextlib import contextmanager
from pathlib import Path

import psycopg2
import pytest
import requests

from lantu.providers.pool import dsn_for

REL = 1e-6
TRUTH_CHECK = {"three-control-lines": "three-control-lines", "urban-vs-landuse": "plan-discrepancy",
               "construction-on-cropland": "construction-on-cropland"}
ZERO_TRAPS = ("edge_touch", "corner_touch")


@pytest.fixture(scope="module")
def truth(small_demo) -> dict:
    return json.loads(Path(small_demo["truth"]).read_text("utf-8"))


@pytest.fixture(scope="module")
def server(lantu_serve, small_demo):
    # No embedded job worker: the tests below start (and kill) their own `lantu worker` processes.
    with lantu_serve("processes", "job_workers: 0\njob_lease_s: 2\n") as (url, _log, _proc):
        yield url


@pytest.fixture(scope="module")
def worker_settings(settings, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("worker") / "settings.yaml"
    path.write_text(f"pg_port: {settings.pg_port}\njob_lease_s: 2\n")
    return path


@contextmanager
def worker(settings, worker_settings: Path):
    """A real ``lantu worker`` process (killed at the end if still running)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(worker_settings))
    proc = subprocess.Popen([sys.executable, "-m", "lantu.server.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


def execute(url: str, pid: str, inputs: dict, prefer: str | None = "respond-sync", **body) -> requests.Response:
    headers = {"Prefer": prefer} if prefer else {}
    return requests.post(f"{url}/processes/{pid}/execution", json={"inputs": inputs, **body}, headers=headers,
                         timeout=300)


def wait_status(job_url: str, statuses: tuple[str, ...], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = requests.get(job_url, timeout=10).json()
        if doc["status"] in statuses:
            return doc
        assert time.monotonic() < deadline, f"job still {doc['status']} after {timeout} s: {doc}"
        time.sleep(0.2)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-300)


def job_count(url: str) -> int:
    return requests.get(f"{url}/jobs", timeout=10).json()["numberMatched"]


# ---- conflict-check against truth.json -------------------------------------------------------------------------
def expected_conflicts(truth: dict, rule_set: str, min_area: float) -> dict:
    return {(c["class"], *c["bsm"]): c for c in truth["conflicts"] if c["check"] == TRUTH_CHECK[rule_set]
            and c["area"]["planar"]["m2"] > 0 and c["area"]["planar"]["m2"] >= min_area}


@pytest.mark.parametrize("min_area", [1.0, 0.0])
@pytest.mark.parametrize("rule_set", list(TRUTH_CHECK))
def test_conflict_check_reports_exactly_the_planted_conflicts(server, truth, rule_set, min_area):
    r = execute(server, "conflict-check", {"rule_set": rule_set, "min_area": min_area}, response="document")
    assert r.status_code == 200, r.text
    doc = r.json()
    got = {(f["properties"]["class"], *f["properties"]["bsm"]): f["properties"] for f in doc["patches"]["features"]}
    expected = expected_conflicts(truth, rule_set, min_area)
    assert expected, "truth has conflicts for every rule set"
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]["area"]
        for kind in ("planar", "ellipsoidal"):
            for unit in ("m2", "mu", "ha"):
                assert close(have[kind][unit], want["area"][kind][unit]), (key, kind, unit)
        assert set(got[key]["by_town"]) == set(want["by_town"])
        for town, m2 in want["by_town"].items():
            assert close(got[key]["by_town"][town], m2), (key, town)
    # the traps: edge/corner contacts never reported; slivers dropped below min_area, reported at 0
    mine = [c for c in truth["conflicts"] if c["check"] == TRUTH_CHECK[rule_set]]
    for c in mine:
        if c["trap"] in ZERO_TRAPS or c["zero_area"]:
            assert (c["class"], *c["bsm"]) not in got
        if c["sliver"]:
            assert ((c["class"], *c["bsm"]) in got) == (min_area == 0.0)
    assert any(c["sliver"] for c in truth["conflicts"] if c["check"] in ("three-control-lines", "plan-discrepancy"))
    # summary by class equals the truth's totals of the reported patches
    for cls, entry in doc["summary"]["by_class"].items():
        want = sum(c["area"]["planar"]["m2"] for k, c in expected.items() if k[0] == cls)
        assert close(entry["area"]["planar"]["m2"], want)


def test_conflict_check_by_town(server, truth):
    """With a town as the area of interest, exactly the pairs in that town, each with its area there. The
    town is the western one of the trap site on a town border, whose features lie exactly on the border:
    the conflicts of the eastern town touch this one along the border and must not appear."""
    border = next(s for s in truth["sites"] if len(s["towns"]) > 1)
    town = border["towns"][0]
    r = execute(server, "conflict-check", {"rule_set": "three-control-lines", "aoi": town, "min_area": 0})
    assert r.status_code == 200
    got = {(f["properties"]["class"], *f["properties"]["bsm"]): f["properties"]["area"]["planar"]["m2"]
           for f in r.json()["patches"]["features"]}
    expected = {(c["class"], *c["bsm"]): c["by_town"][town] for c in truth["conflicts"]
                if c["check"] == "three-control-lines" and c["by_town"].get(town, 0) > 0}
    assert any(c["site"] == border["name"] for c in truth["conflicts"] if (c["class"], *c["bsm"]) in expected)
    assert set(got) == set(expected)
    for key, m2 in expected.items():
        assert close(got[key], m2), key


def test_conflict_check_two_layers_and_save(server, truth, pool):
    """Any two layers; and the result saved as the 差异图斑 layer, served at once as a collection."""
    r = execute(server, "conflict-check", {"layers": ["eco_red_line", "basic_farmland"], "min_area": 0})
    assert r.status_code == 200
    pairs = {tuple(f["properties"]["bsm"]) for f in r.json()["patches"]["features"]}
    assert pairs == {tuple(c["bsm"]) for c in truth["conflicts"] if c["class"] == "redline_farmland"
                     and c["area"]["planar"]["m2"] > 0}
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE lantu.test_patches_backup AS SELECT * FROM blueprint.discrepancy_patches")
    try:
        r = execute(server, "conflict-check", {"rule_set": "urban-vs-landuse", "save": True})
        assert r.status_code == 200
        expected = expected_conflicts(truth, "urban-vs-landuse", 1.0)
        saved = r.json()["summary"]["saved"]
        assert saved["inserted"] == len(expected)
        items = requests.get(f"{server}/collections/discrepancy_patches/items",
                             params={"limit": 1000, "XTZT": "待解决"}, timeout=30).json()
        assert items["numberMatched"] == len(expected)
        assert sorted(f["properties"]["CYLX"] for f in items["features"]) == sorted(k[0] for k in expected)
    finally:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM blueprint.discrepancy_patches")
            cur.execute("INSERT INTO blueprint.discrepancy_patches SELECT * FROM lantu.test_patches_backup")
            cur.execute("DROP TABLE lantu.test_patches_backup")


# ---- control-line-check ----------------------------------------------------------------------------------------
def _planted_site(truth: dict, kind: str) -> dict:
    return next(s for s in truth["project_sites"] if s["kind"] == kind)


def test_control_line_check_of_the_planted_sites(server, truth):
    sites = truth["project_sites"]
    assert {s["kind"] for s in sites} >= {"clean", "farmland_30", "udb_60_40", "blue_and_road", "inside_red_line"}
    for site in sites:
        r = execute(server, "control-line-check", {"site": site["geometry"], "report": False})
        assert r.status_code == 200, r.text
        result = r.json()
        assert close(result["site"]["area"]["planar"]["m2"], site["area"]["planar"]["m2"])
        assert close(result["site"]["area"]["ellipsoidal"]["m2"], site["area"]["ellipsoidal"]["m2"])
        for lid, entry in result["layers"].items():
            want = site["layers"][lid]
            assert entry["intersects"] == want["intersects"], (site["name"], lid)
            if "features_withheld" in entry:  # view-only for this caller (access policy): counted, not listed
                assert entry["features"] == [] and entry["features_withheld"] >= len(want["bsm"]), (site["name"], lid)
            else:
                assert sorted(f["bsm"] for f in entry["features"]) == want["bsm"], (site["name"], lid)
            if entry["overlap"] is not None:
                assert math.isclose(entry["share"], want["share"], rel_tol=REL, abs_tol=1e-9), (site["name"], lid)
                for kind in ("planar", "ellipsoidal"):
                    assert math.isclose(entry["overlap"][kind]["m2"], want["overlap"][kind]["m2"], rel_tol=REL,
                                        abs_tol=1e-6), (site["name"], lid, kind)
            d = want["distance_m"]
            if d is not None and d <= result["buffer_m"]:
                assert math.isclose(entry["nearest_distance_m"], d, rel_tol=REL, abs_tol=1e-6), (site["name"], lid)
            else:
                assert entry["nearest_distance_m"] is None
        # The clean site touches no control line; it lies outside the urban development boundary (the demo's
        # only clean land is village construction land), which config/checks.yaml sends for review.
        verdict = {"clean": "需论证", "farmland_30": "需调整", "blue_and_road": "需调整", "inside_red_line": "禁止"}
        if site["kind"] in verdict:
            assert result["verdict"] == verdict[site["kind"]], (site["name"], result["rules_applied"])
        if site["kind"] == "clean":
            assert [a["layer"] for a in result["rules_applied"]] == ["urban_dev_boundary"]
    farmland = _planted_site(truth, "farmland_30")
    r = execute(server, "control-line-check", {"site": farmland["geometry"], "report": False})
    assert abs(r.json()["layers"]["basic_farmland"]["share"] - 0.30) < 0.002
    udb = _planted_site(truth, "udb_60_40")
    r = execute(server, "control-line-check", {"site": udb["geometry"], "report": False})
    assert abs(r.json()["layers"]["urban_dev_boundary"]["share"] - 0.60) < 0.002


def test_pre_review_report_pdf(server, truth, tmp_path):
    site = _planted_site(truth, "farmland_30")
    r = execute(server, "control-line-check", {"site": site["geometry"], "project_name": "㮾梨街道示范项目",
                                                "project_code": "2026-430121-01", "report": True},
                response="document")
    assert r.status_code == 200
    doc = r.json()
    assert doc["report_pdf"]["type"] == "application/pdf"
    pdf = requests.get(doc["report_pdf"]["href"], timeout=30)
    assert pdf.headers["Content-Type"] == "application/pdf" and pdf.content.startswith(b"%PDF")
    (tmp_path / "r.pdf").write_bytes(pdf.content)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "r.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    text = "".join(text.split())  # table cells wrap: compare without whitespace
    for words in ("空间预审报告", "㮾梨街道示范项目", "需调整", "永久基本农田", "最近距离", "BSM"):
        assert words in text, words
    share = doc["result"]["layers"]["basic_farmland"]["share"]
    assert f"{share * 100:.2f}%" in text
    for bsm in site["layers"]["basic_farmland"]["bsm"]:
        assert bsm in text
    html = requests.get(doc["report_html"]["href"], timeout=30)
    assert html.headers["Content-Type"].startswith("text/html") and "data:image/png;base64," in html.text


def test_site_upload_as_zipped_shapefile_and_geopackage(server, truth, tmp_path):
    """The same site uploaded as a GeoPackage and as a zipped Shapefile in EPSG:4547 gives the same answer."""
    import pyogrio
    import shapely

    site = _planted_site(truth, "farmland_30")
    geom = shapely.geometry.shape(site["geometry_epsg4547"])
    gpkg, shp = tmp_path / "site.gpkg", tmp_path / "site.shp"
    for path, driver in ((gpkg, "GPKG"), (shp, "ESRI Shapefile")):
        pyogrio.raw.write(str(path), geometry=[shapely.to_wkb(geom)], field_data=[], fields=[], crs="EPSG:4547",
                          driver=driver, geometry_type="Polygon")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for part in tmp_path.glob("site.*"):
            if part.suffix != ".gpkg":
                zf.write(part, part.name)
    for data, media in ((gpkg.read_bytes(), "application/geopackage+sqlite3"), (buf.getvalue(), "application/zip")):
        upload = {"value": base64.b64encode(data).decode(), "encoding": "base64", "mediaType": media}
        r = execute(server, "control-line-check", {"site": upload, "report": False})
        assert r.status_code == 200, (media, r.text)
        assert math.isclose(r.json()["layers"]["basic_farmland"]["share"],
                            site["layers"]["basic_farmland"]["share"], rel_tol=1e-6)


def test_overlay_paths_agree(small_demo, settings, registry, pool):
    """The shapely path Lantu uses and the PostGIS-only path give the same patches (keys, order, areas,
    towns, codes, geometry)."""
    import shapely

    from lantu.processes.base import Env
    from lantu.processes.conflict import rule_set_classes, run_classes, run_classes_sql
    from lantu.processes.region import ewkb_hex, town_geometry

    env = Env(settings, registry, pool)
    town = bytes.fromhex(ewkb_hex(town_geometry(env, "430121104000", "aoi")))
    for rule_set in TRUTH_CHECK:
        for aoi, min_area in ((None, 0.0), (None, 1.0), (town, 0.0)):
            classes = rule_set_classes(registry, rule_set)
            fast = run_classes(env, classes, aoi_ewkb=aoi, min_area=min_area)
            slow = run_classes_sql(env, classes, aoi_ewkb=aoi, min_area=min_area)
            assert [(p.cls, p.a_fid, p.b_fid) for p in fast] == [(p.cls, p.a_fid, p.b_fid) for p in slow]
            assert fast or aoi is not None, rule_set
            for f, s in zip(fast, slow, strict=True):
                assert math.isclose(f.planar_m2, s.planar_m2, rel_tol=1e-9)
                assert math.isclose(f.ellipsoidal_m2, s.ellipsoidal_m2, rel_tol=1e-9)
                assert (f.a_bsm, f.b_bsm, f.a_code, f.b_code) == (s.a_bsm, s.b_bsm, s.a_code, s.b_code)
                assert set(f.by_town) == set(s.by_town)
                assert all(math.isclose(f.by_town[t], s.by_town[t], rel_tol=1e-9) for t in f.by_town)
                gf, gs = shapely.from_geojson(f.geojson), shapely.from_geojson(s.geojson)
                assert shapely.equals(shapely.normalize(gf), shapely.normalize(gs)) or \
                    shapely.area(shapely.symmetric_difference(gf, gs)) < 1e-16


# ---- bad input: a 400 naming the input, and no job ------------------------------------------------------------
def _circle(n: int) -> dict:
    ring = [[113.2 + 0.01 * math.cos(2 * math.pi * k / n), 28.3 + 0.01 * math.sin(2 * math.pi * k / n)]
            for k in range(n)]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}


BOWTIE = {"type": "Polygon", "coordinates": [[[113.2, 28.3], [113.21, 28.31], [113.21, 28.3], [113.2, 28.31],
                                              [113.2, 28.3]]]}
SQUARE = {"type": "Polygon", "coordinates": [[[113.2, 28.3], [113.201, 28.3], [113.201, 28.301], [113.2, 28.301],
                                              [113.2, 28.3]]]}
BAD_INPUTS = [
    ("control-line-check", {"site": BOWTIE}, "site", "Self-intersection"),
    ("control-line-check", {"site": {"type": "Point", "coordinates": [113.2, 28.3]}}, "site", "Polygon"),
    ("control-line-check", {"site": SQUARE, "crs": "http://www.opengis.net/def/crs/EPSG/0/2000"}, "crs", "supported"),
    ("control-line-check", {"site": _circle(100_001)}, "site", "100000"),
    ("control-line-check", {"site": {"value": "", "encoding": "base64", "mediaType": "application/zip"}}, "site",
     "empty"),
    ("control-line-check", {"site": {"value": base64.b64encode(b"\x89PNG\r\n").decode(), "encoding": "base64",
                                     "mediaType": "image/png"}}, "site", "file type"),
    ("control-line-check", {"site": {"value": base64.b64encode(b"PK\x03\x04 broken").decode(), "encoding": "base64",
                                     "mediaType": "application/zip"}}, "site", "zip"),
    ("control-line-check", {}, "site", "required"),
    ("control-line-check", {"site": SQUARE, "bogus": 1}, "bogus", "not an input"),
    ("conflict-check", {"rule_set": "no-such-rules"}, "rule_set", "unknown rule set"),
    ("conflict-check", {"layers": ["eco_red_line", "no_such_layer"]}, "layers", "unknown layer"),
    ("conflict-check", {"layers": ["eco_red_line", "road_red_line"]}, "layers", "LineString"),
    ("conflict-check", {"rule_set": "three-control-lines", "aoi": "999999999999"}, "aoi", "no town"),
    ("conflict-check", {"rule_set": "three-control-lines", "min_area": "big"}, "min_area", "number"),
    ("ledger", {"layer": "road_red_line"}, "layer", "polygon"),
    ("site-selection", {"region": "430121001000"}, "allowed_codes", "list"),
]


@pytest.mark.parametrize(("pid", "inputs", "name", "words"), BAD_INPUTS,
                         ids=[f"{b[0]}-{b[2]}-{k}" for k, b in enumerate(BAD_INPUTS)])
def test_bad_input_is_a_400_before_any_job(server, pid, inputs, name, words):
    before = job_count(server)
    r = execute(server, pid, inputs, prefer="respond-async")
    assert r.status_code == 400, r.text
    doc = r.json()
    assert r.headers["Content-Type"].startswith("application/problem+json")
    assert f"input {name}" in doc["detail"] and words in doc["detail"], doc
    assert job_count(server) == before


def test_protocol_errors(server):
    assert requests.post(f"{server}/processes/nope/execution", json={}, timeout=10).status_code == 404
    assert requests.get(f"{server}/processes/nope", timeout=10).json()["code"] == "no-such-process"
    r = requests.post(f"{server}/processes/ledger/execution", data=b"{not json", timeout=10)
    assert r.status_code == 400 and "not JSON" in r.json()["detail"]
    r = execute(server, "ledger", {"layer": "basic_farmland"}, outputs={"nope": {}})
    assert r.status_code == 400 and r.json()["detail"].startswith("`outputs`")
    assert requests.get(f"{server}/jobs/not-a-uuid", timeout=10).status_code == 404
    assert requests.get(f"{server}/jobs/00000000-0000-0000-0000-000000000000", timeout=10).json()["code"] == \
        "no-such-job"
    assert requests.get(f"{server}/jobs?limit=0", timeout=10).status_code == 400
    assert requests.get(f"{server}/jobs?status=nearly", timeout=10).status_code == 400


# ---- discovery: landing page, conformance, OWSLib -------------------------------------------------------------
def test_processes_listed_and_described_with_owslib(server):
    from owslib.ogcapi.processes import Processes

    api = Processes(server)
    ids = {p["id"] for p in api.processes()}
    assert ids == {"conflict-check", "control-line-check", "site-selection", "ledger", "indicators"}
    for pid in ids:
        desc = api.process(pid)
        assert desc["id"] == pid and desc["inputs"] and desc["outputs"]
        assert "async-execute" in desc["jobControlOptions"]
    landing = requests.get(server, params={"f": "json"}, timeout=10).json()
    rels = {link["rel"] for link in landing["links"]}
    assert {"http://www.opengis.net/def/rel/ogc/1.0/processes",
            "http://www.opengis.net/def/rel/ogc/1.0/job-list"} <= rels
    conf = requests.get(f"{server}/conformance", params={"f": "json"}, timeout=10).json()["conformsTo"]
    assert "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list" in conf


# ---- ledger --------------------------------------------------------------------------------------------------
def test_ledger_totals_and_csv(server, pool):
    r = execute(server, "ledger", {"layer": "basic_farmland"}, response="document")
    doc = r.json()
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT sum(ST_Area(geom::geography, true)), sum(ST_Area(ST_Transform(geom, 4547))) "
                    "FROM blueprint.basic_farmland")
        ell, planar = cur.fetchone()
    # Per-town pieces add up to the whole features (the towns partition the county).
    assert math.isclose(doc["table"]["total"]["ellipsoidal"]["m2"], ell, rel_tol=1e-6)
    assert math.isclose(doc["table"]["total"]["planar"]["m2"], planar, rel_tol=1e-6)
    csv_text = requests.get(doc["csv"]["href"], timeout=10).content.decode("utf-8-sig")
    header, *lines = csv_text.splitlines()
    assert header.startswith("DLBM,名称,XZQDM,乡镇") and len(lines) == len(doc["table"]["rows"])
    assert "㮾梨街道" in csv_text or all(r["xzqmc"] != "㮾梨街道" for r in doc["table"]["rows"])


# ---- site-selection --------------------------------------------------------------------------------------------
def test_site_selection_matches_truth(server, truth):
    case = truth["site_selection"]
    c = case["constraints"]
    inputs = {"region": case["region"], "inside": c["inside"],
              "outside": [lid for lid in c["outside"] if lid != "road_red_line"],
              "land_use_layer": c["land_use_layer"], "allowed_codes": c["allowed_codes"],
              "min_area_m2": c["min_area_m2"], "max_area_m2": c["max_area_m2"], "road_layer": c["road_layer"],
              "max_road_distance_m": c["max_road_distance_m"]}
    r = execute(server, "site-selection", inputs)
    assert r.status_code == 200, r.text
    got = [f["properties"] for f in r.json()["features"]]
    want = case["candidates"]
    assert [(g["bsm"], g["part"]) for g in got] == [(w["bsm"], w["part"]) for w in want]
    for g, w in zip(got, want, strict=True):
        assert close(g["area"]["planar"]["m2"], w["area"]["planar"]["m2"])
        assert close(g["area"]["ellipsoidal"]["m2"], w["area"]["ellipsoidal"]["m2"])
        assert math.isclose(g["road_distance_m"], w["road_distance_m"], rel_tol=1e-6, abs_tol=1e-6)
        assert g["reasons"]
    rejected = {(x["bsm"], x["reason"]) for x in r.json()["selection"]["rejected"]}
    assert {e["reason"] for e in case["rejected_examples"]} == {"outside", "control_line", "area", "road_distance"}
    for example in case["rejected_examples"]:
        assert (example["bsm"], example["reason"]) in rejected, example


# ---- async jobs, workers, dismiss, paging ---------------------------------------------------------------------
def test_async_job_followed_with_plain_http(server, settings, worker_settings):
    r = execute(server, "conflict-check", {"rule_set": "three-control-lines"}, prefer="respond-async")
    assert r.status_code == 201 and r.headers["Preference-Applied"] == "respond-async"
    job_url = r.headers["Location"]
    assert r.json()["status"] == "accepted"
    with worker(settings, worker_settings):
        doc = wait_status(job_url, ("successful", "failed"))
    assert doc["status"] == "successful" and doc["progress"] == 100
    results = next(link["href"] for link in doc["links"] if link["rel"].endswith("/results"))
    body = requests.get(results, timeout=30).json()
    assert {"patches", "summary"} <= set(body)
    second = execute(server, "ledger", {"layer": "basic_farmland"}, prefer="respond-async").headers["Location"]
    listed = requests.get(f"{server}/jobs", params={"limit": 1}, timeout=10).json()
    assert listed["numberMatched"] >= 2 and listed["numberReturned"] == 1
    assert any(link["rel"] == "next" for link in listed["links"])
    requests.delete(second, timeout=10)


def test_without_preference_small_input_runs_sync_and_county_wide_runs_async(server):
    r = execute(server, "conflict-check", {"rule_set": "three-control-lines", "aoi": "430121104000"}, prefer=None)
    assert r.status_code == 200
    r = execute(server, "conflict-check", {"rule_set": "three-control-lines"}, prefer=None)
    assert r.status_code == 201
    requests.delete(r.headers["Location"], timeout=10)


def test_dismiss_queued_job(server):
    r = execute(server, "ledger", {"layer": "basic_farmland"}, prefer="respond-async")
    job_url = r.headers["Location"]
    d = requests.delete(job_url, timeout=10)
    assert d.status_code == 200 and d.json()["status"] == "dismissed"
    assert requests.get(f"{job_url}/results", timeout=10).status_code == 404
    assert requests.get(job_url, timeout=10).json()["status"] == "dismissed"


def test_killed_worker_mid_job_is_taken_over(server, settings, worker_settings, truth):
    """SIGKILL a worker while its job runs (held mid-query by a table lock); another worker completes it."""
    blocker = psycopg2.connect(dsn_for(settings))
    try:
        with blocker.cursor() as cur:
            cur.execute("LOCK TABLE blueprint.basic_farmland IN ACCESS EXCLUSIVE MODE")
        r = execute(server, "conflict-check", {"rule_set": "three-control-lines"}, prefer="respond-async")
        job_url = r.headers["Location"]
        with worker(settings, worker_settings) as first:
            wait_status(job_url, ("running",))
            time.sleep(0.5)
            os.kill(first.pid, signal.SIGKILL)
            first.wait(10)
        blocker.rollback()
    finally:
        blocker.close()
    assert requests.get(job_url, timeout=10).json()["status"] == "running"  # nobody finished it
    with worker(settings, worker_settings):
        doc = wait_status(job_url, ("successful", "failed"), timeout=120)
    assert doc["status"] == "successful" and doc["attempts"] == 2
    patches = requests.get(f"{job_url}/results/patches", timeout=30).json()["features"]
    assert len(patches) == len(expected_conflicts(truth, "three-control-lines", 1.0))


def test_server_restart_loses_no_job(lantu_serve, small_demo):
    """A job queued on a server that then stops is run by the next server's embedded worker."""
    with lantu_serve("processes-before", "job_workers: 0\n") as (url, _log, _proc):
        r = execute(url, "ledger", {"layer": "eco_red_line"}, prefer="respond-async")
        job_id = r.headers["Location"].rsplit("/", 1)[1]
    with lantu_serve("processes-after", "job_lease_s: 2\n") as (url, _log, _proc):
        doc = wait_status(f"{url}/jobs/{job_id}", ("successful", "failed"))
        assert doc["status"] == "successful"
        assert "table" in requests.get(f"{url}/jobs/{job_id}/results", timeout=10).json()

"""规划核心指标 (issue 11): the catalogue, the `indicators` process over real HTTP (plain requests and OWSLib),
the yearly snapshots and the `core_indicators` collection (GDAL's OAPIF driver), the reports (pdftotext), the
CLI and the worker's yearly schedule. Values are checked against truth.json, computed by the demo generator from
the atoms the layers are made of (shapely/pyproj, never Lantu's SQL)."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
import requests
import yaml

from lantu.providers.pool import dsn_for

REL = 1e-6
COUNTY = "430121"
YEAR, PREVIOUS = "2025", "2024"


@pytest.fixture(scope="module")
def truth(small_demo) -> dict:
    return json.loads(Path(small_demo["truth"]).read_text("utf-8"))["indicators"]


@pytest.fixture(scope="module")
def server(lantu_serve, small_demo):
    with lantu_serve("indicators", "job_workers: 0\n") as (url, _log, _proc):
        yield url


def close(a: float | None, b: float | None, rel: float = REL, abs_tol: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol)


def execute(server: str, inputs: dict, output: str = "result", **kw) -> requests.Response:
    return requests.post(f"{server}/processes/indicators/execution",
                         json={"inputs": inputs, "outputs": {output: {}}, **kw},
                         headers={"Prefer": "respond-sync"}, timeout=120)


def counts(settings) -> tuple[int, int, int]:
    with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT (SELECT count(*) FROM lantu.jobs), (SELECT count(*) FROM lantu.indicator_snapshots), "
                    "(SELECT count(*) FROM lantu.indicator_targets)")
        return cur.fetchone()


def check_row(row: dict, expected: dict, where: str) -> None:
    assert close(row["value"], expected["value"]), (where, row["value"], expected["value"])
    assert close(row["value_planar"], expected["value_planar"]), (where, row["value_planar"], expected["value_planar"])
    assert close(row["target"], expected["target"]), where
    assert row["status"] == expected["status"], (where, row["status"], expected["status"])


# ---- the catalogue ------------------------------------------------------------------------------------------
def test_catalogue_agrees_with_the_demo_definitions(registry, settings):
    from lantu.demo import indicators as demo
    from lantu.processes.indicators import catalogue_path, load_catalogue

    cat = load_catalogue(registry, catalogue_path(settings))
    assert [i.id for i in cat.indicators] == list(demo.INDICATORS)
    for ind in cat.indicators:
        assert ind.direction == demo.INDICATORS[ind.id]["direction"], ind.id
        assert ind.unit == demo.INDICATORS[ind.id]["unit"], ind.id
        assert ind.warn_margin == demo.MARGINS.get(ind.id, demo.DEFAULT_MARGIN), ind.id
    cov = cat.get("life_circle_coverage")
    assert cov.distance_m == demo.COVERAGE_DISTANCE_M
    assert {f.layer for f in cov.facilities} == {"education_facilities", "medical_facilities"}
    # 0807 is a `recalled` row of GB/T 21010 (unverified name): it is part of 城乡建设用地 through the 08 prefix
    assert "0807" in cat.get("urban_rural_construction_area").area.codes
    assert registry.code_lists["gbt21010"].codes["0807"].recalled


BAD_CONFIGS = [
    (["indicators", 1, "formula", "layer"], "no_such_layer", "indicators[cropland_area].formula.layer",
     "unknown layer"),
    (["indicators", 1, "formula", "prefixes"], ["99"], "indicators[cropland_area].formula.prefixes", "99"),
    (["indicators", 1, "formula", "codes"], ["0199"], "indicators[cropland_area].formula.codes", "0199"),
    (["indicators", 1, "formula", "field"], "NOPE", "indicators[cropland_area].formula.field", "NOPE"),
    (["indicators", 7, "formula", "numerator", "within"], "roads", "indicators[urban_construction_per_capita]"
     ".formula.numerator.within", "roads"),
    (["indicators", 7, "formula", "statistic"], "gdp", "indicators[urban_construction_per_capita].formula.statistic",
     "gdp"),
    (["indicators", 8, "formula", "facilities", 0, "layer"], "schools", "indicators[life_circle_coverage]"
     ".formula.facilities[0].layer", "schools"),
    (["indicators", 0, "direction"], "up", "indicators[basic_farmland_area].direction", "min or max"),
]


@pytest.mark.parametrize("path, value, entry, words", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_config_error_names_the_entry(registry, settings, tmp_path, path, value, entry, words):
    from lantu.processes.indicators import IndicatorConfigError, catalogue_path, load_catalogue

    raw = yaml.safe_load(catalogue_path(settings).read_text("utf-8"))
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    bad = tmp_path / "bad-indicators.yaml"
    bad.write_text(yaml.safe_dump(raw, allow_unicode=True), "utf-8")
    with pytest.raises(IndicatorConfigError) as err:
        load_catalogue(registry, bad)
    assert err.value.entry == entry and words in str(err.value)


def cli(settings, tmp_path, *args, extra: str = "") -> subprocess.CompletedProcess:
    conf = tmp_path / "cli-settings.yaml"
    conf.write_text(f"pg_port: {settings.pg_port}\n{extra}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(conf))
    return subprocess.run([sys.executable, "-m", "lantu.server.cli", "indicators", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_with_a_bad_catalogue_names_the_entry_and_stores_nothing(settings, small_demo, tmp_path):
    from lantu.processes.indicators import catalogue_path

    text = catalogue_path(settings).read_text("utf-8").replace("layer: eco_red_line}", "layer: eco_red_lines}")
    bad = tmp_path / "indicators.yaml"
    bad.write_text(text, "utf-8")
    before = counts(settings)
    for args in (["check"], ["snapshot"]):
        done = cli(settings, tmp_path, *args, extra=f"indicators_config: {bad}\n")
        assert done.returncode == 1, done.stderr
        assert "indicators[eco_red_line_area].formula.layer" in done.stderr and "eco_red_lines" in done.stderr
    assert counts(settings) == before


def test_serve_refuses_a_bad_catalogue_naming_the_entry(settings, small_demo, tmp_path, port_factory):
    from lantu.processes.indicators import catalogue_path

    text = catalogue_path(settings).read_text("utf-8").replace('prefixes: ["03"]', 'prefixes: ["03"], codes: ["0399"]')
    bad = tmp_path / "indicators.yaml"
    bad.write_text(text, "utf-8")
    conf = tmp_path / "serve-settings.yaml"
    conf.write_text(f"pg_port: {settings.pg_port}\nindicators_config: {bad}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(conf))
    done = subprocess.run([sys.executable, "-m", "lantu.server.cli", "serve", "--bind",
                           f"127.0.0.1:{port_factory()}"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "indicators[forest_area].formula.codes: unknown code '0399'" in done.stderr, done.stderr


# ---- snapshots against truth --------------------------------------------------------------------------------
@pytest.mark.parametrize("year", [PREVIOUS, YEAR])
def test_snapshots_equal_truth_for_county_and_every_town(settings, truth, year):
    with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT indicator, xzqdm, value, value_planar, target, status, change, xzqmc "
                    "FROM lantu.indicator_snapshots WHERE year = %s", (int(year),))
        rows = cur.fetchall()
    expected = truth["years"][year]
    assert {(i, k) for i, k, *_ in rows} == {(i, k) for k, per in expected.items() for i in per}
    assert len(expected) == 19  # the county and its 18 towns
    for ind, key, value, planar, target, status, change, name in rows:
        e = expected[key][ind]
        got = {"value": value, "value_planar": planar, "target": target, "status": status}
        check_row(got, e, f"{year} {key} {ind}")
        assert close(change, e["change"], rel=1e-6, abs_tol=1e-6), (year, key, ind, change, e["change"])
        assert name == truth["names"][key]


def test_planted_changes_and_warning(truth):
    """The truth itself: the planted differences are what the generator planted (atoms), and the warning shows."""
    now, before = truth["years"][YEAR][COUNTY], truth["years"][PREVIOUS][COUNTY]
    lost = truth["planted"]["farmland_lost"]["area"]
    assert lost["planar_m2"] > 0 and truth["planted"]["farmland_lost"]["bsm"]
    assert close(now["cropland_area"]["value_planar"] - before["cropland_area"]["value_planar"],
                 -lost["planar_m2"] / 1e4, rel=1e-9)
    assert close(now["urban_rural_construction_area"]["change"], lost["ellipsoidal_m2"] / 1e4, rel=1e-9)
    out = truth["planted"]["red_line_adjustment"]["area_out"]
    assert close(now["eco_red_line_area"]["change"], -out["ellipsoidal_m2"] / 1e4, rel=1e-9)
    assert now["cropland_area"]["status"] == "预警" and before["cropland_area"]["status"] == "达标"
    assert now["eco_red_line_area"]["status"] == "未达标"


# ---- the process --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("region", [None, COUNTY, "430121000", "430121001000", "430121116000", "430121116"])
def test_process_values_equal_truth(server, truth, region):
    inputs = {} if region is None else {"region": region}
    resp = execute(server, inputs)
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    key = COUNTY if region in (None, COUNTY, "430121000") else region.ljust(12, "0")
    assert doc["source"] == "live" and doc["year"] == int(YEAR) and doc["region"]["xzqdm"] == key
    expected = truth["years"][YEAR][key]
    assert [r["indicator"] for r in doc["indicators"]] == list(expected)
    for row in doc["indicators"]:
        e = expected[row["indicator"]]
        check_row(row, e, f"{key} {row['indicator']}")
        assert close(row["change"], e["change"], abs_tol=1e-6), row["indicator"]
        assert row["previous_year"] == int(PREVIOUS)
        if row["target"] is not None:
            assert close(row["gap"], row["value"] - row["target"], rel=1e-12)
        if row["unit"] == "公顷":  # areas labelled: ellipsoidal (GRS80) and planar (EPSG:4547), in m², 亩, 公顷
            area = row["area"]
            assert area["ellipsoidal"]["ellipsoid"] == "GRS80" and area["planar"]["crs"] == "EPSG:4547"
            assert close(area["ellipsoidal"]["ha"], e["value"]) and close(area["planar"]["ha"], e["value_planar"])
            assert close(area["planar"]["mu"], e["value_planar"] * 15)


def test_year_on_year_differences_and_planted_warning_over_http(server, truth):
    rows = {r["indicator"]: r for r in execute(server, {"region": COUNTY}).json()["indicators"]}
    lost = truth["planted"]["farmland_lost"]["area"]["ellipsoidal_m2"] / 1e4
    out = truth["planted"]["red_line_adjustment"]["area_out"]["ellipsoidal_m2"] / 1e4
    assert close(rows["cropland_area"]["change"], -lost, rel=1e-6)
    assert close(rows["urban_rural_construction_area"]["change"], lost, rel=1e-6)
    assert close(rows["eco_red_line_area"]["change"], -out, rel=1e-6)
    assert rows["basic_farmland_area"]["change"] == pytest.approx(0, abs=1e-6)
    assert rows["cropland_area"]["status"] == truth["planted"]["warning"]["status"] == "预警"
    assert rows["eco_red_line_area"]["status"] == "未达标"
    town = truth["planted"]["red_line_adjustment"]["xzqdm"]
    town_rows = {r["indicator"]: r for r in execute(server, {"region": town}).json()["indicators"]}
    assert close(town_rows["eco_red_line_area"]["change"], -out, rel=1e-6)
    assert town_rows["eco_red_line_area"]["status"] == "未达标"


def test_previous_year_from_snapshots(server, truth):
    doc = execute(server, {"region": "430121116000", "year": int(PREVIOUS)}).json()
    assert doc["source"] == "snapshot"
    for row in doc["indicators"]:
        check_row(row, truth["years"][PREVIOUS]["430121116000"][row["indicator"]], row["indicator"])


def test_a_drawn_region_equals_the_town_it_traces(server, truth, settings):
    town = "430121002000"
    with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_AsGeoJSON(ST_Union(geom), 15) FROM blueprint.admin_divisions WHERE xzqdm = %s", (town,))
        geom = json.loads(cur.fetchone()[0])
    if geom["type"] == "MultiPolygon" and len(geom["coordinates"]) == 1:
        geom = {"type": "Polygon", "coordinates": geom["coordinates"][0]}
    doc = execute(server, {"region": geom}).json()
    assert doc["region"]["kind"] == "geometry"
    expected = truth["years"][YEAR][town]
    for row in doc["indicators"]:
        e = expected[row["indicator"]]
        assert row["target"] is None and row["status"] is None  # targets are set for the county and towns
        if row["indicator"] == "urban_construction_per_capita":
            assert row["value"] is None  # population is counted by administrative unit
            continue
        assert close(row["value"], e["value"], rel=1e-6), row["indicator"]
        assert close(row["value_planar"], e["value_planar"], rel=1e-6), row["indicator"]


def test_csv_output(server, truth):
    resp = execute(server, {"region": COUNTY}, output="csv")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    text = resp.content.decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert lines[0].startswith("指标,名称,单位") and len(lines) == 1 + len(truth["years"][YEAR][COUNTY])
    crop = next(line for line in lines if line.startswith("cropland_area,"))
    assert "预警" in crop and f"{truth['years'][YEAR][COUNTY]['cropland_area']['value']:.6f}" in crop


BAD_INPUTS = [
    ({"indicators": ["cropland_area", "gdp_growth"]}, "indicators", "gdp_growth"),
    ({"indicators": "nope"}, "indicators", "nope"),
    ({"year": 2019}, "year", "no data for 2019"),
    ({"year": 2030}, "year", "no data for 2030"),
    ({"year": "2025"}, "year", "integer"),
    ({"region": "430102"}, "region", "outside the county"),
    ({"region": "430121999000"}, "region", "no town"),
    ({"region": "43"}, "region", "XZQDM"),
    ({"region": {"type": "Polygon", "coordinates": [[[100, 20], [100.1, 20], [100.1, 20.1], [100, 20]]]}},
     "region", "outside the county"),
    ({"region": {"type": "Polygon", "coordinates": [[[113.2, 28.3], [113.21, 28.3], [113.21, 28.31],
                                                     [113.2, 28.3]]]}, "year": 2024}, "year", "past year"),
    ({"region": {"type": "Polygon", "coordinates": [[[113.2, 28.3], [113.21, 28.3], [113.21, 28.31],
                                                     [113.2, 28.3]]]}, "report": "annual"}, "report", "county"),
    ({"report": "monthly"}, "report", "annual or five-year"),
    ({"colour": "red"}, "colour", "not an input"),
]


@pytest.mark.parametrize("inputs, name, words", BAD_INPUTS, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_INPUTS)])
def test_bad_input_is_a_400_naming_the_input_and_stores_nothing(server, settings, inputs, name, words):
    before = counts(settings)
    resp = execute(server, inputs)
    assert resp.status_code == 400, resp.text
    detail = resp.json()["detail"]
    assert detail.startswith(f"input {name}:") and words in detail, detail
    assert counts(settings) == before


def test_owslib_executes_indicators(server, side_venv, truth):
    python = side_venv("owslib")
    script = ("import json, sys\nfrom owslib.ogcapi.processes import Processes\n"
              "api = Processes(sys.argv[1])\n"
              "assert 'indicators' in [p['id'] for p in api.processes()]\n"
              "desc = api.process('indicators')\n"
              "assert set(desc['inputs']) >= {'region', 'year', 'indicators', 'report'}\n"
              "out = api.execute('indicators', {'region': '430121', 'indicators': ['cropland_area']},"
              " outputs={'result': {}})\n"
              "print(json.dumps(out, ensure_ascii=False))\n")
    done = subprocess.run([str(python), "-c", script, server], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    doc = out.get("result", out)
    [row] = doc["indicators"]
    check_row(row, truth["years"][YEAR][COUNTY]["cropland_area"], "owslib")


# ---- the collection -----------------------------------------------------------------------------------------
def test_core_indicators_collection_is_queryable(server, truth):
    base = f"{server}/collections/core_indicators"
    desc = requests.get(base, params={"f": "json"}, timeout=10).json()
    assert desc["itemType"] == "feature" and "spatial" not in desc.get("extent", {})
    resp = requests.get(f"{base}/items", params={"indicator": "eco_red_line_area", "xzqdm": COUNTY, "f": "json"},
                        timeout=10)
    feats = resp.json()["features"]
    assert sorted(f["properties"]["year"] for f in feats) == [int(PREVIOUS), int(YEAR)]
    for f in feats:
        assert f["geometry"] is None
        e = truth["years"][str(f["properties"]["year"])][COUNTY]["eco_red_line_area"]
        check_row(f["properties"], e, "collection")
    hits = requests.get(f"{base}/items", params={"filter": "year = 2025 AND status = '未达标'", "limit": 100},
                        timeout=10).json()
    expected = {(i, k) for k, per in truth["years"][YEAR].items() for i, e in per.items() if e["status"] == "未达标"}
    assert {(f["properties"]["indicator"], f["properties"]["xzqdm"]) for f in hits["features"]} == expected
    q = requests.get(f"{base}/queryables", params={"f": "json"}, timeout=10).json()["properties"]
    assert {"indicator", "year", "xzqdm"} <= set(q) and "geometry" not in q
    bad = requests.get(f"{base}/items", params={"bbox": "113,28,114,29"}, timeout=10)
    assert bad.status_code == 400 and "no geometry" in bad.json()["detail"]
    assert requests.get(f"{base}/tiles", timeout=10).status_code == 404


def test_ogrinfo_reads_core_indicators(server, truth):
    done = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{server}", "core_indicators",
                           "-where", f"indicator = 'cropland_area' AND xzqdm = '{COUNTY}'"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    values = {}
    year = None
    for line in done.stdout.splitlines():
        line = line.strip()
        if line.startswith("year (Integer) = "):
            year = line.split("= ")[1]
        if line.startswith("value (Real) = "):
            values[year] = float(line.split("= ")[1])
    assert set(values) == {PREVIOUS, YEAR}, done.stdout[:2000]
    for y, v in values.items():  # ogrinfo prints 15 significant digits
        assert close(v, truth["years"][y][COUNTY]["cropland_area"]["value"], rel=1e-12)


# ---- reports ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, heading", [("annual", "年度国土空间规划实施体检报告"), ("five-year", "五年评估报告")])
def test_reports_pdf_and_html(server, truth, tmp_path, kind, heading):
    resp = execute(server, {"region": COUNTY, "report": kind}, output="report_pdf")
    assert resp.status_code == 200 and resp.headers["Content-Type"] == "application/pdf"
    pdf = tmp_path / f"{kind}.pdf"
    pdf.write_bytes(resp.content)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout
    assert heading in text and "长沙县" in text
    now, before = truth["years"][YEAR][COUNTY], truth["years"][PREVIOUS][COUNTY]
    crop = next(line for line in text.splitlines() if line.strip().startswith("耕地保有量"))
    assert f"{now['cropland_area']['value']:.2f}" in crop and f"{before['cropland_area']['value']:.2f}" in crop
    assert "预警" in crop
    assert f"{now['cropland_area']['target']:.2f}" in crop
    html = execute(server, {"region": COUNTY, "report": kind}, output="report_html")
    assert html.status_code == 200 and html.text.count('src="data:image/png;base64,') == len(now)


# ---- CLI and the yearly schedule ----------------------------------------------------------------------------
def test_cli_snapshot_rules(settings, small_demo, tmp_path, truth):
    done = cli(settings, tmp_path, "snapshot", "--year", "2030")
    assert done.returncode == 1 and "no statistics" in done.stderr
    done = cli(settings, tmp_path, "snapshot", "--year", PREVIOUS)
    assert done.returncode == 1 and "--replace" in done.stderr
    done = cli(settings, tmp_path, "snapshot")
    assert done.returncode == 0 and f"snapshot {YEAR}: 171 rows" in done.stdout, done.stderr
    with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
        cur.execute("SELECT value FROM lantu.indicator_snapshots WHERE year = %s AND xzqdm = %s "
                    "AND indicator = 'cropland_area'", (int(YEAR), COUNTY))
        assert close(cur.fetchone()[0], truth["years"][YEAR][COUNTY]["cropland_area"]["value"])


def test_worker_schedule_takes_the_missing_year_once(settings, registry, pool, small_demo, truth):
    from lantu.processes.base import Env
    from lantu.processes.indicators import run_schedule, scheduled_year

    tz = dt.timezone(dt.timedelta(hours=8))
    assert scheduled_year(dt.datetime(2025, 12, 30, tzinfo=tz), "12-31") == 2024
    assert scheduled_year(dt.datetime(2025, 12, 31, 1, tzinfo=tz), "12-31") == 2025
    env = Env(settings, registry, pool)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM lantu.indicator_snapshots WHERE year = %s ORDER BY fid", (int(YEAR),))
        saved = cur.fetchall()
        cur.execute("DELETE FROM lantu.indicator_snapshots WHERE year = %s", (int(YEAR),))
    try:
        assert run_schedule(env, dt.datetime(2025, 12, 30, 12, tzinfo=tz)) is None  # 2024 is there
        assert run_schedule(env, dt.datetime(2026, 12, 31, 12, tzinfo=tz)) is None  # data still describe 2025
        assert run_schedule(env, dt.datetime(2025, 12, 31, 12, tzinfo=tz)) == int(YEAR)
        assert run_schedule(env, dt.datetime(2025, 12, 31, 13, tzinfo=tz)) is None  # taken once
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT xzqdm, indicator, value, status FROM lantu.indicator_snapshots WHERE year = %s",
                        (int(YEAR),))
            rows = cur.fetchall()
        assert len(rows) == 171
        for key, ind, value, status in rows:
            e = truth["years"][YEAR][key][ind]
            assert close(value, e["value"]) and status == e["status"], (key, ind)
    finally:
        with pool.connection() as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM lantu.indicator_snapshots WHERE year = %s", (int(YEAR),))
            for row in saved:
                cur.execute("INSERT INTO lantu.indicator_snapshots VALUES (" + ", ".join(["%s"] * len(row)) + ")", row)


def test_a_running_worker_takes_the_due_snapshot(settings, small_demo, tmp_path, truth):
    """A real `lantu worker` process: with the snapshot date passed this calendar year and statistics of this
    year loaded, it stores the year's snapshot by itself (and the previous year's values become `previous`)."""
    this_year = dt.datetime.now().astimezone().year
    assert this_year > int(YEAR)
    conf = tmp_path / "worker-settings.yaml"
    conf.write_text(f"pg_port: {settings.pg_port}\nindicator_snapshot_date: \"01-01\"\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(conf))
    with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO lantu.statistics (xzqdm, year, item, value, unit, source) SELECT xzqdm, %s, item, "
                    "value, unit, 'test' FROM lantu.statistics WHERE year = %s", (this_year, int(YEAR)))
    proc = subprocess.Popen([sys.executable, "-m", "lantu.server.cli", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = dt.datetime.now() + dt.timedelta(seconds=90)
        rows = []
        while dt.datetime.now() < deadline and len(rows) < 171:
            with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
                cur.execute("SELECT xzqdm, indicator, value, previous FROM lantu.indicator_snapshots WHERE year = %s",
                            (this_year,))
                rows = cur.fetchall()
            if len(rows) < 171:
                assert proc.poll() is None, "the worker exited"
                time.sleep(1)
        assert len(rows) == 171
        for key, ind, value, previous in rows:  # the data did not change: this year's values are 2025's
            e = truth["years"][YEAR][key][ind]
            assert close(value, e["value"]) and close(previous, e["value"]), (key, ind)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
            cur.execute("DELETE FROM lantu.indicator_snapshots WHERE year = %s", (this_year,))
            cur.execute("DELETE FROM lantu.statistics WHERE year = %s", (this_year,))


def test_cli_targets_checks_every_row_before_storing(settings, small_demo, tmp_path, truth):
    bad = tmp_path / "bad-targets.csv"
    bad.write_text("indicator,xzqdm,target\ncropland_area,430121,1\ngdp,430121,5\n", "utf-8")
    before = counts(settings)
    done = cli(settings, tmp_path, "targets", str(bad))
    assert done.returncode == 1 and "line 3: unknown indicator 'gdp'" in done.stderr
    for text, words in (("cropland_area,430102,1\n", "not the county"), ("cropland_area,430121,lots\n", "number")):
        bad.write_text("indicator,xzqdm,target\n" + text, "utf-8")
        done = cli(settings, tmp_path, "targets", str(bad))
        assert done.returncode == 1 and words in done.stderr, done.stderr
    assert counts(settings) == before
    old = truth["targets"]["forest_area"][COUNTY]
    good = tmp_path / "targets.csv"
    good.write_text("\ufeffindicator,xzqdm,target,source\nforest_area,430121,123.5,规划指标表\n", "utf-8")
    try:
        done = cli(settings, tmp_path, "targets", str(good))
        assert done.returncode == 0 and "1 targets loaded" in done.stdout, done.stderr
        with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
            cur.execute("SELECT target, source FROM lantu.indicator_targets WHERE indicator = 'forest_area' "
                        "AND xzqdm = %s", (COUNTY,))
            assert cur.fetchone() == (123.5, "规划指标表")
    finally:
        with psycopg2.connect(dsn_for(settings)) as conn, conn.cursor() as cur:
            cur.execute("UPDATE lantu.indicator_targets SET target = %s, source = %s WHERE indicator = 'forest_area' "
                        "AND xzqdm = %s", (old, "演示规划指标表 (synthetic)", COUNTY))

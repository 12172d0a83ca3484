"""Real clients against a running ``lantu serve`` (OGC API – Features acceptance, design brief §11).

One ``lantu serve`` (gunicorn, 2 workers) per module, on a free loopback port, over the session database
with the small demo loaded. Then:

1. GDAL's OAPIF driver (``ogrinfo``): the collection list, ``-where`` and ``-spat`` reads; the expected
   features come from SQL on the session pool, and the access log tells how GDAL sent the attribute filter;
2. OWSLib (``owslib.ogcapi.features`` of the main venv, OWSLib 0.28.1);
3. schemathesis against ``/openapi`` (side venv): no 5xx, responses conform to the published schemas;
4. ogctests 0.1.15, core and filtering modules (side venv: it pins pytest < 9, httpx < 0.28, pyarrow < 18):
   every failure must be in ``OGCTESTS_TOOL_MISTAKES`` below, each with its reason;
5. the HTML pages: Chinese titles, Leaflet served by this server only (no CDN), and — where Chromium is
   installed — Leaflet really draws the items map.

Side venvs are made by the test setup (``python -m venv`` + pip from PyPI) and cached under
``$LANTU_TEST_VENVS`` (default ``/var/tmp/lantu-test-venvs``) as ``<name>-<hash of requirements>``; their
first creation is announced on the terminal. The requirement files are in ``tests/clients/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import textwrap
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

CLIENTS = Path(__file__).resolve().parent / "clients"
FARMLAND = "basic_farmland"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"


# ---- helpers -----------------------------------------------------------------------------------------
def sql_rows(pool, statement: str, params=()) -> list[tuple]:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(statement, params)
        return cur.fetchall()


@dataclass
class Server:
    url: str
    log: Path
    process: subprocess.Popen

    def log_offset(self) -> int:
        return self.log.stat().st_size

    def requests_since(self, offset: int, agent: str | None = None) -> list[tuple[str, int]]:
        """(request target, status) of the access-log lines written after ``offset`` (by ``agent`` only)."""
        time.sleep(0.3)  # gunicorn writes the access line just after the response
        with open(self.log, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
        found = []
        for m in re.finditer(r'"GET (\S+) HTTP/1\.[01]" (\d{3}) \S+ "[^"]*" "([^"]*)"', text):
            if agent is None or m[3] == agent:
                found.append((m[1], int(m[2])))
        return found


@pytest.fixture(scope="module")
def server(small_demo, lantu_serve):
    with lantu_serve("serve-clients") as (url, log, process):
        yield Server(url, log, process)


def get_json(url: str, **params) -> dict:
    response = requests.get(url, params=params, headers={"Accept": "application/json"}, timeout=30)
    assert response.status_code == 200, (response.url, response.text[:500])
    return response.json()


# ---- 1. GDAL (OAPIF driver) ---------------------------------------------------------------------------
GDAL_AGENT = "lantu-tests-gdal"


def ogrinfo(server: Server, *args: str) -> str:
    env = dict(os.environ, GDAL_HTTP_USERAGENT=GDAL_AGENT, GDAL_HTTP_TIMEOUT="60", CPL_DEBUG="OFF")
    result = subprocess.run(["ogrinfo", "-ro", *args], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"ogrinfo {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    assert "ERROR" not in result.stderr, result.stderr[-2000:]
    return result.stdout


def ogr_fids(output: str, layer: str) -> list[int]:
    return [int(m) for m in re.findall(rf"^OGRFeature\({layer}\):(\d+)$", output, re.MULTILINE)]


def test_gdal_lists_every_vector_collection(server, registry, anonymous_may):
    out = ogrinfo(server, "-so", f"OAPIF:{server.url}")
    listed = dict(re.findall(r"^\d+: (\w+) \(title: ([^)]*)\)", out, re.MULTILINE))
    visible = anonymous_may("list")  # no credentials: the feature collections anyone may discover and download
    expected = {layer.id: layer.name_zh for layer in registry.vector_layers() if layer.id in visible}
    assert len(registry.vector_layers()) == 73 and len(expected) > 60
    assert {cid for cid in listed if registry.get(cid).is_vector} == set(expected)
    assert listed[FARMLAND] == "永久基本农田"
    assert all(listed[cid] == title for cid, title in expected.items() if "(" not in title)


def test_gdal_where_reads_the_sql_answer(server, pool, announce, record_property):
    expected = [r[0] for r in sql_rows(pool, "SELECT fid FROM blueprint.basic_farmland WHERE dlbm = %s ORDER BY fid",
                                       ("0101",))]
    assert expected, "the small demo has no paddy field (DLBM 0101) in basic_farmland"
    offset = server.log_offset()
    # PAGE_SIZE below the layer's size: GDAL follows the `next` links.
    out = ogrinfo(server, "-oo", "PAGE_SIZE=500", "-geom=SUMMARY", f"OAPIF:{server.url}", FARMLAND,
                  "-where", "DLBM = '0101'")
    assert sorted(ogr_fids(out, FARMLAND)) == expected
    hits = [(target, status) for target, status in server.requests_since(offset, GDAL_AGENT)
            if urlsplit(target).path == f"/collections/{FARMLAND}/items"]
    assert hits and all(status == 200 for _, status in hits), hits
    queries = [parse_qs(urlsplit(target).query) for target, _ in hits]
    if any("filter" in q for q in queries):
        mode = "CQL2 filter (server-side)"
        assert all(q.get("filter-lang", ["cql2-text"]) == ["cql2-text"] for q in queries if "filter" in q)
    elif any("DLBM" in q for q in queries):
        mode = "property=value (server-side)"
    else:
        # GDAL 3.6 sends neither: it pushes an attribute filter down only as query parameters that the
        # OpenAPI document lists on a per-collection items path, and Lantu documents one templated path.
        # It then reads every page and filters itself, which must give the same answer.
        mode = "none sent: GDAL filtered client-side"
        total = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
        assert len(hits) >= total // 500, hits
    record_property("gdal_where_mode", mode)
    announce(f"ogrinfo -where: {mode}; {len(hits)} items requests")


def test_where_forms_gdal_may_send_agree_with_sql(server, pool):
    """The two server-side forms GDAL's OAPIF driver uses (by version and server description)."""
    expected = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland WHERE dlbm = %s", ("0101",))[0][0]
    items = f"{server.url}/collections/{FARMLAND}/items"
    assert get_json(items, DLBM="0101", limit=1)["numberMatched"] == expected
    assert get_json(items, filter="DLBM = '0101'", limit=1)["numberMatched"] == expected
    assert get_json(items, **{"filter": '{"op": "=", "args": [{"property": "DLBM"}, "0101"]}',
                              "filter-lang": "cql2-json", "limit": 1})["numberMatched"] == expected


def test_gdal_spatial_filter_reads_the_sql_answer(server, pool):
    xmin, ymin, xmax, ymax = sql_rows(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                            "(SELECT ST_Extent(geom) e FROM blueprint.basic_farmland) s")[0]
    # The middle of the layer, at coordinates no synthetic vertex sits on.
    box = [round(xmin + (xmax - xmin) * 0.3, 6) + 1.7e-7, round(ymin + (ymax - ymin) * 0.35, 6) + 1.3e-7,
           round(xmin + (xmax - xmin) * 0.65, 6) + 1.1e-7, round(ymin + (ymax - ymin) * 0.7, 6) + 1.9e-7]
    expected = [r[0] for r in sql_rows(
        pool, "SELECT fid FROM blueprint.basic_farmland WHERE ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, "
              "4490)) ORDER BY fid", box)]
    total = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    assert 0 < len(expected) < total
    offset = server.log_offset()
    out = ogrinfo(server, "-oo", "PAGE_SIZE=1000", "-geom=SUMMARY", f"OAPIF:{server.url}", FARMLAND,
                  "-spat", *map(repr, box))
    assert sorted(ogr_fids(out, FARMLAND)) == expected
    hits = [parse_qs(urlsplit(t).query) for t, _ in server.requests_since(offset, GDAL_AGENT)
            if urlsplit(t).path == f"/collections/{FARMLAND}/items"]
    sent = [q["bbox"][0] for q in hits if "bbox" in q]
    assert sent, "GDAL did not send the spatial filter as bbox"
    assert [float(v) for v in sent[-1].split(",")] == pytest.approx(box, abs=1e-9)  # CRS84: lon, lat


# ---- 2. OWSLib (main venv) ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def owslib_features(server):
    from owslib.ogcapi.features import Features

    return Features(server.url, timeout=60)


def test_owslib_discovery(owslib_features, registry, anonymous_may):
    api = owslib_features
    assert "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core" in api.conformance()["conformsTo"]
    vector = {cid for cid in api.feature_collections() if registry.get(cid) and registry.get(cid).is_vector}
    assert vector == anonymous_may("list")
    farmland = api.collection(FARMLAND)
    assert farmland["title"] == "永久基本农田"
    assert farmland["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/4490"
    queryables = api.collection_queryables(FARMLAND)
    assert {"DLBM", "geometry"} <= set(queryables["properties"])
    openapi = api.api()  # found through the landing page's service-desc link
    assert "/collections/{collectionId}/items" in openapi["paths"]


def test_owslib_items_paging_bbox_and_filter(owslib_features, server, pool):
    api = owslib_features
    total = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    first = api.collection_items(FARMLAND, limit=5)
    assert first["numberMatched"] == total and first["numberReturned"] == 5 and len(first["features"]) == 5
    assert [f["properties"]["XZQMC"] for f in first["features"]] and first["features"][0]["geometry"]
    second = api.collection_items(FARMLAND, limit=5, offset=5)
    ids = [f["id"] for f in first["features"] + second["features"]]
    assert ids == [r[0] for r in sql_rows(pool, "SELECT fid FROM blueprint.basic_farmland ORDER BY fid LIMIT 10")]
    lon, lat = sql_rows(pool, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM "
                              "blueprint.basic_farmland ORDER BY fid LIMIT 1) s")[0]
    box = [lon - 0.005, lat - 0.005, lon + 0.005, lat + 0.005]
    in_box = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland WHERE ST_Intersects(geom, "
                            "ST_MakeEnvelope(%s, %s, %s, %s, 4490))", box)[0][0]
    assert api.collection_items(FARMLAND, bbox=box, limit=1)["numberMatched"] == in_box >= 1
    paddy = sql_rows(pool, "SELECT count(*) FROM blueprint.basic_farmland WHERE dlbm = '0101'")[0][0]
    assert api.collection_items(FARMLAND, filter="DLBM = '0101'", limit=1)["numberMatched"] == paddy
    one = api.collection_item(FARMLAND, str(ids[0]))
    assert one["id"] == ids[0] and one["type"] == "Feature"
    with pytest.raises(RuntimeError, match="limit"):  # OWSLib raises the server's 400 text
        api.collection_items(FARMLAND, limit=0)


# ---- 3. schemathesis (side venv) ----------------------------------------------------------------------
def test_schemathesis_finds_no_server_error(server, pool, side_venv, tmp_path):
    python = side_venv("schemathesis")
    fids = [str(r[0]) for r in sql_rows(pool, "SELECT fid FROM blueprint.basic_farmland ORDER BY fid LIMIT 5")]
    config = tmp_path / "schemathesis.toml"
    # Real feature ids for getFeature half of the time, so crs/properties are fuzzed on features that exist.
    config.write_text(textwrap.dedent(f"""\
        [dictionaries.collections]
        values = ["{FARMLAND}"]
        [dictionaries.feature_ids]
        values = {json.dumps(fids)}
        [[operations]]
        include-operation-id = "getFeature"
        parameters = {{ "path.collectionId" = {{ dictionary = "collections", probability = 0.5 }}, \
"path.featureId" = {{ dictionary = "feature_ids", probability = 0.5 }} }}
        """))
    junit = tmp_path / "schemathesis.xml"
    started = time.monotonic()
    result = subprocess.run(
        [str(python), "-m", "schemathesis.cli", "--no-color", "--config-file", str(config), "run",
         f"{server.url}/openapi", "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "40", "--seed", "20261129", "--workers", "2", "--request-timeout", "30",
         "--report", "junit", "--report-junit-path", str(junit), "--report-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    elapsed = time.monotonic() - started
    tree = ET.parse(junit)
    cases = tree.getroot().iter("testcase")
    failed = [(case.get("name"), (child.get("message") or "") + (child.text or ""))
              for case in cases for child in case if child.tag in ("failure", "error")]
    assert not failed, f"schemathesis failures:\n{result.stdout[-6000:]}"
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert re.search(r"\d+ generated, \d+ passed", result.stdout), result.stdout[-3000:]
    assert elapsed < 240


# ---- 4. ogctests (side venv) --------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolMistake:
    test: str      # "<module>::<test>" of the ogctests package
    message: str   # regex the failure text must match: any other failure of the same test is not excused
    reason: str


OGCTESTS_TOOL_MISTAKES = (
    ToolMistake(
        "test_features::test_ast22", r"No features listed at /collections/(?P<empty>\w+)/items",
        "ogctests requires every collection to hold features; an empty collection is valid (Part 1, "
        "/req/core/fc-response allows an empty `features` array). Excused only when SQL confirms the "
        "collection named in the message has no rows."),
    ToolMistake(
        "test_queryables::test_ct2", r"No link with relation \[ogc-rel:queryables\]",
        "ogctests' parse_link_header compares the raw rel parameter, quotes included, with the bare URI, "
        "and RFC 8288 requires a URI relation type to be quoted, so a conforming header never matches (it "
        "also stores the target as 'iri' and reads 'href'). Excused only when Lantu's HEAD "
        "/collections/{id}/items does send rel=\"" + QUERYABLES_REL + "\"."),
    ToolMistake(
        "test_queryables::test_ct3", r"No queryables_uri for collection",
        "ogctests passes state between tests by mutating a fixture: ct3 reads the queryables URI that ct2 "
        "stores only when it passes (and that would be a list of None, see ct2)."),
    ToolMistake(
        "test_queryables_query_parameters::test_ct5", r"KeyError: 'queryable'",
        "reads resource['queryable'], which only a passing ct3 sets (state shared through a fixture)."),
    ToolMistake(
        "test_filter::test_ct7", r"KeyError: 'queryable'",
        "reads resource['queryable'] set only by a passing ct3; it would then send the filter-lang "
        "dictionary itself as the parameter value."),
    ToolMistake(
        "test_filter::test_ct8", r"KeyError: 'queryable'|TypeError: string indices",
        "reads resource['queryable'] set only by a passing ct3, then indexes that string as a dict."),
    ToolMistake(
        "test_filter::test_ct9", r"KeyError: 'additional_properties'",
        "reads resource['additional_properties'] set only by a passing ct3."),
    ToolMistake(
        "test_filter::test_ct10", r"KeyError: 'spatial_queryable'|NameError: name 'CQL2_FILTER_LANG'|KeyError: '",
        "reads resource['spatial_queryable'] set only by a passing ct3; past that it formats a CQL2-JSON "
        "template containing braces with str.format and uses the undefined name CQL2_FILTER_LANG."),
)


def run_ogctests(python: Path, scope: str, server: Server, work: Path) -> list[tuple[str, str]]:
    """Run one ogctests scope (its conftests sort the items by their own numbering, so the scopes cannot
    share a session); return (module::test, failure text) of each failed or errored test."""
    package = Path(subprocess.run([str(python), "-c", "import ogctests, os; print(os.path.dirname(ogctests.__file__))"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    junit = work / f"ogctests-{scope.replace('/', '-')}.xml"
    ini = work / "pytest.ini"
    ini.write_text("[pytest]\n")
    env = dict(os.environ, INSTANCE_URL=server.url)
    env.pop("PYTEST_ADDOPTS", None)
    result = subprocess.run(
        [str(python), "-m", "pytest", str(package / scope), "-c", str(ini), "--rootdir", str(package.parent),
         "-p", "no:cacheprovider", "-q", "--tb=short", "-W", "ignore", f"--junitxml={junit}"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert junit.exists(), f"ogctests {scope} produced no report:\n{result.stdout[-4000:]}\n{result.stderr[-2000:]}"
    root = ET.parse(junit).getroot()
    cases = list(root.iter("testcase"))
    assert cases, f"ogctests {scope} ran no test:\n{result.stdout[-4000:]}"
    failures = []
    for case in cases:
        for child in case:
            if child.tag in ("failure", "error"):
                module = case.get("classname", "").rsplit(".", 1)[-1]
                failures.append((f"{module}::{case.get('name')}", f"{child.get('message') or ''}\n{child.text or ''}"))
    return failures


def link_header_has_queryables(server: Server) -> bool:
    head = requests.head(f"{server.url}/collections/{FARMLAND}/items", headers={"Accept": "application/geo+json"},
                         timeout=30)
    return head.status_code == 200 and f'rel="{QUERYABLES_REL}"' in head.headers.get("Link", "")


def unexcused(failures: list[tuple[str, str]], server: Server, pool, registry) -> list[str]:
    from psycopg2 import sql

    tables = {layer.id: layer.table for layer in registry.vector_layers()}
    problems = []
    for test, text in failures:
        for mistake in OGCTESTS_TOOL_MISTAKES:
            match = re.search(mistake.message, text) if mistake.test == test else None
            if match is None:
                continue
            empty = match.groupdict().get("empty")
            if empty is not None:
                if empty not in tables:
                    continue
                statement = sql.SQL("SELECT count(*) FROM blueprint.{}").format(sql.Identifier(tables[empty]))
                if sql_rows(pool, statement)[0][0] != 0:
                    continue
            if test.endswith("::test_ct2") and not link_header_has_queryables(server):
                continue
            break
        else:
            problems.append(f"{test}: {text.strip()[:1200]}")
    return problems


@pytest.fixture(scope="module")
def ogctests_python(side_venv):
    return side_venv("ogctests")


@pytest.mark.parametrize("scope", ["features/core", "features/filtering"])
def test_ogctests(scope, ogctests_python, server, pool, registry, tmp_path):
    failures = run_ogctests(ogctests_python, scope, server, tmp_path)
    problems = unexcused(failures, server, pool, registry)
    assert not problems, "ogctests failures that are not documented tool mistakes:\n\n" + "\n\n".join(problems)


def test_tool_mistake_list_is_documented():
    for mistake in OGCTESTS_TOOL_MISTAKES:
        assert re.fullmatch(r"test_\w+::test_(ast|ct)\d+", mistake.test)
        re.compile(mistake.message)
        assert len(mistake.reason) > 40


# ---- 5. HTML ------------------------------------------------------------------------------------------
class Assets(HTMLParser):
    """Every URL a page makes the browser load: script src, link href, img/iframe/source src."""

    def __init__(self):
        super().__init__()
        self.scripts: list[str] = []
        self.links: list[str] = []
        self.other: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = True
            if attrs.get("src"):
                self.scripts.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.links.append(attrs["href"])
        elif tag in ("img", "iframe", "source", "embed", "audio", "video") and attrs.get("src"):
            self.other.append(attrs["src"])

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.inline.append(data)


def html_page(url: str) -> tuple[str, Assets]:
    response = requests.get(url, headers={"Accept": "text/html"}, timeout=30)
    assert response.status_code == 200, (url, response.text[:500])
    assert response.headers["Content-Type"].startswith("text/html"), response.headers["Content-Type"]
    response.encoding = "utf-8"
    parser = Assets()
    parser.feed(response.text)
    return response.text, parser


def foreign(urls: list[str], server: Server) -> list[str]:
    own = urlsplit(server.url).netloc
    return [u for u in urls if (urlsplit(u).netloc or own) != own or u.startswith("//")]


def test_html_pages_show_chinese_titles(server, pool):
    text, _ = html_page(f"{server.url}/collections?f=html")
    assert "永久基本农田" in text and 'charset="utf-8"' in text.lower().replace("'", '"')
    text, _ = html_page(f"{server.url}/collections/{FARMLAND}?f=html")
    assert "永久基本农田" in text
    text, _ = html_page(f"{server.url}/?f=html")
    assert "蓝图" in text and "永久基本农田" in text
    fid = sql_rows(pool, "SELECT min(fid) FROM blueprint.basic_farmland")[0][0]
    text, _ = html_page(f"{server.url}/collections/{FARMLAND}/items/{fid}?f=html")
    assert "永久基本农田" in text


def test_html_loads_leaflet_from_this_server_only(server, pool):
    fid = sql_rows(pool, "SELECT min(fid) FROM blueprint.basic_farmland")[0][0]
    pages = ["/", "/collections", f"/collections/{FARMLAND}", f"/collections/{FARMLAND}/items?limit=5",
             f"/collections/{FARMLAND}/items/{fid}", f"/collections/{FARMLAND}/queryables", "/conformance",
             "/openapi"]
    leaflet_js = "/static/vendor/leaflet/leaflet.js"
    for page in pages:
        _, assets = html_page(f"{server.url}{page}{'&' if '?' in page else '?'}f=html")
        assert not foreign(assets.scripts + assets.links + assets.other, server), page
        for script in assets.inline:
            assert not re.search(r"https?://(?!127\.0\.0\.1[:/])", script), (page, script[:300])
        if "/items" in page:
            assert any(urlsplit(s).path == leaflet_js for s in assets.scripts), (page, assets.scripts)
            assert any(urlsplit(h).path == "/static/vendor/leaflet/leaflet.css" for h in assets.links), page
        for url in assets.scripts + assets.links:
            response = requests.get(requests.compat.urljoin(f"{server.url}{page}", url), timeout=30)
            assert response.status_code == 200 and response.content, (page, url, response.status_code)


def test_leaflet_is_served(server):
    response = requests.get(f"{server.url}/static/vendor/leaflet/leaflet.js", timeout=30)
    assert response.status_code == 200, (
        "Leaflet is not installed: `make install` puts it under server/static/vendor/leaflet/ from npm")
    assert "javascript" in response.headers["Content-Type"]
    assert b"Leaflet" in response.content[:400] and len(response.content) > 100_000
    css = requests.get(f"{server.url}/static/vendor/leaflet/leaflet.css", timeout=30)
    assert css.status_code == 200 and ".leaflet-container" in css.text


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium_binary() is None, reason="headless Chromium not installed (Debian package chromium)")
def test_items_map_draws_in_headless_chromium(server, tmp_path):
    """Leaflet really runs: the map div becomes a Leaflet container with one SVG path per feature."""
    result = subprocess.run(
        [chromium_binary(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000", "--dump-dom",
         f"{server.url}/collections/{FARMLAND}/items?f=html&limit=5"],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert "leaflet-container" in dom, (result.returncode, dom[-2000:], result.stderr[-2000:])
    assert not re.search(r'<div id="map"[^>]*>[^<]*Leaflet not installed', dom), dom[-2000:]
    assert len(re.findall(r"<path[^>]*leaflet-interactive", dom)) == 5, dom[-3000:]

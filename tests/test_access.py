"""Access control over every protocol (issue 8) against a real ``lantu serve``: identities × layers of each
policy level × protocols, view-only layers, row filters, Part 4 edits with optimistic locking, audit and
access logs, headers. The expectations come from config/policy.yaml as written there, not from Lantu's code.

Identities: anonymous, a wrong API key, an expired OIDC token, department A (API key made with
``lantu accounts create``: emergency management + planning editor, own town), department B (an OIDC token
from a locally generated issuer key: water resources), admin (API key).
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import subprocess
import sys
import time

import jwt
import mapbox_vector_tile
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree

PUBLIC, VIEW_ONLY, RESTRICTED, AUTH_VIEW = "basic_farmland", "flood_detention_areas", "hazchem_enterprises", \
    "key_polluters"
ISSUER = "https://sso.example.gov.cn/realms/county"
WHO = ("anonymous", "wrong_key", "expired_token", "dept_a", "dept_b", "admin")
BAD = {"wrong_key", "expired_token"}
# Who may do what, read off config/policy.yaml (A: role emergency + planning_editor; B: role water).
ALLOWED = {
    (PUBLIC, "discover"): {"anonymous", "dept_a", "dept_b", "admin"},
    (PUBLIC, "view"): {"anonymous", "dept_a", "dept_b", "admin"},
    (PUBLIC, "download"): {"anonymous", "dept_a", "dept_b", "admin"},
    (VIEW_ONLY, "discover"): {"anonymous", "dept_a", "dept_b", "admin"},
    (VIEW_ONLY, "view"): {"anonymous", "dept_a", "dept_b", "admin"},
    (VIEW_ONLY, "download"): {"dept_b", "admin"},
    (RESTRICTED, "discover"): {"dept_a", "admin"},
    (RESTRICTED, "view"): {"dept_a", "admin"},
    (RESTRICTED, "download"): {"dept_a", "admin"},
    (AUTH_VIEW, "discover"): {"dept_a", "dept_b", "admin"},
    (AUTH_VIEW, "view"): {"dept_a", "dept_b", "admin"},
    (AUTH_VIEW, "download"): {"admin"},
}
LAYERS = (PUBLIC, VIEW_ONLY, RESTRICTED, AUTH_VIEW)


def rows(pool, query, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


@pytest.fixture(scope="module")
def issuer_key(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update(kid="test-1", use="sig", alg="RS256")
    path = tmp_path_factory.mktemp("oidc") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, path


def token(key, *, roles, exp_in: float, sub: str = "zhang.san", **claims) -> str:
    now = int(time.time())
    return jwt.encode({"iss": ISSUER, "sub": sub, "aud": "lantu", "iat": now, "exp": now + int(exp_in),
                       "roles": roles, **claims}, key, algorithm="RS256", headers={"kid": "test-1"})


def cli(settings, settings_file, *args) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTU_")}
    env.update(LANTU_HOME=str(settings.home), LANTU_SETTINGS=str(settings_file))
    out = subprocess.run([sys.executable, "-m", "lantu.server.cli", *args], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def town_a(pool, small_demo) -> str:
    """A town that has hazard sources, and at least one other town that has some too (row filter)."""
    counts = rows(pool, "SELECT xzqdm, count(*) FROM blueprint.hazard_sources GROUP BY xzqdm ORDER BY 2 DESC")
    assert len(counts) >= 2, "the small demo needs hazard sources in two towns"
    return counts[0][0]


@pytest.fixture(scope="module")
def server(lantu_serve, small_demo, issuer_key, settings, tmp_path_factory):
    extra = (f"oidc_issuers:\n  - {{issuer: \"{ISSUER}\", audience: lantu, jwks_file: \"{issuer_key[1]}\"}}\n"
             "cors_origins: [\"http://127.0.0.1:9999\"]\n")
    with lantu_serve("access", extra) as (url, log, _proc):
        yield url, log


@pytest.fixture(scope="module")
def headers(server, settings, tmp_path_factory, issuer_key, town_a) -> dict[str, dict]:
    work = tmp_path_factory.mktemp("accounts")
    settings_file = work / "settings.yaml"
    settings_file.write_text(f"pg_port: {settings.pg_port}\n")
    stamp = str(time.time_ns())
    out_a = cli(settings, settings_file, "accounts", "create", f"dept-a-{stamp}", "--title", "县应急管理局",
                "--role", "emergency", "--role", "planning_editor", "--attr", f"xzqdm={town_a}")
    out_admin = cli(settings, settings_file, "accounts", "create", f"admin-{stamp}", "--role", "admin")
    key_a = re.search(r"(lantu_\w+_\S+)", out_a)[1]
    key_admin = re.search(r"(lantu_\w+_\S+)", out_admin)[1]
    listed = cli(settings, settings_file, "accounts", "list")
    assert f"dept-a-{stamp}" in listed and key_a not in listed  # keys are shown once, never listed
    key = issuer_key[0]
    return {
        "anonymous": {},
        "wrong_key": {"X-API-Key": "lantu_00000000_" + "x" * 43},
        "expired_token": {"Authorization": "Bearer " + token(key, roles=["water"], exp_in=-60)},
        "dept_a": {"X-API-Key": key_a},
        "dept_b": {"Authorization": "Bearer " + token(key, roles=["water"], exp_in=3600)},
        "admin": {"X-API-Key": key_admin},
    }


def expected_status(layer: str, action: str, who: str) -> int:
    if who in BAD:
        return 401
    if who in ALLOWED[(layer, action)]:
        return 200
    return 401 if who == "anonymous" else 403


def one_point(pool, layer: str) -> tuple[float, float]:
    return rows(pool, f"SELECT ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom)) FROM blueprint.{layer} "
                      "ORDER BY fid LIMIT 1")[0]


def web_tile(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return x, y


def requests_for(url: str, pool, layer: str) -> dict[str, tuple[str, str]]:
    """protocol cell → (action, URL) for one layer."""
    lon, lat = one_point(pool, layer)
    x, y = web_tile(lon, lat, 14)
    d = 0.002
    bbox = f"{lat - d},{lon - d},{lat + d},{lon + d}"  # WMS 1.3.0 EPSG:4490: lat/lon
    wms = f"{url}/wms?SERVICE=WMS&VERSION=1.3.0&CRS=EPSG:4490&BBOX={bbox}&WIDTH=64&HEIGHT=64&STYLES="
    return {
        "ogcapi-collection": ("discover", f"{url}/collections/{layer}?f=json"),
        "ogcapi-items": ("download", f"{url}/collections/{layer}/items?limit=2"),
        "ogcapi-tile": ("view", f"{url}/collections/{layer}/tiles/WebMercatorQuad/14/{y}/{x}"),
        "wms-getmap": ("view", f"{wms}&REQUEST=GetMap&LAYERS={layer}&FORMAT=image/png"),
        "wms-getfeatureinfo": ("view", f"{wms}&REQUEST=GetFeatureInfo&LAYERS={layer}&QUERY_LAYERS={layer}"
                                       "&I=32&J=32&INFO_FORMAT=text/plain"),
        "wms-legend": ("view", f"{url}/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetLegendGraphic&LAYER={layer}"
                               "&FORMAT=image/png&SLD_VERSION=1.1.0"),
        "wfs-getfeature": ("download", f"{url}/wfs?SERVICE=WFS&VERSION=2.0.0&REQUEST=GetFeature"
                                       f"&TYPENAMES=lantu:{layer}&COUNT=2"),
        "wmts-gettile": ("view", f"{url}/wmts?SERVICE=WMTS&VERSION=1.0.0&REQUEST=GetTile&LAYER={layer}&STYLE=default"
                                 f"&TILEMATRIXSET=WebMercatorQuad&TILEMATRIX=14&TILEROW={y}&TILECOL={x}"
                                 "&FORMAT=image/png"),
    }


def check_denial(cell: str, resp: requests.Response, status: int) -> None:
    """A denial in the protocol's own exception format."""
    assert resp.status_code == status, (cell, resp.status_code, resp.text[:300])
    if cell.startswith("ogcapi"):
        assert resp.headers["Content-Type"].startswith("application/problem+json")
        assert resp.json()["status"] == status
    elif cell.startswith("wms"):
        root = etree.fromstring(resp.content)
        assert etree.QName(root).localname == "ServiceExceptionReport", resp.text[:200]
    else:
        root = etree.fromstring(resp.content)
        assert etree.QName(root).localname == "ExceptionReport", resp.text[:200]
    if status == 401:
        assert "WWW-Authenticate" in resp.headers


def test_matrix_protocols_levels_identities(server, headers, pool):
    url, _log = server
    failures = []
    for layer in LAYERS:
        for cell, (action, target) in requests_for(url, pool, layer).items():
            for who in WHO:
                resp = requests.get(target, headers=headers[who], timeout=60)
                want = expected_status(layer, action, who)
                if want == 200:
                    ok = resp.status_code in (200, 204) and "ExceptionReport" not in resp.text[:500]
                    if not ok:
                        failures.append((layer, cell, who, resp.status_code, resp.text[:200]))
                else:
                    try:
                        check_denial(cell, resp, want)
                    except AssertionError as exc:
                        failures.append((layer, cell, who, resp.status_code, str(exc)[:200]))
    assert not failures, "\n".join(map(str, failures))


def _names_in(doc: bytes, element: str, key: str) -> set[str]:
    root = etree.fromstring(doc)
    out = set()
    for node in root.iter(etree.Element):
        if etree.QName(node).localname == element:
            for child in node.iterchildren(etree.Element):
                if etree.QName(child).localname == key and child.text:
                    out.add(child.text.split(":", 1)[-1])
    return out


def test_lists_show_only_what_the_caller_may_use(server, headers):
    """Collections, WMS/WFS/WMTS capabilities and the blueprint tileset list a layer only for callers
    allowed to discover / view / download it."""
    url, _log = server
    # Two passes: the second is answered from the per-role capabilities cache and must not mix roles up.
    for who in [w for w in WHO if w not in BAD] * 2:
        h = headers[who]
        collections = {c["id"] for c in requests.get(f"{url}/collections?f=json", headers=h, timeout=30)
                       .json()["collections"]}
        wms = _names_in(requests.get(f"{url}/wms?SERVICE=WMS&REQUEST=GetCapabilities&VERSION=1.3.0", headers=h,
                                     timeout=60).content, "Layer", "Name")
        wfs = _names_in(requests.get(f"{url}/wfs?SERVICE=WFS&REQUEST=GetCapabilities&VERSION=2.0.0", headers=h,
                                     timeout=60).content, "FeatureType", "Name")
        wmts = _names_in(requests.get(f"{url}/wmts/1.0.0/WMTSCapabilities.xml", headers=h, timeout=60).content,
                         "Layer", "Identifier")
        tilejson = requests.get(f"{url}/tiles/blueprint/WebMercatorQuad?f=tilejson", headers=h, timeout=30).json()
        blueprint = {v["id"] for v in tilejson["vector_layers"]}
        for layer in LAYERS:
            # /collections lists feature collections: discoverable and downloadable (a view-only layer keeps
            # its collection page and tiles, but feature clients walking the list would fail on its items)
            assert (layer in collections) == (who in ALLOWED[(layer, "discover")] & ALLOWED[(layer, "download")]), \
                (who, layer, "collections")
            assert (layer in wms) == (who in ALLOWED[(layer, "view")]), (who, layer, "wms")
            assert (layer in wmts) == (who in ALLOWED[(layer, "view")]), (who, layer, "wmts")
            assert (layer in blueprint) == (who in ALLOWED[(layer, "view")]), (who, layer, "blueprint")
            assert (layer in wfs) == (who in ALLOWED[(layer, "download")]), (who, layer, "wfs")


def test_blueprint_tile_holds_a_restricted_layer_only_for_those_allowed(server, headers, pool):
    url, _log = server
    lon, lat = one_point(pool, RESTRICTED)
    x, y = web_tile(lon, lat, 14)
    for who in ("anonymous", "dept_b", "dept_a", "admin"):
        resp = requests.get(f"{url}/tiles/blueprint/WebMercatorQuad/14/{y}/{x}", headers=headers[who], timeout=60)
        assert resp.status_code in (200, 204)
        layers = set(mapbox_vector_tile.decode(resp.content)) if resp.status_code == 200 else set()
        assert (RESTRICTED in layers) == (who in ALLOWED[(RESTRICTED, "view")]), (who, sorted(layers))


def test_getfeatureinfo_of_a_restricted_layer_through_the_root_layer_is_refused(server, headers, pool):
    """Asking for the map's root layer (which draws everything) needs rights to every layer."""
    url, _log = server
    lon, lat = one_point(pool, RESTRICTED)
    bbox = f"{lat - 0.001},{lon - 0.001},{lat + 0.001},{lon + 0.001}"
    target = (f"{url}/wms?SERVICE=WMS&VERSION=1.3.0&REQUEST=GetFeatureInfo&LAYERS=lantu&QUERY_LAYERS=lantu"
              f"&CRS=EPSG:4490&BBOX={bbox}&WIDTH=64&HEIGHT=64&I=32&J=32&INFO_FORMAT=text/plain&STYLES=")
    check_denial("wms", requests.get(target, headers=headers["dept_b"], timeout=30), 403)
    check_denial("wms", requests.get(target, timeout=30), 401)


def test_view_only_layer_cannot_be_downloaded_through_a_process(server, headers, truth_sites):
    url, _log = server
    body = {"inputs": {"layers": [VIEW_ONLY, PUBLIC], "min_area": 0}}
    for who in ("anonymous", "dept_a", "dept_b", "admin"):
        resp = requests.post(f"{url}/processes/conflict-check/execution", json=body, headers={
            **headers[who], "Prefer": "respond-sync"}, timeout=120)
        want = expected_status(VIEW_ONLY, "download", who)
        if want == 200:
            assert resp.status_code == 200, resp.text[:300]
        else:
            check_denial("ogcapi", resp, want)
    # control-line-check: the view-only layer is checked (overlap, share) but its features are not listed
    site = next(s for s in truth_sites if s["layers"][VIEW_ONLY]["intersects"] or
                s["layers"][VIEW_ONLY]["distance_m"] is not None)
    for who, listed in (("anonymous", False), ("dept_b", True)):
        resp = requests.post(f"{url}/processes/control-line-check/execution", json={"inputs": {
            "site": site["geometry"], "buffer_m": 100000}}, headers={**headers[who], "Prefer": "respond-sync"},
            timeout=120)
        entry = resp.json()["layers"][VIEW_ONLY]
        assert entry["intersects"] == site["layers"][VIEW_ONLY]["intersects"]
        assert ("features_withheld" not in entry) == listed, (who, entry)
        if listed:
            assert entry["features"] or entry["nearby"]
        else:
            assert entry["features"] == [] and entry["nearby"] == [] and entry["features_withheld"] > 0


@pytest.fixture(scope="module")
def truth_sites(small_demo) -> list[dict]:
    from pathlib import Path

    return json.loads(Path(small_demo["truth"]).read_text("utf-8"))["project_sites"]


def test_row_filter_shows_an_account_its_own_town_only(server, headers, pool, town_a):
    url, _log = server
    target = f"{url}/collections/hazard_sources/items?limit=1000"
    mine = requests.get(target, headers=headers["dept_a"], timeout=30).json()
    everything = requests.get(target, headers=headers["admin"], timeout=30).json()
    expected = rows(pool, "SELECT count(*) FROM blueprint.hazard_sources WHERE xzqdm = %s", (town_a,))[0][0]
    assert mine["numberMatched"] == expected > 0
    assert {f["properties"]["XZQDM"] for f in mine["features"]} == {town_a}
    assert everything["numberMatched"] > expected
    other = next(f for f in everything["features"] if f["properties"]["XZQDM"] != town_a)
    assert requests.get(f"{url}/collections/hazard_sources/items/{other['id']}", headers=headers["dept_a"],
                        timeout=30).status_code == 404
    assert requests.get(f"{url}/collections/hazard_sources/items/{other['id']}", headers=headers["admin"],
                        timeout=30).status_code == 200


def test_jobs_are_private_to_their_caller(server, headers):
    url, _log = server
    resp = requests.post(f"{url}/processes/ledger/execution", json={"inputs": {"layer": PUBLIC}},
                         headers={**headers["dept_a"], "Prefer": "respond-async"}, timeout=30)
    job = resp.headers["Location"]
    assert requests.get(job, headers=headers["dept_a"], timeout=10).status_code == 200
    assert requests.get(job, headers=headers["admin"], timeout=10).status_code == 200
    assert requests.get(job, headers=headers["dept_b"], timeout=10).status_code == 404
    assert requests.get(job, timeout=10).status_code == 404
    assert requests.delete(job, headers=headers["dept_b"], timeout=10).status_code == 404
    listed = requests.get(f"{url}/jobs?limit=1000", headers=headers["dept_b"], timeout=10).json()["jobs"]
    assert job.rsplit("/", 1)[1] not in {j["jobID"] for j in listed}
    requests.delete(job, headers=headers["dept_a"], timeout=10)


# ---- Part 4 -----------------------------------------------------------------------------------------------------
def _square(lon: float, lat: float, d: float = 0.0005) -> dict:
    return {"type": "Polygon", "coordinates": [[[lon, lat], [lon + d, lat], [lon + d, lat + d], [lon, lat + d],
                                                [lon, lat]]]}


def test_part4_edits_round_trip_with_optimistic_locking(server, headers, pool):
    url, _log = server
    items = f"{url}/collections/{PUBLIC}/items"
    first = requests.get(items, params={"limit": 1}, timeout=30).json()["features"][0]
    lon, lat = one_point(pool, PUBLIC)
    props = dict(first["properties"], BSM="430121000099990001")
    feature = {"type": "Feature", "properties": props, "geometry": _square(lon, lat)}
    # no rights: anonymous 401, department B (no planning_editor role) 403 — nothing written
    before = rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0]
    check_denial("ogcapi", requests.post(items, json=feature, timeout=30), 401)
    check_denial("ogcapi", requests.post(items, json=feature, headers=headers["dept_b"], timeout=30), 403)
    # invalid geometry: 400 naming it, nothing written
    bowtie = dict(feature, geometry={"type": "Polygon", "coordinates": [[[lon, lat], [lon + 0.001, lat + 0.001],
                                                                          [lon + 0.001, lat], [lon, lat + 0.001],
                                                                          [lon, lat]]]})
    resp = requests.post(items, json=bowtie, headers=headers["dept_a"], timeout=30)
    assert resp.status_code == 400 and "Self-intersection" in resp.json()["detail"]
    bad_code = dict(feature, properties=dict(props, DLBM="9999"))
    resp = requests.post(items, json=bad_code, headers=headers["dept_a"], timeout=30)
    assert resp.status_code == 400 and "DLBM" in resp.json()["detail"]
    assert rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0] == before
    # create
    resp = requests.post(items, json=feature, headers=headers["dept_a"], timeout=30)
    assert resp.status_code == 201, resp.text
    location, tag = resp.headers["Location"], resp.headers["ETag"]
    got = requests.get(location, timeout=30)
    assert got.headers["ETag"] == tag and got.json()["properties"]["BSM"] == "430121000099990001"
    # update with the right version; then the old version is stale: 412 and nothing changes
    resp = requests.patch(location, json={"type": "Feature", "properties": {"DLBM": "0102", "DLMC": "水浇地"}},
                          headers={**headers["dept_a"], "If-Match": tag}, timeout=30)
    assert resp.status_code == 200 and resp.headers["ETag"] != tag
    new_tag = resp.headers["ETag"]
    resp = requests.put(location, json=feature, headers={**headers["dept_a"], "If-Match": tag}, timeout=30)
    assert resp.status_code == 412
    assert requests.get(location, timeout=30).json()["properties"]["DLBM"] == "0102"
    # replace (geometry moved), then delete with the current version
    moved = dict(feature, geometry=_square(lon + 0.001, lat))
    resp = requests.put(location, json=moved, headers={**headers["dept_a"], "If-Match": new_tag}, timeout=30)
    assert resp.status_code == 200
    fid = int(location.rsplit("/", 1)[1])
    audit = rows(pool, "SELECT operation, who, before IS NOT NULL, after IS NOT NULL FROM lantu.audit_log "
                       "WHERE layer = %s AND fid = %s ORDER BY id", (PUBLIC, fid))
    assert [a[0] for a in audit] == ["create", "update", "replace"] and all(a[1].startswith("dept-a-") for a in audit)
    assert audit[1][2:] == (True, True)
    resp = requests.delete(location, headers={**headers["dept_a"], "If-Match": resp.headers["ETag"]}, timeout=30)
    assert resp.status_code == 204
    assert requests.get(location, timeout=30).status_code == 404
    assert rows(pool, "SELECT count(*) FROM blueprint.basic_farmland")[0][0] == before
    changes = rows(pool, "SELECT operation FROM lantu.change_log WHERE layer = %s AND details->>'fid' = %s "
                         "ORDER BY id", (PUBLIC, str(fid)))
    assert [c[0] for c in changes] == ["edit", "edit", "edit", "delete"]
    # the layer's catalog record follows the edits (its lineage names the last change and who made it)
    deadline = time.monotonic() + 10
    while True:  # the catalog reads the change log at most once a second
        lineage = _record_lineage(url, headers["admin"], PUBLIC)
        if "operation delete, by dept-a-" in lineage or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "operation delete, by dept-a-" in lineage, lineage


def _record_lineage(url: str, admin: dict, layer: str) -> str:
    answer = requests.get(f"{url}/csw", headers=admin, timeout=60, params={
        "service": "CSW", "version": "2.0.2", "request": "GetRecordById", "id": f"urn:lantu:430121:layer:{layer}",
        "outputschema": "http://www.isotc211.org/2005/gmd", "elementsetname": "full"})
    assert answer.status_code == 200, answer.text[:300]
    root = etree.fromstring(answer.content, etree.XMLParser(resolve_entities=False, no_network=True))
    ns = {"gmd": "http://www.isotc211.org/2005/gmd", "gco": "http://www.isotc211.org/2005/gco"}
    return root.findtext(".//gmd:lineage//gmd:statement/gco:CharacterString", namespaces=ns) or ""


def test_part4_edit_refreshes_the_cached_tiles_of_the_area(server, headers, pool):
    url, _log = server
    lon, lat = one_point(pool, PUBLIC)
    x, y = web_tile(lon, lat, 15)
    tile = f"{url}/collections/{PUBLIC}/tiles/WebMercatorQuad/15/{y}/{x}"
    requests.get(tile, timeout=30)
    cached = requests.get(tile, timeout=30)
    assert cached.headers["X-Lantu-Cache"] == "hit"
    items = f"{url}/collections/{PUBLIC}/items"
    first = requests.get(items, params={"limit": 1}, timeout=30).json()["features"][0]
    feature = {"type": "Feature", "properties": dict(first["properties"], BSM="430121000099990002"),
               "geometry": _square(lon, lat, 0.0002)}
    resp = requests.post(items, json=feature, headers=headers["dept_a"], timeout=30)
    assert resp.status_code == 201
    try:
        deadline = time.monotonic() + 10
        while True:
            fresh = requests.get(tile, timeout=30)
            if fresh.headers["X-Lantu-Cache"] == "miss":
                break
            assert time.monotonic() < deadline, "the edited area's tile stayed cached"
            time.sleep(0.3)
        bsms = {f["properties"].get("BSM") for f in mapbox_vector_tile.decode(fresh.content)[PUBLIC]["features"]}
        assert "430121000099990002" in bsms
    finally:
        requests.delete(resp.headers["Location"], headers=headers["dept_a"], timeout=30)


# ---- audit, headers, limits -------------------------------------------------------------------------------------
def test_access_log_records_who_read_which_layer(server, headers, pool):
    url, _log = server
    marker = f"/collections/{AUTH_VIEW}/items"
    requests.get(f"{url}{marker}?limit=1", headers=headers["admin"], timeout=30)
    deadline = time.monotonic() + 10
    while True:
        found = rows(pool, "SELECT who, protocol, action, layers, status FROM lantu.access_log WHERE path = %s "
                           "AND who LIKE 'admin-%%' ORDER BY id DESC LIMIT 1", (marker,))
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert found and found[0][1:] == ("OGCAPI", "download", [AUTH_VIEW], 200)


def test_api_keys_never_reach_the_logs(server, headers):
    url, log = server
    key = headers["admin"]["X-API-Key"]
    requests.get(f"{url}/wms?SERVICE=WMS&REQUEST=GetCapabilities&api_key={key}", timeout=30)
    time.sleep(0.5)
    text = log.read_text("utf-8", "replace")
    assert "api_key=***" in text and key not in text


def test_security_headers_and_cors(server):
    url, _log = server
    resp = requests.get(f"{url}/collections?f=json", headers={"Origin": "http://127.0.0.1:9999"}, timeout=30)
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert resp.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:9999"
    other = requests.get(f"{url}/collections?f=json", headers={"Origin": "http://evil.example"}, timeout=30)
    assert "Access-Control-Allow-Origin" not in other.headers


def test_rate_limiter():
    from lantu.server.policy import RateLimiter

    limiter = RateLimiter(120)  # 2 a second, bursts of 120
    assert all(limiter.take("a") == 0 for _ in range(120))
    wait = limiter.take("a")
    assert 0 < wait <= 0.5 + 1e-6
    assert limiter.take("b") == 0  # per caller


def test_revoked_key_stops_working(server, settings, tmp_path):
    url, _log = server
    from lantu.providers.accounts import create_account, create_key, revoke_key
    from lantu.providers.pool import get_pool

    pool = get_pool(settings)
    account = create_account(pool, f"temp-{time.time_ns()}", roles=["emergency"])
    key = create_key(pool, account)
    target = f"{url}/collections/{RESTRICTED}/items?limit=1"
    assert requests.get(target, headers={"X-API-Key": key}, timeout=30).status_code == 200
    assert revoke_key(pool, key.split("_")[1])
    deadline = time.monotonic() + 40  # servers cache a key's account for 30 s
    while requests.get(target, headers={"X-API-Key": key}, timeout=30).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key still works"
        time.sleep(1)


def test_policy_file_errors_name_the_entry(registry, tmp_path):
    from lantu.config.policy import PolicyError, load_policy

    cases = {"layers: {no_such_layer: {view: [public]}}": "layers.no_such_layer",
             "groups: {planning: {view: [everyone]}}": "groups.planning.view",
             "layers: {basic_farmland: {peek: [public]}}": "unknown action",
             "layers: {hazard_sources: {row_filter: {field: NOPE, attribute: x}}}": "row_filter"}
    for text, words in cases.items():
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        with pytest.raises(PolicyError, match=re.escape(words)):
            load_policy(registry, path)


def test_bearer_token_of_an_untrusted_issuer_is_refused(server, headers):
    url, _log = server
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = token(other, roles=["admin"], exp_in=600)  # right issuer name, wrong key
    resp = requests.get(f"{url}/collections/{RESTRICTED}?f=json", headers={"Authorization": f"Bearer {forged}"},
                        timeout=30)
    check_denial("ogcapi", resp, 401)
    garbage = base64.b64encode(b"not a token").decode()
    check_denial("ogcapi", requests.get(f"{url}/collections?f=json", headers={"Authorization": f"Bearer {garbage}"},
                                        timeout=30), 401)


def test_tokens_verified_against_an_issuers_jwks_endpoint(settings, issuer_key, tmp_path):
    """An issuer configured by its JWKS URL (as Keycloak and other OIDC servers publish it): the keys are
    fetched from there; a token signed by another key is refused."""
    import http.server
    import threading

    from lantu.config.settings import load_settings
    from lantu.server.identity import BadCredentials, IdentityResolver

    jwks = issuer_key[1].read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(jwks)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_port}/realms/county/protocol/openid-connect/certs"
        configured = load_settings(overrides={"home": str(settings.home), "pg_port": settings.pg_port,
                                              "oidc_issuers": [{"issuer": ISSUER, "audience": "lantu",
                                                                "jwks_url": url}]}, environ={})
        resolver = IdentityResolver(configured, lambda: None)
        good = token(issuer_key[0], roles=["water"], exp_in=600, xzqdm="430121104000")
        who = resolver.resolve({"Authorization": f"Bearer {good}"}, {})
        assert who.authenticated and who.roles == frozenset({"water"}) and who.attributes == {"xzqdm": "430121104000"}
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with pytest.raises(BadCredentials):
            resolver.resolve({"Authorization": "Bearer " + token(other, roles=["admin"], exp_in=600)}, {})
    finally:
        httpd.shutdown()

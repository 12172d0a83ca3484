"""The 一张蓝图 viewer (``/viewer``) in Debian's Chromium, driven by playwright-core (``tests/viewer_driver.js``,
installed from npm by ``make install``; no browser download).

The driver only acts and reports what the page shows; the expectations here come from the registry (style
colours, 中文 names), the demo truth (the planted site P5 inside the 生态保护红线 and the red-line feature it
lies in, the towns) and Lantu's own endpoints (the process outputs and the access gate's answers). Any request
the page makes to an address outside 127.0.0.1 fails the test.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
import requests
import yaml
from PIL import Image
from shapely.geometry import box, shape

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "viewer_driver.js"
RED_LINE = "eco_red_line"
SITE = "P5"  # the planted project site inside the ecological protection red line
TOWN_CODE = "430121004000"  # 㮾梨街道 (U+3BBE)


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))


def _centre_pixel(png: str) -> tuple[int, int, int]:
    with Image.open(png) as img:
        return img.convert("RGB").getpixel((1, 1))


def _zipped_shapefile(geometry: dict, work: Path) -> Path:
    """The site as a zipped Shapefile in EPSG:4547 (the county's Gauss-Krüger zone), as a planner would upload it."""
    import pyogrio
    import shapely

    folder = work / "shp"
    folder.mkdir()
    pyogrio.raw.write(str(folder / "site.shp"), geometry=[shapely.to_wkb(shape(geometry))], field_data=[], fields=[],
                      crs="EPSG:4547", driver="ESRI Shapefile", geometry_type="Polygon")
    target = work / "site.zip"
    with zipfile.ZipFile(target, "w") as zf:
        for part in folder.iterdir():
            zf.write(part, part.name)
    return target


def _role_with_view_rights(registry) -> tuple[str, str]:
    """A role of config/policy.yaml that may view a vector layer anonymous callers may not: (role, layer)."""
    policy = yaml.safe_load((REPO / "config" / "policy.yaml").read_text())
    for layer_id, rules in (policy.get("layers") or {}).items():
        layer = registry.get(layer_id)
        roles = [g[5:] for g in rules.get("view", []) if g.startswith("role:")]
        if layer is not None and layer.is_vector and roles:
            return roles[0], layer_id
    pytest.fail("config/policy.yaml grants no role the view of a vector layer")


@pytest.fixture(scope="module")
def viewer_run(small_demo, settings, registry, pool, lantu_serve, tmp_path_factory):
    """One browser session over a real ``lantu serve``: the report of ``viewer_driver.js``."""
    node = shutil.which("node")
    assert node, "node is needed for the viewer test (make install installs npm/node)"
    assert (REPO / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: run make install"
    assert (REPO / "server/static/vendor/maplibre-gl/maplibre-gl.js").is_file(), "MapLibre missing: run make install"
    truth = json.loads(Path(small_demo["truth"]).read_text())
    site = next(s for s in truth["project_sites"] if s["name"] == SITE)
    town = next(t for t in truth["county"]["towns"] if t["xzqdm"] == TOWN_CODE)
    work = tmp_path_factory.mktemp("viewer")
    site_file = work / "site.geojson"
    site_file.write_text(json.dumps({"type": "Feature", "properties": {"name": SITE}, "geometry": site["geometry"]}))
    point = shape(site["geometry"]).representative_point()
    site_zip = _zipped_shapefile(site["geometry_epsg4547"], work)
    # another planted red-line feature (a three-control-lines conflict) to look up by BSM
    red_bsms = [c["bsm"][c["layers"].index(RED_LINE)] for c in truth["conflicts"] if RED_LINE in c["layers"]]
    other = next(b for b in red_bsms if b not in site["layers"][RED_LINE]["bsm"])
    from lantu.providers.accounts import create_account, create_key

    role, _layer = _role_with_view_rights(registry)
    good_key = create_key(pool, create_account(pool, f"viewer-{time.time_ns()}", "一张蓝图测试", roles=[role]))
    with lantu_serve("viewer") as (url, log, _process):
        plan = {"url": url, "out_dir": str(work), "chromium": shutil.which("chromium") or "/usr/bin/chromium",
                "point": [point.x, point.y], "layer_zh": registry.get(RED_LINE).name_zh,
                "town_query": town["name"][:2], "bsm_query": other, "site_file": str(site_file),
                "site_zip": str(site_zip),
                "project_name": f"{town['name']}测试项目",
                "rule_set": "urban-vs-landuse", "api_key": "lantu-viewer-test-not-a-key", "good_key": good_key,
                "basemaps_off": [lid for lid in ("electronic_map", "dem") if registry.get(lid)]}
        (work / "plan.json").write_text(json.dumps(plan, ensure_ascii=False))
        done = subprocess.run([node, str(DRIVER), str(work / "plan.json")], capture_output=True, text=True,
                              timeout=240, cwd=REPO)
        try:
            result = json.loads(done.stdout)
        except json.JSONDecodeError:
            pytest.fail(f"driver said nothing useful (exit {done.returncode}):\n{done.stdout[-3000:]}\n"
                        f"{done.stderr[-3000:]}")
        assert not result.get("error"), (result.get("error"), done.stderr[-2000:], log.read_text()[-3000:])
        # what the server answers directly, to compare with what the page showed
        conflict = requests.post(f"{url}/processes/conflict-check/execution", timeout=120,
                                 json={"inputs": {"rule_set": plan["rule_set"]}, "response": "document"},
                                 headers={"Prefer": "respond-sync"}).json()
        check = requests.post(f"{url}/processes/control-line-check/execution", timeout=120,
                              json={"inputs": {"site": site["geometry"]}, "outputs": {"result": {}}},
                              headers={"Prefer": "respond-sync"}).json()
        town_doc = requests.get(f"{url}/collections/admin_divisions/items", timeout=30,
                                params={"filter": f"XZQDM = '{TOWN_CODE}'", "f": "json"}).json()
        key_status = requests.get(f"{url}/viewer/config.json", headers={"X-API-Key": plan["api_key"]}, timeout=30)
        tileset = f"{url}/tiles/blueprint/WebMercatorQuad?f=tilejson"
        viewable = {who: {v["id"] for v in requests.get(tileset, headers=h, timeout=30).json()["vector_layers"]}
                    for who, h in (("anonymous", {}), ("good", {"X-API-Key": good_key}))}
        landing = requests.get(f"{url}/?f=html", timeout=30).text
        yield {"landing": landing, "report": result, "truth": truth, "site": site, "town": town, "plan": plan,
               "conflict": conflict,
               "check": check, "town_doc": town_doc, "key_status": key_status.status_code,
               "viewable": viewable}


def test_no_request_leaves_loopback(viewer_run):
    assert viewer_run["report"]["external"] == []


def test_landing_page_links_the_viewer(viewer_run):
    assert 'href="viewer"' in viewer_run["landing"]


def test_page_loads_without_console_errors_and_cjk_renders(viewer_run, registry):
    report = viewer_run["report"]
    # everything up to the identity step (where a refused key is an expected 401) is error-free
    assert report["console_errors"][:report["errors_before_7"]] == []
    load = report["steps"]["load"]
    assert load["title"].startswith("一张蓝图")
    assert load["glyph"]["has_ink"] and load["glyph"]["differs_from_missing_glyph"], load["glyph"]
    # the layer tree is the registry's: every vector layer the tileset serves, with its 中文 name
    assert registry.get(RED_LINE).name_zh in load["tree_layers"]
    assert registry.get("basic_farmland").name_zh in load["tree_layers"]
    assert registry.get("electronic_map").name_zh in load["tree_layers"]


def test_red_line_colour_at_the_planted_polygon(viewer_run, registry):
    """Turning 生态保护红线 on paints its registry fill, at its registry opacity, over what was there."""
    pixel = viewer_run["report"]["steps"]["pixel"]
    assert pixel["checked"]
    style = registry.get(RED_LINE).style
    fill, alpha = _hex_rgb(style.fill), style.fill_opacity
    before, after = _centre_pixel(pixel["before"]), _centre_pixel(pixel["after"])
    expected = tuple(round(f * alpha + b * (1 - alpha)) for f, b in zip(fill, before, strict=True))
    assert all(abs(a - e) <= 6 for a, e in zip(after, expected, strict=True)), (before, after, expected, style.fill)
    assert sum(abs(a - b) for a, b in zip(after, before, strict=True)) > 30, (before, after)


def test_identify_reads_the_planted_feature(viewer_run, registry):
    identify = viewer_run["report"]["steps"]["identify"]
    assert identify["layer"] == RED_LINE
    assert identify["bsm"] in viewer_run["site"]["layers"][RED_LINE]["bsm"]
    # attribute names are the registry's 中文 names
    for fdef in registry.get(RED_LINE).fields[:4]:
        assert fdef.name_zh in identify["text"]


def test_search_lands_on_the_town(viewer_run):
    search = viewer_run["report"]["steps"]["search"]
    assert search["result"] == viewer_run["town"]["name"] == "㮾梨街道"
    town = shape(viewer_run["town_doc"]["features"][0]["geometry"])
    view = box(*search["bounds"])
    assert view.contains(town.envelope.buffer(-1e-6)), (search["bounds"], town.bounds)
    assert view.area < 12 * town.envelope.area  # zoomed to the town, not the county
    assert town.envelope.contains(shape({"type": "Point", "coordinates": search["center"]}))


def test_search_by_bsm(viewer_run):
    found = viewer_run["report"]["steps"]["search_bsm"]
    assert found == {"layer": RED_LINE, "bsm": viewer_run["plan"]["bsm_query"]}


def test_drawing_a_site(viewer_run):
    draw = viewer_run["report"]["steps"]["draw"]
    assert draw["enabled"] and "(3)" in draw["status"]
    ring = draw["site"]["coordinates"][0]
    assert draw["site"]["type"] == "Polygon" and len(ring) == 4 and ring[0] == ring[-1]


def test_control_line_check_verdict_hits_and_pdf(viewer_run):
    check = viewer_run["report"]["steps"]["check"]
    direct = viewer_run["check"]
    assert check["verdict"] == direct["verdict"] == "禁止"
    assert [RED_LINE, viewer_run["site"]["layers"][RED_LINE]["bsm"][0]] in check["hits"]
    shown = {tuple(h) for h in check["hits"]}
    served = {(lid, f["bsm"]) for lid, entry in direct["layers"].items() if entry["intersects"]
              for f in entry["features"]}
    assert shown == served
    assert check["hit_features_drawn"] >= 1
    # the job ran asynchronously and its progress was on screen until the verdict
    assert check["progress"][0]["shown"]
    assert check["progress"][-1]["status"] == "successful" and check["progress"][-1]["value"] == 100
    assert check["pdf_name"].endswith(".pdf")
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", check["pdf"], "-"], capture_output=True, text=True,
                          check=True).stdout
    assert "禁止" in text and viewer_run["plan"]["project_name"] in text


def test_control_line_check_of_an_uploaded_shapefile(viewer_run):
    """The same site as a zipped Shapefile in EPSG:4547: the same verdict and features as the GeoJSON upload."""
    zipped, geojson = viewer_run["report"]["steps"]["check_zip"], viewer_run["report"]["steps"]["check"]
    assert zipped["verdict"] == viewer_run["check"]["verdict"]
    assert sorted(map(tuple, zipped["hits"])) == sorted(map(tuple, geojson["hits"]))


def test_conflict_panel_matches_the_process(viewer_run):
    conflict = viewer_run["report"]["steps"]["conflict"]
    summary = viewer_run["conflict"]["summary"]
    assert conflict["classes"] == [[c, s["count"]] for c, s in summary["by_class"].items()]
    assert conflict["patches_drawn"] == len(viewer_run["conflict"]["patches"]["features"]) > 0
    assert len(set(conflict["colours"].values())) == len(conflict["colours"])  # one colour per class
    rows = list(csv.reader(io.StringIO(Path(conflict["csv"]).read_text(encoding="utf-8-sig"))))
    assert len(rows) == 1 + conflict["patches_drawn"]
    assert {r[0] for r in rows[1:]} == set(summary["by_class"])


def test_english_switch(viewer_run, registry):
    english = viewer_run["report"]["steps"]["english"]
    assert english["tab"] == "Layers"
    assert registry.get(RED_LINE).title_en in english["tree_layers"]


def test_identity_box_shows_what_the_caller_may_see(viewer_run, registry):
    """An account whose role may view more layers than the public gets them in its tree; every request carries
    its key; a key the gate refuses is reported as such."""
    identity, plan = viewer_run["report"]["steps"]["identity"], viewer_run["plan"]
    good, bad = identity["good"], identity["bad"]
    assert good["outcome"] == "accepted" and good["status"].startswith("已使用凭证")
    assert good["requests"] and all(sent == plan["good_key"] for _url, sent in good["requests"])
    extra = viewer_run["viewable"]["good"] - viewer_run["viewable"]["anonymous"]
    assert extra, "the role sees nothing more than the public"
    anonymous_tree = set(viewer_run["report"]["steps"]["load"]["tree_layers"])
    assert set(good["tree_layers"]) - anonymous_tree == {registry.get(lid).name_zh for lid in extra}
    assert bad["requests"] and all(sent == plan["api_key"] for _url, sent in bad["requests"])
    assert viewer_run["key_status"] == 401
    assert bad["outcome"] == "refused" and bad["status"].startswith("凭证无效"), bad


def test_small_screen_layout(viewer_run):
    phone = viewer_run["report"]["steps"]["phone"]
    assert phone["scroll_width"] <= phone["inner_width"] == 390
    assert phone["canvas"] >= 300 and phone["map"][2] == 390
    assert phone["search"][2] >= 150 and phone["tabs"][3] > 0

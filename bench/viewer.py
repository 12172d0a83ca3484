"""bench/viewer — time to the first full render of the 一张蓝图 viewer over the whole county at zoom 10.

Debian's Chromium (driven by playwright-core, ``tests/viewer_driver.js`` in bench mode) opens
``/viewer?layers=…#10/lat/lon`` on a loopback ``lantu serve`` in a 1600 × 1200 window (the whole county fits at zoom
10: MapLibre loads level-10 vector tiles and level-11 256-px WMTS tiles there) and the blueprint's
control lines and planned land use on, over the default base maps (electronic map and hillshade from WMTS,
administrative boundaries). The time is the page's ``performance.now()`` at MapLibre's first ``idle`` event (every
tile of the view loaded and drawn), i.e. from navigation start — measured in the browser with the Performance API.
Each run uses a fresh browser context (empty browser cache). Run 1 meets Lantu's caches as found (cleared with
``--cold``); runs 2… are warm. Two demos: the small one (its own home, loaded on first use) and the county one
(the shared bench home's county demo, loaded on first use).

There is no peer for this and no target in issue 10: the last line reports the times and the county/small ratio.
``--screenshots DIR`` instead writes the README screenshots (overview, project check, 差异图斑) from the small demo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    ROOT,
    VENV_BIN,
    BenchError,
    BenchHome,
    Server,
    free_port,
    get_json,
    install_signal_handlers,
    lantu_cli,
    log,
    shutdown,
)

DRIVER = ROOT / "tests" / "viewer_driver.js"
ZOOM = 10
VIEWPORT = {"width": 1600, "height": 1200}  # the whole county fits at zoom 10 (about 770 × 1040 px)
EXTRA_LAYERS = ("planned_land_use",)  # with every control line: the blueprint a leader opens


def node() -> str:
    path = shutil.which("node")
    if not path or not (ROOT / "node_modules" / "playwright-core").is_dir():
        raise BenchError("node and playwright-core are needed: run make install")
    return path


def ensure_demo(home: BenchHome, scale: str, timings: dict[str, str]) -> None:
    truth = home.path / "demo" / "truth.json"
    if truth.exists() and json.loads(truth.read_text()).get("scale") == scale:
        return
    log(f"loading the {scale} demo: lantu demo load --scale {scale}")
    started = time.perf_counter()
    log(lantu_cli(home, "demo", "load", "--scale", scale, timeout=7200))
    timings[f"demo load ({scale})"] = f"{time.perf_counter() - started:.1f} s"


def start_server(home: BenchHome, port: int) -> Server:
    server = Server("lantu", [str(VENV_BIN / "lantu"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                    home.env(), port, "/healthz", home.logs / "lantu-viewer.log").start()
    server.wait_ready()
    return server


def view(port: int) -> tuple[list[float], list[str]]:
    """The county's centre and the layers to draw, from Lantu's own endpoints."""
    status, doc, text = get_json(port, "/collections/admin_divisions?f=json")
    if status != 200 or doc is None:
        raise BenchError(f"/collections/admin_divisions answered {status}: {text[:200]}")
    x0, y0, x1, y1 = doc["extent"]["spatial"]["bbox"][0]
    status, config, text = get_json(port, "/viewer/config.json")
    if status != 200 or config is None:
        raise BenchError(f"/viewer/config.json answered {status}: {text[:200]}")
    layers = [layer["id"] for group in config["groups"] for sub in group["subgroups"] for layer in sub["layers"]
              if layer["kind"] == "vector" and (layer["control_line"] or layer["id"] in EXTRA_LAYERS)]
    return [(x0 + x1) / 2, (y0 + y1) / 2], layers


def drive(plan: dict, timeout: float = 900) -> dict:
    with tempfile.TemporaryDirectory(prefix="lantu-viewer-bench-") as tmp:
        plan = dict(plan, out_dir=tmp)
        (Path(tmp) / "plan.json").write_text(json.dumps(plan, ensure_ascii=False))
        done = subprocess.run([node(), str(DRIVER), str(Path(tmp) / "plan.json")], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise BenchError(f"viewer driver failed (exit {done.returncode}): {done.stderr[-800:]}") from exc
    if report.get("error"):
        raise BenchError(f"viewer driver: {report['error'][:800]}")
    if report["external"]:
        raise BenchError(f"the page asked for addresses outside 127.0.0.1: {report['external'][:5]}")
    return report


def clear_caches(home: BenchHome) -> None:
    for sub in ("cache/mvt", "cache/wmts"):
        target = home.path / sub
        if target.is_dir():
            for child in target.iterdir():  # keep the directory (and MVT's .processed marker) in place
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)


STARTED: list[BenchHome] = []  # homes whose database this run started (and so stops)


def measure(name: str, home: BenchHome, scale: str, args, timings: dict[str, str]) -> dict:
    port = free_port()
    home.write_settings(port)
    log(f"{name}: home {home.path} (embedded PostgreSQL on port {home.pg_port})")
    running = subprocess.run([str(VENV_BIN / "lantu"), "db", "status"], env=home.env(), capture_output=True).returncode
    if running != 0:
        STARTED.append(home)  # ours from here on, also when `db start` fails after starting PostgreSQL
    lantu_cli(home, "db", "start")
    ensure_demo(home, scale, timings)
    if args.cold:
        clear_caches(home)
    server = start_server(home, port)
    center, layers = view(port)
    runs = []
    for i in range(args.runs):
        report = drive({"url": f"http://127.0.0.1:{port}",
                        "bench": {"center": center, "zoom": ZOOM, "layers": layers, "viewport": VIEWPORT}})
        step = report["steps"]["bench"]
        if not step["tiles_loaded"] or round(step["zoom"]) != ZOOM:
            raise BenchError(f"{name}: the view was not fully rendered at zoom {ZOOM}: {step}")
        runs.append(step)
        log(f"{name} run {i + 1}: first full render {step['first_full_render_ms']:.0f} ms, {step['tiles']} tiles, "
            f"{step['tile_bytes'] / 1024:.0f} KiB, slowest tile {step['slowest_tile_ms']:.0f} ms, last tile in at "
            f"{step['last_tile_end_ms']:.0f} ms")
    server.stop()
    return {"name": name, "runs": runs, "layers": len(layers)}


def screenshots(target: Path, home: BenchHome) -> None:
    """README screenshots from the small demo: the test's own walk through the page, pictures taken on the way."""
    from PIL import Image
    from shapely.geometry import shape

    port = free_port()
    home.write_settings(port)
    out = lantu_cli(home, "db", "start")
    ensure_demo(home, "small", {})
    server = start_server(home, port)
    try:
        truth = json.loads((home.path / "demo" / "truth.json").read_text())
        site = next(s for s in truth["project_sites"] if s["name"] == "P5")
        town = next(t for t in truth["county"]["towns"] if t["xzqdm"] == "430121004000")
        with tempfile.TemporaryDirectory(prefix="lantu-viewer-shots-") as tmp:
            site_file = Path(tmp) / "site.geojson"
            site_file.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": site["geometry"]}))
            point = shape(site["geometry"]).representative_point()
            target.mkdir(parents=True, exist_ok=True)
            drive({"url": f"http://127.0.0.1:{port}", "screenshots_dir": str(Path(tmp)), "point": [point.x, point.y],
                   "layer_zh": "生态保护红线", "town_query": town["name"][:2],
                   "bsm_query": site["layers"]["eco_red_line"]["bsm"][0], "site_file": str(site_file),
                   "project_name": f"{town['name']}示例项目", "rule_set": "urban-vs-landuse", "api_key": "example"})
            for png in sorted(Path(tmp).glob("viewer-*.png")):
                with Image.open(png) as img:  # a 256-colour palette keeps each picture small
                    img.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE).save(
                        target / png.name, optimize=True)
                log(f"wrote {target / png.name} ({(target / png.name).stat().st_size / 1024:.0f} KiB)")
    finally:
        server.stop()
        if "database started" in out:
            lantu_cli(home, "db", "stop")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="browser runs per demo (first cold-ish, rest warm)")
    parser.add_argument("--cold", action="store_true", help="empty Lantu's MVT and WMTS caches before run 1")
    parser.add_argument("--only", choices=("small", "county"), help="one demo only")
    parser.add_argument("--home", help="bench home (default ${LANTU_HOME:-var}/bench)")
    parser.add_argument("--keep", action="store_true", help="leave the databases running")
    parser.add_argument("--screenshots", metavar="DIR", help="write the README screenshots to DIR and stop")
    args = parser.parse_args()
    install_signal_handlers()
    county_home = BenchHome.resolve(args.home)
    small_home = BenchHome(county_home.path / "viewer-small", county_home.pg_port + 11)
    if args.screenshots:
        screenshots(Path(args.screenshots).resolve(), small_home)
        return 0
    timings: dict[str, str] = {}
    results = []
    try:
        for name, home, scale in (("small", small_home, "small"), ("county", county_home, "county")):
            if args.only and args.only != name:
                continue
            results.append(measure(name, home, scale, args, timings))
    except BenchError as exc:
        log(f"FAILED: {exc}")
        for home in STARTED:
            shutdown(home, args.keep, True)
        return 1
    print(f"\n{'demo':<8} {'layers':>6} {'run 1 (ms)':>11} {'warm median (ms)':>17} {'last tile in (ms)':>18} "
          f"{'tiles':>6} {'KiB':>8}")
    line = []
    for r in results:
        first = r["runs"][0]["first_full_render_ms"]
        warm = statistics.median([x["first_full_render_ms"] for x in r["runs"][1:]] or [first])
        last_in = statistics.median([x["last_tile_end_ms"] for x in r["runs"][1:] or r["runs"]])
        print(f"{r['name']:<8} {r['layers']:>6} {first:>11.0f} {warm:>17.0f} {last_in:>18.0f} "
              f"{r['runs'][-1]['tiles']:>6} {r['runs'][-1]['tile_bytes'] / 1024:>8.0f}")
        r["first"], r["warm"] = first, warm
        line.append(f"{r['name']}_first={first:.0f}ms {r['name']}_warm={warm:.0f}ms")
    for k, v in timings.items():
        print(f"  {k}: {v}")
    for home in STARTED:
        shutdown(home, args.keep, True)
    by = {r["name"]: r for r in results}
    ratio = f" county/small={by['county']['warm'] / by['small']['warm']:.2f}" if len(by) == 2 else ""
    print(f"viewer: first full render at z{ZOOM}, Chromium Performance API: {' '.join(line)}{ratio} "
          "(no target in issue 10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

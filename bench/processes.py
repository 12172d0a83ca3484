"""bench/processes — conflict-check overlays on the county demo: Lantu against hand-written PostGIS and geopandas.

Workloads (each a list of overlay classes, run whole-county, ``min_area`` 0): the rule sets
``three-control-lines`` and ``urban-vs-landuse`` of ``conflict-check``, and ``farmland-landuse`` (basic farmland ×
land-use survey, the issue's reference overlay, as ``conflict-check`` runs it with ``layers``). Paths, side by side
in one run, taking turns in rotating order:

* ``lantu``    — ``lantu.processes.conflict.run_classes`` as it is (patches with both areas, GeoJSON, towns);
* ``postgis``  — the best hand-written PostGIS overlay per class: ``&&`` + ``ST_Intersects``, the intersection
  computed once in a ``MATERIALIZED`` CTE, class filters, class A minus basic farmland, planar and ellipsoidal
  area and the patch as WKB;
* ``geopandas`` — ``geopandas.read_postgis`` of the layers, ``to_crs`` to the GK zone, ``geopandas.overlay``
  (intersection; ``difference`` with basic farmland for class A), ellipsoidal areas with ``pyproj.Geod``; time
  includes loading; in its own venv (``$BENCH_HOME/bench-venvs/geopandas``), a worker process;
* ``fast``     — ``lantu.processes.overlay_fast.run_classes`` (same contract as Lantu's), not wired in.

Cross-check: every path's patch set (class, fid pair) and both areas against the hand-written PostGIS overlay;
for ``fast`` also the GeoJSON geometry, towns, BSMs and codes against Lantu's. Then ``control-line-check`` over
100 random 1–20 ha sites (p95). The last line printed is the ratio line against the issue's targets.

Run ``bench/processes`` (``--quick`` for a short run, ``--help`` for the rest). See bench/README.md.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pyproj
import shapely
from psycopg2 import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    BenchError,
    BenchHome,
    cpu_seconds,
    ensure_venv,
    fmt,
    free_port,
    install_signal_handlers,
    lantu_cli,
    log,
    percentile,
    postmaster_pid,
    self_cpu_seconds,
    shutdown,
)

from lantu.config.registry import Registry, load_registry  # noqa: E402
from lantu.config.settings import load_settings  # noqa: E402
from lantu.processes import overlay_fast  # noqa: E402
from lantu.processes.base import Env, RunContext  # noqa: E402
from lantu.processes.conflict import rule_set_classes, run_classes  # noqa: E402
from lantu.processes.overlay import OverlayClass  # noqa: E402
from lantu.providers.pool import get_pool  # noqa: E402
from lantu.providers.tables import table_id  # noqa: E402

MIN_ROWS = 100_000
STANDIN_BSM = "BENCHSTANDIN"   # bench/features --stand-in fills land_use_survey with synthetic squares
GEOPANDAS_REQUIREMENTS = ["geopandas==1.1.4", "pandas>=2.2,<3", "pyproj", "psycopg2-binary"]
TARGET_POSTGIS = 0.8
TARGET_GEOPANDAS = 0.6
TARGET_P95_MS = 200.0
REL_TOL = 1e-6     # areas agree within 1e-6 relative …
ABS_TOL = 1e-4     # … or 1e-4 m²: GeographicLib's polygon area differs by up to ~3e-5 m² between PROJ versions
WORKLOADS = ("three-control-lines", "urban-vs-landuse", "farmland-landuse")
PATHS = ("lantu", "postgis", "geopandas", "fast")
PATH_LABELS = {
    "lantu": "lantu.processes.conflict.run_classes (overlay_sql: patches, both areas, GeoJSON, towns)",
    "postgis": "hand-written PostGIS: && + ST_Intersects, ST_Intersection once in a MATERIALIZED CTE; both areas "
               "+ WKB",
    "geopandas": "geopandas.read_postgis + to_crs + geopandas.overlay + pyproj.Geod areas (own venv; load "
                 "included)",
    "fast": "lantu.processes.overlay_fast.run_classes (STRtree, containment short-cut, threads; same Patch list "
            "as lantu)",
}


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---- data ----------------------------------------------------------------------------------------------
def ensure_data(home: BenchHome, timings: dict[str, str]) -> str:
    def state() -> tuple[int, bool]:
        with psycopg2.connect(home.socket_dsn) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('blueprint.land_use_survey') IS NOT NULL")
            if not cur.fetchone()[0]:
                return 0, False
            cur.execute("SELECT count(*), (SELECT bsm FROM blueprint.land_use_survey ORDER BY fid LIMIT 1) "
                        "FROM blueprint.land_use_survey")
            rows, first = cur.fetchone()
            # a county demo loaded before the indicator statistics existed (issue 11) is loaded again
            cur.execute("SELECT to_regclass('lantu.statistics') IS NOT NULL AND EXISTS (SELECT FROM lantu.statistics)")
            if not cur.fetchone()[0]:
                rows = 0
        conn.close()
        return rows, bool(first and first.startswith(STANDIN_BSM))

    rows, standin = state()
    if rows >= MIN_ROWS and not standin:
        return "county demo (reused)"
    log("loading the county demo: lantu demo load --scale county" + (" (the land-use table holds bench/features' "
                                                                      "stand-in)" if standin else ""))
    started = time.perf_counter()
    log(lantu_cli(home, "demo", "load", "--scale", "county"))
    timings["demo load (county)"] = f"{time.perf_counter() - started:.1f} s"
    rows, standin = state()
    if rows < MIN_ROWS or standin:
        raise BenchError(f"the county demo has only {rows} land-use features (expected ≥ {MIN_ROWS})")
    return "county demo"


def workload_classes(registry: Registry, name: str) -> list[OverlayClass]:
    if name == "farmland-landuse":  # conflict-check with layers = [basic_farmland, land_use_survey]
        return [OverlayClass("overlap", f"{registry.get('basic_farmland').name_zh} × "
                             f"{registry.get('land_use_survey').name_zh}", "basic_farmland", "land_use_survey")]
    return rule_set_classes(registry, name)


# ---- results -------------------------------------------------------------------------------------------
@dataclass
class Run:
    seconds: float
    py_cpu: float
    pg_cpu: float
    rows: dict  # (class, a fid, b fid) → (planar m², ellipsoidal m²)
    load_s: float | None = None
    patches: list | None = None   # lantu / fast: the Patch objects


@dataclass
class Cell:
    runs: list[Run] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(r.seconds for r in self.runs) if self.runs else None

    def med(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else None


# ---- the paths -----------------------------------------------------------------------------------------
def hand_sql(registry: Registry, cls: OverlayClass, srid: int) -> tuple[sql.Composed, list]:
    """The best hand-written PostGIS overlay of one class (same semantics as overlay_sql, no GeoJSON/towns)."""
    conds, params = [], []
    for alias, flt in (("a", cls.a_filter), ("b", cls.b_filter)):
        if flt is not None:
            cond, p = flt.sql(alias)
            conds.append(cond)
            params += p
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    if cls.minus:
        cut = sql.SQL(""",
cut AS MATERIALIZED (
  SELECT afid, bfid, ST_CollectionExtract(coalesce(ST_Difference(g, (
           SELECT ST_Union(ST_Transform(m.geom, {srid})) FROM {tm} m
           WHERE m.geom && ageom AND m.geom && bgeom AND ST_Intersects(m.geom, ageom)
             AND ST_Intersects(m.geom, bgeom))), g), 3) AS g
  FROM inter WHERE NOT ST_IsEmpty(g))""").format(srid=sql.Literal(srid), tm=table_id(registry.get(cls.minus)))
    else:
        cut = sql.SQL(",\ncut AS (SELECT afid, bfid, g FROM inter)")
    query = sql.SQL("""
WITH inter AS MATERIALIZED (
  SELECT a.fid AS afid, b.fid AS bfid, a.geom AS ageom, b.geom AS bgeom,
         ST_CollectionExtract(ST_Intersection(ST_Transform(a.geom, {srid}), ST_Transform(b.geom, {srid})), 3) AS g
  FROM {ta} a JOIN {tb} b ON a.geom && b.geom AND ST_Intersects(a.geom, b.geom)
  WHERE {where}){cut}
SELECT afid, bfid, ST_Area(g), ST_Area(ST_Transform(g, 4490)::geography, true), ST_AsBinary(g)
FROM cut WHERE ST_Area(g) > 0""").format(
        srid=sql.Literal(srid), ta=table_id(registry.get(cls.a)), tb=table_id(registry.get(cls.b)), where=where,
        cut=cut)
    return query, params


class Paths:
    def __init__(self, home: BenchHome, env: Env, gp: GeopandasWorker | None):
        self.home, self.env, self.gp = home, env, gp
        self.pm = postmaster_pid(home)
        self.conn = psycopg2.connect(home.socket_dsn)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET max_parallel_workers_per_gather = 0")
        self.sql = {}

    def close(self) -> None:
        self.conn.close()

    def run(self, path: str, workload: str, classes: list[OverlayClass]) -> Run:
        pg0, py0, t0 = cpu_seconds(self.pm) if self.pm else 0.0, self_cpu_seconds(), time.perf_counter()
        load_s, patches = None, None
        if path == "geopandas":
            reply = self.gp.run(workload)
            seconds, py_cpu, load_s, rows = reply["seconds"], reply["cpu"], reply["load_s"], reply["rows"]
        else:
            if path in ("lantu", "fast"):
                fn = run_classes if path == "lantu" else overlay_fast.run_classes
                patches = fn(self.env, classes, aoi_ewkb=None, min_area=0.0)
                rows = {(p.cls, p.a_fid, p.b_fid): (p.planar_m2, p.ellipsoidal_m2) for p in patches}
            else:
                rows = {}
                srid = self.env.settings.planar_srid
                with self.conn.cursor() as cur:
                    for cls in classes:
                        query, params = hand_sql(self.env.registry, cls, srid)
                        cur.execute(query, params)
                        for afid, bfid, planar, ell, _wkb in cur.fetchall():
                            rows[(cls.name, afid, bfid)] = (planar, ell)
            seconds, py_cpu = time.perf_counter() - t0, self_cpu_seconds() - py0
        pg_cpu = (cpu_seconds(self.pm) - pg0) if self.pm else 0.0
        return Run(seconds, py_cpu, pg_cpu, rows, load_s, patches)


# ---- geopandas, in its own venv --------------------------------------------------------------------------
GEOPANDAS_WORKER = r'''
"""geopandas worker of bench/processes: one line per workload on stdin, one JSON line per answer on stdout."""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")  # pandas: "only supports SQLAlchemy connectable …" for a DBAPI2 connection
import geopandas as gpd
import psycopg2
import pyproj
import shapely

spec = json.load(open(sys.argv[1]))
geod = pyproj.Geod(ellps="GRS80")  # CGCS2000's ellipsoid
conn = psycopg2.connect(spec["dsn"])
conn.autocommit = True
print(json.dumps({"ready": True, "geopandas": gpd.__version__, "shapely": shapely.__version__,
                  "geos": shapely.geos_version_string, "pyproj": pyproj.__version__}), flush=True)


def run(workload):
    w = spec["workloads"][workload]
    t0, c0 = time.perf_counter(), os.times()
    frames = {}
    for key, (table, where) in w["layers"].items():
        frames[key] = gpd.read_postgis(f"SELECT fid, geom FROM {table} t WHERE {where}", conn,
                                       geom_col="geom").to_crs(spec["srid"])
    t1 = time.perf_counter()
    rows = []
    for cls in w["classes"]:
        res = gpd.overlay(frames[cls["a"]], frames[cls["b"]], how="intersection", keep_geom_type=True)
        if cls["minus"]:
            res = gpd.overlay(res, frames[cls["minus"]][["geom"]], how="difference", keep_geom_type=True)
        planar = res.geometry.area
        res = res[planar.to_numpy() > 0]
        planar = planar[planar > 0].to_numpy()
        ell = [abs(geod.geometry_area_perimeter(g)[0]) for g in res.geometry.to_crs(4490)]
        rows += [[cls["name"], int(a), int(b), float(p), float(e)]
                 for a, b, p, e in zip(res["fid_1"], res["fid_2"], planar, ell)]
    t2, c2 = time.perf_counter(), os.times()
    return {"seconds": t2 - t0, "load_s": t1 - t0, "cpu": (c2.user + c2.system) - (c0.user + c0.system),
            "rows": rows}


for line in sys.stdin:
    name = line.strip()
    if name == "quit":
        break
    try:
        reply = run(name)
        out = spec["result_file"]
        with open(out, "w") as f:
            json.dump(reply["rows"], f)
        reply["rows"] = out
    except Exception as exc:  # reported to the bench
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(reply), flush=True)
'''


class GeopandasWorker:
    def __init__(self, home: BenchHome, venv: Path, env: Env, workloads: list[str]):
        self.home = home
        script = home.logs / "geopandas_worker.py"
        script.write_text(GEOPANDAS_WORKER, encoding="utf-8")
        spec_file = home.logs / "geopandas_spec.json"
        self.result_file = home.logs / "geopandas_rows.json"
        spec = {"dsn": home.socket_dsn, "srid": env.settings.planar_srid, "result_file": str(self.result_file),
                "workloads": {w: geopandas_spec(env, w) for w in workloads}}
        spec_file.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
        self.stderr = open(home.logs / "geopandas-worker.log", "w")  # noqa: SIM115 - open while it runs
        self.proc = subprocess.Popen([str(venv / "bin" / "python"), str(script), str(spec_file)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        hello = self._reply()
        self.versions = (f"geopandas {hello['geopandas']}, shapely {hello['shapely']} (GEOS {hello['geos']}), "
                         f"pyproj {hello['pyproj']}")

    def _reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError(f"the geopandas worker exited; see {self.home.logs / 'geopandas-worker.log'}")
        return json.loads(line)

    def run(self, workload: str) -> dict:
        self.proc.stdin.write(workload + "\n")
        self.proc.stdin.flush()
        reply = self._reply()
        if "error" in reply:
            raise BenchError(f"geopandas {workload}: {reply['error']}")
        rows = json.loads(Path(reply["rows"]).read_text())
        reply["rows"] = {(c, a, b): (p, e) for c, a, b, p, e in rows}
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


def geopandas_spec(env: Env, workload: str) -> dict:
    """Tables and WHERE clauses (the classes' filters, rendered) of one workload, each layer read once."""
    layers, classes = {}, []
    with env.pool.connection() as conn:
        def key(layer_id: str, flt) -> str:
            where = "TRUE"
            if flt is not None:
                cond, params = flt.sql("t")
                with conn.cursor() as cur:
                    where = cur.mogrify(cond.as_string(conn), params).decode()
            name = f"{layer_id}:{where}"
            layers[name] = [table_id(env.registry.get(layer_id)).as_string(conn), where]
            return name

        for cls in workload_classes(env.registry, workload):
            classes.append({"name": cls.name, "a": key(cls.a, cls.a_filter), "b": key(cls.b, cls.b_filter),
                            "minus": key(cls.minus, None) if cls.minus else None})
    return {"layers": layers, "classes": classes}


# ---- cross-check ---------------------------------------------------------------------------------------
def compare(ref: dict, got: dict) -> dict:
    """Patch set and both areas of ``got`` against ``ref``."""
    only_ref, only_got = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    worst = {"planar": (0.0, 0.0), "ellipsoidal": (0.0, 0.0)}
    bad = []
    for k in set(ref) & set(got):
        for i, kind in enumerate(("planar", "ellipsoidal")):
            r, g = ref[k][i], got[k][i]
            d = abs(g - r)
            rel = d / abs(r) if r else (0.0 if d == 0 else math.inf)
            worst[kind] = (max(worst[kind][0], rel), max(worst[kind][1], d))
            if rel > REL_TOL and d > ABS_TOL:
                bad.append((k, kind, r, g))
    return {"only_ref": only_ref, "only_got": only_got, "worst": worst, "bad": sorted(bad),
            "ok": not only_ref and not only_got and not bad}


def compare_patches(lantu: list, fast: list) -> dict:
    """fast's Patch list against Lantu's beyond the areas: order, GeoJSON geometry, towns, BSMs, codes."""
    order = [(p.cls, p.a_fid, p.b_fid) for p in lantu] == [(p.cls, p.a_fid, p.b_fid) for p in fast]
    by_key = {(p.cls, p.a_fid, p.b_fid): p for p in fast}
    pairs = [(p, by_key[(p.cls, p.a_fid, p.b_fid)]) for p in lantu if (p.cls, p.a_fid, p.b_fid) in by_key]
    out = {"order": order, "n": len(pairs), "geojson_bytes": 0, "geometry": 0, "towns": 0, "attrs": 0}
    if not pairs:
        return out
    out["geojson_bytes"] = sum(a.geojson == b.geojson for a, b in pairs)
    ga = shapely.from_geojson([a.geojson for a, _ in pairs])
    gb = shapely.from_geojson([b.geojson for _, b in pairs])

    def canon(g):
        one = (shapely.get_type_id(g) == 6) & (shapely.get_num_geometries(g) == 1)
        g = g.copy()
        g[one] = shapely.get_geometry(g[one], 0)
        return shapely.normalize(g)

    out["geometry"] = int(shapely.equals_exact(canon(ga), canon(gb), tolerance=1e-9).sum())
    out["towns"] = sum(a.by_town.keys() == b.by_town.keys()
                       and all(abs(a.by_town[t] - b.by_town[t]) <= max(REL_TOL * abs(a.by_town[t]), ABS_TOL)
                               for t in a.by_town) for a, b in pairs)
    out["attrs"] = sum((a.a_bsm, a.b_bsm, a.a_code, a.b_code) == (b.a_bsm, b.b_bsm, b.a_code, b.b_code)
                       for a, b in pairs)
    return out


# ---- control-line-check ----------------------------------------------------------------------------------
def random_sites(home: BenchHome, count: int, seed: int, srid: int) -> list[dict]:
    """``count`` GeoJSON polygons (CRS84) of 1–20 ha: rotated rectangles around points on random land-use
    polygons, built in the GK zone."""
    rng = random.Random(seed)
    to_lonlat = pyproj.Transformer.from_crs(srid, 4490, always_xy=True)
    sites = []
    with psycopg2.connect(home.socket_dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT min(fid), max(fid) FROM blueprint.land_use_survey")
        lo, hi = cur.fetchone()
        while len(sites) < count:
            cur.execute("SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_Transform(ST_PointOnSurface(geom), %s) p "
                        "FROM blueprint.land_use_survey WHERE fid >= %s ORDER BY fid LIMIT 1) s",
                        (srid, rng.randint(lo, hi)))
            row = cur.fetchone()
            if not row:
                continue
            x, y = row
            area = rng.uniform(1, 20) * 10_000
            aspect = rng.uniform(0.5, 2.0)
            w, h = math.sqrt(area * aspect), math.sqrt(area / aspect)
            a = rng.uniform(0, math.pi)
            corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
            xs = [x + cx * math.cos(a) - cy * math.sin(a) for cx, cy in corners]
            ys = [y + cx * math.sin(a) + cy * math.cos(a) for cx, cy in corners]
            lon, lat = to_lonlat.transform(xs, ys)
            ring = [[round(float(u), 9), round(float(v), 9)] for u, v in zip(lon, lat, strict=True)]
            sites.append({"type": "Polygon", "coordinates": [ring + [ring[0]]]})
    conn.close()
    return sites


def measure_control_line(env: Env, sites: list[dict], warmup: int, extra: dict) -> list[float]:
    from lantu.processes.catalogue import processor

    proc = processor("control-line-check")
    ctx = RunContext(env, None, lambda _p, _m: None)
    times = []
    for i, site in enumerate(sites[:warmup] + sites):
        t0 = time.perf_counter()
        proc.run(proc.validate({"site": site, **extra}, env), ctx)
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return times


def measure_indicators(env: Env, repeats: int = 5) -> dict[str, float]:
    """``indicators`` for the whole county, every indicator: the first run in this process (cold: the layer
    sums are computed) and the median of the next ``repeats`` (warm: sums reused until the change log moves)."""
    from lantu.processes.catalogue import processor

    proc = processor("indicators")
    ctx = RunContext(env, None, lambda _p, _m: None)
    times = []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        proc.run(proc.validate({"region": "430121"}, env), ctx)
        times.append(time.perf_counter() - t0)
    return {"cold": times[0], "warm": statistics.median(times[1:])}


# ---- profile (--profile) -------------------------------------------------------------------------------
PROFILE_BUCKETS = [  # the first rule whose key is anywhere in a sample's stack wins
    ("_ellipsoidal_and_geojson", "PostGIS: ellipsoidal area + GeoJSON of the final patches (send WKB, fetch)"),
    ("_by_town", "towns: covers / relate / intersection with the 18 towns"),
    ("_cut", "minus layer (class A): union + difference"),
    ("intersection (shapely", "pairs: intersection (GEOS overlay) of proper overlaps"),
    ("relate_pattern (shapely", "pairs: interiors-meet test (relate_pattern T********)"),
    ("covers (shapely", "pairs: containment test (covers / covered_by)"),
    ("covered_by (shapely", "pairs: containment test (covers / covered_by)"),
    ("_polygonal", "pairs: polygonal part of results"),
    ("_single", "pairs: one-part MultiPolygon → Polygon"),
    ("from_wkb (shapely", "load: WKB → shapely"),
    ("_load_layer", "load: PostgreSQL query + fetch (ST_Transform in PostGIS, psycopg2 rows)"),
    ("_overlay_class", "pairs: STRtree, box classification, bookkeeping"),
    ("_row_estimates", "load: row estimates"),
    ("run_classes (", "building the Patch objects"),
]


def profile_fast(home: BenchHome, paths: Paths, workload: str, classes: list, runs: int) -> list[str]:
    venv, _ = ensure_venv(home, "tools", ["py-spy"])
    out = home.logs / "py-spy-processes-fast.txt"
    rate = 250
    spy = subprocess.Popen([str(venv / "bin" / "py-spy"), "record", "--pid", str(os.getpid()), "--threads",
                            "--nonblocking", "--rate", str(rate), "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    time.sleep(1.0)
    wall = []
    pg0 = cpu_seconds(paths.pm) if paths.pm else 0.0
    for _ in range(runs):
        wall.append(paths.run("fast", workload, classes).seconds)
    pg = (cpu_seconds(paths.pm) - pg0) / runs if paths.pm else 0.0
    spy.send_signal(2)
    try:
        spy.wait(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
    buckets: dict[str, int] = {}
    total = 0
    if out.exists():
        for line in out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit() or "overlay_fast.py" not in stack:
                continue
            name = next((label for key, label in PROFILE_BUCKETS if key in stack), "other")
            buckets[name] = buckets.get(name, 0) + int(count)
            total += int(count)
    lines = [f"fast path profile: {workload}, {runs} runs, median {statistics.median(wall):.2f} s; py-spy at {rate} Hz "
             f"on this process, all threads, CPU samples (waiting left out); PostgreSQL CPU {pg:.2f} s per run"]
    if not total:
        return lines + [f"  no samples (py-spy needs ptrace; see {out})"]
    per = 1 / rate / runs
    lines.append(f"  {total * per:.2f} CPU s per run in this process (main thread + its thread pools)")
    for name, count in sorted(buckets.items(), key=lambda kv: -kv[1]):
        lines.append(f"    {count * per:6.3f} s {100 * count / total:5.1f}%  {name}")
    return lines


# ---- report --------------------------------------------------------------------------------------------
def totals(rows: dict) -> tuple[float, float]:
    return sum(v[0] for v in rows.values()), sum(v[1] for v in rows.values())


def report(cells: dict, workloads: list[str], paths_run: list[str], checks: dict, patch_checks: dict,
           control: dict, args, timings: dict, profile: list[str], data_label: str, gp_versions: str) -> None:
    print()
    print(f"processes bench — conflict-check overlays, {data_label}, whole county, min_area 0; {args.rounds} timed "
          f"rounds after a warm-up, paths taking turns in rotating order; median wall time per run")
    header = (f"{'workload':20} {'path':10} {'median s':>9} {'min s':>7} {'max s':>7} {'load s':>7} "
              f"{'py CPU s':>8} {'pg CPU s':>8} {'÷ postgis':>9} {'÷ geopandas':>11} {'patches':>8} "
              f"{'planar m²':>15} {'ellipsoidal m²':>15}  check")
    print(header)
    print("-" * len(header))
    sums = {p: 0.0 for p in paths_run}
    for w in workloads:
        for p in paths_run:
            cell = cells[(w, p)]
            if not cell.runs:
                continue
            sums[p] += cell.median
            base = cells.get((w, "postgis"))
            gp = cells.get((w, "geopandas"))
            r_pg = cell.median / base.median if base and base.runs else None
            r_gp = cell.median / gp.median if gp and gp.runs else None
            planar, ell = totals(cell.runs[0].rows)
            c = checks.get((w, p))
            check = "reference" if p == "postgis" else ("ok" if c and c["ok"] else "MISMATCH" if c else "—")
            print(f"{w:20} {p:10} {cell.median:9.3f} {min(r.seconds for r in cell.runs):7.3f} "
                  f"{max(r.seconds for r in cell.runs):7.3f} {fmt(cell.med('load_s'), 3):>7} "
                  f"{cell.med('py_cpu'):8.2f} {cell.med('pg_cpu'):8.2f} {fmt(r_pg, 2):>9} {fmt(r_gp, 2):>11} "
                  f"{len(cell.runs[0].rows):8} {planar:15.1f} {ell:15.1f}  {check}")
    for p in paths_run:
        r_pg = sums[p] / sums["postgis"] if sums.get("postgis") else None
        r_gp = sums[p] / sums["geopandas"] if sums.get("geopandas") else None
        print(f"{'all (sum)':20} {p:10} {sums[p]:9.3f} {'':7} {'':7} {'':7} {'':8} {'':8} {fmt(r_pg, 2):>9} "
              f"{fmt(r_gp, 2):>11}")
    print()
    print("paths:")
    if "overlay_fast" in inspect.getsource(run_classes):
        PATH_LABELS["lantu"] = "lantu.processes.conflict.run_classes (delegating to overlay_fast)"
    for p in paths_run:
        print(f"  {p:10} {PATH_LABELS[p]}" + (f"; {gp_versions}" if p == "geopandas" and gp_versions else ""))
    print("  py CPU: the bench process (for geopandas its worker); pg CPU: all PostgreSQL processes; load s: "
          "geopandas read_postgis + to_crs")
    print()
    print(f"cross-check against the hand-written PostGIS overlay (patch set = class + fid pair; areas within "
          f"{REL_TOL:g} relative or {ABS_TOL:g} m²):")
    for (w, p), c in sorted(checks.items(), key=lambda kv: (workloads.index(kv[0][0]), PATHS.index(kv[0][1]))):
        wp, ap = c["worst"]["planar"], c["worst"]["ellipsoidal"]
        line = (f"  {w:20} {p:10} {'same patches' if not c['only_ref'] and not c['only_got'] else 'DIFFERENT'}: "
                f"{len(c['only_ref'])} only in postgis, {len(c['only_got'])} only in {p}; max Δ planar "
                f"{wp[0]:.1e} rel / {wp[1]:.1e} m², ellipsoidal {ap[0]:.1e} rel / {ap[1]:.1e} m²; "
                f"{len(c['bad'])} areas off")
        print(line)
        for k in (c["only_ref"][:3] + c["only_got"][:3]):
            print(f"      pair only on one side: {k}")
        for k, kind, r, g in c["bad"][:5]:
            print(f"      {k} {kind}: postgis {r!r} {p} {g!r}")
    for w, pc in patch_checks.items():
        print(f"  {w:20} fast vs lantu: order {'same' if pc['order'] else 'DIFFERENT'}; same GeoJSON geometry "
              f"{pc['geometry']}/{pc['n']} (byte-identical {pc['geojson_bytes']}: the rest start their rings at "
              f"another vertex or write one polygon as MultiPolygon, as GEOS's overlay does); by_town "
              f"{pc['towns']}/{pc['n']}; BSM + codes {pc['attrs']}/{pc['n']}")
    print()
    if control.get("error"):
        print(f"control-line-check: not available ({control['error']})")
    elif control.get("skipped"):
        print(f"control-line-check: skipped ({control['skipped']})")
    else:
        for label, times in control["runs"].items():
            print(f"control-line-check {label}: {len(times)} random 1–20 ha sites, median "
                  f"{statistics.median(times):.1f} ms, p95 {percentile(times, 95):.1f} ms, max {max(times):.1f} ms "
                  f"(validate + run in this process)")
    if timings:
        print("timings: " + "; ".join(f"{k} {v}" for k, v in timings.items()))
    if profile:
        print()
        print("\n".join(profile))
    print()
    # the last line
    parts, verdict = [], True

    def ratio(p: str, q: str) -> float | None:
        return sums[p] / sums[q] if sums.get(p) and sums.get(q) else None

    lantu_ok = all(c["ok"] for (w, p), c in checks.items() if p == "lantu")
    for p, q, target in (("lantu", "postgis", TARGET_POSTGIS), ("lantu", "geopandas", TARGET_GEOPANDAS)):
        r = ratio(p, q)
        if r is None:
            parts.append(f"{p}/{q}=n/a (target ≤{target})")
            verdict = False
        else:
            parts.append(f"{p}/{q}={r:.2f} (target ≤{target})")
            verdict &= r <= target
    for q in ("postgis", "geopandas"):
        r = ratio("fast", q)
        if "fast" in sums:
            parts.append(f"fast/{q}=" + (f"{r:.2f}" if r is not None else "n/a"))
    if not lantu_ok:
        parts.append("lantu answers WRONG")
        verdict = False
    fast_checks = [c["ok"] for (w, p), c in checks.items() if p == "fast"]
    if fast_checks and not all(fast_checks):
        parts.append("fast answers WRONG")
    if control.get("error") or control.get("skipped"):
        parts.append(f"control-line p95=n/a ({'not available' if control.get('error') else 'skipped'})")
        verdict = False
    else:
        p95 = percentile(control["runs"]["default"], 95)
        info = control["runs"].get("report=true")
        parts.append(f"control-line p95={p95:.0f} ms (target ≤{TARGET_P95_MS:.0f}"
                     + (f"; {percentile(info, 95):.0f} ms with the PDF report" if info else "") + ")")
        verdict &= p95 <= TARGET_P95_MS
    if "indicators" in control:
        ind = control["indicators"]
        parts.append(f"indicators county cold={ind['cold']:.2f} s warm={ind['warm']:.2f} s (target <2 s)")
        verdict &= ind["cold"] < 2.0
    else:
        parts.append(f"indicators=n/a ({control.get('indicators_error', 'not run')})")
        verdict = False
    print("processes: " + " ".join(parts) + (" PASS" if verdict else " FAIL"))


# ---- main ----------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/processes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 timed round, 20 sites")
    parser.add_argument("--home", help="bench LANTU_HOME (default $BENCH_HOME or ${LANTU_HOME:-var}/bench)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3, --quick 1)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma list of {', '.join(WORKLOADS)}")
    parser.add_argument("--peers", default="geopandas", help="'geopandas' or '' (then only Lantu, PostGIS, fast)")
    parser.add_argument("--sites", type=int, help="control-line-check sites (default 100, --quick 20)")
    parser.add_argument("--profile", action="store_true", help="then py-spy the fast path on the largest workload")
    parser.add_argument("--keep", action="store_true", help="leave the database running")
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.sites = args.sites if args.sites is not None else (20 if args.quick else 100)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            parser.error(f"unknown workload {w!r}")
    peers = {p.strip() for p in args.peers.split(",") if p.strip()}
    install_signal_handlers()
    home = BenchHome.resolve(args.home)
    timings: dict[str, str] = {}
    db_started = False
    started = time.perf_counter()
    gp = paths = env = None
    try:
        home.write_settings(free_port())
        log(f"bench home {home.path} (embedded PostgreSQL on port {home.pg_port})")
        out = lantu_cli(home, "db", "start")
        db_started = "database started" in out
        log(out)
        data_label = ensure_data(home, timings)
        settings = load_settings(environ=home.env())
        registry = load_registry()
        env = Env(settings, registry, get_pool(settings))
        classes = {w: workload_classes(registry, w) for w in workloads}
        paths_run = ["lantu", "postgis", "fast"]
        gp_versions = ""
        if "geopandas" in peers:
            venv, spent = ensure_venv(home, "geopandas", GEOPANDAS_REQUIREMENTS)
            timings["venv geopandas"] = "reused" if spent is None else f"created in {spent:.1f} s"
            gp = GeopandasWorker(home, venv, env, workloads)
            gp_versions = gp.versions
            paths_run.insert(2, "geopandas")
        paths = Paths(home, env, gp)
        cells = {(w, p): Cell() for w in workloads for p in paths_run}
        warm: dict = {}
        log(f"load average before measuring: {loadavg()}")
        for w in workloads:
            for p in paths_run:
                log(f"warm-up: {w} / {p}")
                warm[(w, p)] = paths.run(p, w, classes[w])
        turn = 0
        for r in range(args.rounds):
            for w in workloads:
                order = paths_run[turn % len(paths_run):] + paths_run[:turn % len(paths_run)]
                turn += 1
                for p in order:
                    run = paths.run(p, w, classes[w])
                    run.patches = None  # the cross-check uses the warm-up's
                    cells[(w, p)].runs.append(run)
                    log(f"round {r + 1}/{args.rounds}: {w} / {p}: {run.seconds:.3f} s, {len(run.rows)} patches")
        timings["load average"] = f"{loadavg()} (1/5/15 min; other work on the machine skews absolute figures)"
        checks, patch_checks = {}, {}
        for w in workloads:
            ref = warm[(w, "postgis")].rows
            for p in paths_run:
                if p != "postgis":
                    checks[(w, p)] = compare(ref, warm[(w, p)].rows)
                    for run in cells[(w, p)].runs:  # every timed run must give the same patch set
                        if set(run.rows) != set(warm[(w, p)].rows):
                            checks[(w, p)]["ok"] = False
            patch_checks[w] = compare_patches(warm[(w, "lantu")].patches, warm[(w, "fast")].patches)
        control: dict = {"runs": {}}
        try:
            from lantu.processes.catalogue import processor

            processor("control-line-check")
        except Exception as exc:  # noqa: BLE001 - not there yet, or broken: reported, not timed
            control["error"] = f"{type(exc).__name__}: {exc}"
            log(f"control-line-check: not available ({control['error']})")
        if "error" not in control and args.sites:
            sites = random_sites(home, args.sites + 5, seed=430121, srid=settings.planar_srid)
            log(f"control-line-check: {args.sites} sites, default inputs (the check, no report)")
            control["runs"]["default"] = measure_control_line(env, sites[5:], 5, {})
            log(f"control-line-check: {args.sites} sites, report: true (informational)")
            control["runs"]["report=true"] = measure_control_line(env, sites[5:], 5, {"report": True})
        elif "error" not in control:
            control["skipped"] = "--sites 0"
        log("indicators: the whole county, cold then warm")
        try:
            control["indicators"] = measure_indicators(env)
        except Exception as exc:  # noqa: BLE001 - reported, not timed
            control["indicators_error"] = f"{type(exc).__name__}: {exc}"
        profile = []
        if args.profile:
            big = workloads[-1]
            log(f"profiling the fast path on {big}")
            profile = profile_fast(home, paths, big, classes[big], 3)
        timings["total"] = f"{time.perf_counter() - started:.0f} s"
        report(cells, workloads, paths_run, checks, patch_checks, control, args, timings, profile, data_label,
               gp_versions)
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        print(f"processes: error: {exc} FAIL")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if gp is not None:
            gp.close()
        if paths is not None:
            paths.close()
        if env is not None:
            env.pool.close()
        shutdown(home, args.keep, db_started)


if __name__ == "__main__":
    sys.exit(main())

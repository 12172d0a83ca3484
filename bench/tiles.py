"""bench/tiles — vector tiles (MVT) of the county land-use layer: Lantu uncached and cached, raw SQL, tipg.

A fixed list of ~200 WebMercatorQuad tiles, z10–z16, over the densest part of 星沙 (the county seat): at every
zoom, all tiles touching one box around the densest 3 × 3 km of land-use polygons near the town. Every target
serves the whole list with 4 concurrent clients, several rounds with the targets taking turns; tiles/s is tiles
over wall time. The raw-SQL row is Lantu's own ``tile_sql`` statement for the same tiles (same layer and
attributes), executed and fetched from 4 threads over the unix socket, without HTTP. Lantu runs twice per round:
with its tile cache cleared (every request must be a miss) and then over the same tiles again (every request
must be a hit). The last line printed is the ratio line against the issue's targets.

Run ``bench/tiles`` (``--quick`` for a short run, ``--help`` for the rest). See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import queue
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import (  # noqa: E402
    PROFILE_RATE,
    VENV_BIN,
    BenchError,
    BenchHome,
    HttpClient,
    Measurement,
    Server,
    cpu_seconds,
    ensure_venv,
    fmt,
    free_port,
    install_signal_handlers,
    lantu_cli,
    log,
    postmaster_pid,
    run_concurrent,
    self_cpu_seconds,
    shutdown,
    spy_classify,
    spy_start,
    spy_stop,
)
from features import TIPG_REQUIREMENTS, ensure_data, loadavg, warm_table  # noqa: E402

from lantu.config.registry import load_registry  # noqa: E402
from lantu.providers.features import source_from_layer  # noqa: E402
from lantu.providers.mvt import BUFFER, EXTENT, TileLayer, TileRequest, tile_sql  # noqa: E402
from lantu.server.tiles import _key_properties  # noqa: E402
from lantu.tiles.tms import Grid, grids  # noqa: E402

LAYER = "land_use_survey"
TABLE = f"blueprint.{LAYER}"
GRID = "WebMercatorQuad"
ZOOMS = range(10, 17)
TARGET_TILES = 200
# 星沙街道's seat in the demo county (demo/county.py); the tile box is centred on the densest 3 × 3 cells of
# 0.01° within SEARCH_RADIUS of it.
XINGSHA = (113.086, 28.261)
SEARCH_RADIUS = 0.05
MVT = "application/vnd.mapbox-vector-tile"
TIPG_NO_CAP = 10_000_000
TIPG_CAP = 10_000        # tipg's default TIPG_MAX_FEATURES_PER_TILE
# Targets of the issue. Only the raw-SQL ones decide PASS/FAIL: design brief §13 measured tipg again (1.24× raw
# SQL on z10–16, not 3.2×), and says the issues' targets against raw SQL stand; "≥ 2× tipg" is reported only.
TARGET_UNCACHED = 1.5   # Lantu uncached tiles take ≤ 1.5× raw SQL's time
TARGET_CACHED = 1.0     # cached: faster than raw SQL
TARGET_TIPG = 0.5       # ≥ 2× tipg (informational)


# ---- the tile list -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tile:
    z: int
    x: int   # column
    y: int   # row


def dense_centre(home: BenchHome) -> tuple[float, float, int]:
    """Centre of the 3 × 3 block of 0.01° cells holding the most land-use polygons (by point on surface) whose
    centre lies within SEARCH_RADIUS of 星沙's seat; and that count."""
    lon, lat = XINGSHA
    query = f"""
        WITH pts AS (SELECT ST_PointOnSurface(geom) p FROM {TABLE}
                     WHERE geom && ST_Expand(ST_SetSRID(ST_MakePoint(%(lon)s, %(lat)s), 4490), %(r)s + 0.02)),
             c AS (SELECT floor(ST_X(p) / 0.01)::int cx, floor(ST_Y(p) / 0.01)::int cy, count(*) n
                   FROM pts GROUP BY 1, 2)
        SELECT a.cx * 0.01 + 0.005, a.cy * 0.01 + 0.005, sum(b.n)::int
        FROM c a JOIN c b ON abs(a.cx - b.cx) <= 1 AND abs(a.cy - b.cy) <= 1
        WHERE (a.cx * 0.01 + 0.005 - %(lon)s) ^ 2 + (a.cy * 0.01 + 0.005 - %(lat)s) ^ 2 <= %(r)s ^ 2
        GROUP BY a.cx, a.cy ORDER BY 3 DESC, 1, 2 LIMIT 1"""
    with psycopg2.connect(home.socket_dsn) as conn, conn.cursor() as cur:
        cur.execute(query, {"lon": lon, "lat": lat, "r": SEARCH_RADIUS})
        row = cur.fetchone()
    conn.close()
    if row is None:
        raise BenchError(f"no land-use polygons within {SEARCH_RADIUS}° of 星沙 {XINGSHA}")
    return float(row[0]), float(row[1]), row[2]


def tile_list(grid: Grid, lon: float, lat: float, wanted: int) -> tuple[list[Tile], float]:
    """At every zoom, the tiles touching a square box (in metres) around (lon, lat); the box grows until the
    list holds at least ``wanted`` tiles. Ordered by zoom (a map client zooming in), then row and column."""
    half = 0.005
    while True:
        dx = half / math.cos(math.radians(lat))
        tiles = [Tile(t.z, t.x, t.y) for z in ZOOMS
                 for t in grid.tms.tiles(lon - dx, lat - half, lon + dx, lat + half, [z])]
        if len(tiles) >= wanted or half > 1:
            return sorted(tiles, key=lambda t: (t.z, t.y, t.x)), half
        half += 0.0005


def tile_layer(z: int) -> TileLayer:
    """The layer Lantu's collection tile route builds at this zoom (server/tiles.py ``_tile_layer``, which needs
    a request context): all attributes from the registry's min_zoom + 2 on, the key ones below."""
    layer = load_registry().get(LAYER)
    src = source_from_layer(layer)
    web_zoom = z  # WebMercatorQuad levels are web zooms
    detailed = web_zoom >= (layer.min_zoom or 0) + 2
    return TileLayer(LAYER, src, src.properties if detailed else _key_properties(src, layer))


@dataclass
class Job:
    tile: Tile
    sql: str
    params: list
    columns: tuple[str, ...]   # table columns of the attributes Lantu writes (tipg's ``properties=``)


def build_jobs(home: BenchHome, grid: Grid, tiles: Sequence[Tile]) -> list[Job]:
    jobs = []
    layers = {z: tile_layer(z) for z in ZOOMS}
    with psycopg2.connect(home.socket_dsn) as conn:
        for t in tiles:
            layer = layers[t.z]
            statement, params = tile_sql([layer], TileRequest(grid.srid, grid.bounds(t.z, t.y, t.x)))
            jobs.append(Job(t, statement.as_string(conn), params, tuple(p.column for p in layer.properties)))
    conn.close()
    return jobs


# ---- MVT decoding (feature counts and attribute names, for the correctness checks) -----------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _fields(buf) -> list[tuple[int, object]]:
    out, i, n = [], 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            value, i = None, i + (8 if wire == 1 else 4)
        else:
            raise ValueError(f"bad wire type {wire}")
        out.append((number, value))
    return out


@dataclass(frozen=True)
class TileSummary:
    size: int
    md5: str
    layers: tuple[tuple[str, int], ...]   # (layer name, features)
    keys: tuple[str, ...]                 # attribute names over all layers

    @property
    def features(self) -> int:
        return sum(n for _, n in self.layers)


def summarize(data: bytes) -> TileSummary:
    view = memoryview(data)
    layers, keys = [], set()
    for number, value in _fields(view):
        if number != 3:
            continue
        name, count = "", 0
        for n, v in _fields(value):
            if n == 1:
                name = bytes(v).decode()
            elif n == 2:
                count += 1
            elif n == 3:
                keys.add(bytes(v).decode())
        layers.append((name, count))
    return TileSummary(len(data), hashlib.md5(data).hexdigest(), tuple(layers), tuple(sorted(keys)))


# ---- targets -------------------------------------------------------------------------------------------
@dataclass
class Record:
    status: int
    ms: float
    md5: str
    cache: str = ""                      # X-Lantu-Cache
    body: bytes | None = None            # first round only; decoded after the passes
    summary: TileSummary | None = None


@dataclass
class Target:
    name: str
    label: str
    path_of: Callable[[Job], str] | None = None   # None: raw SQL on ``dsn``
    port: int = 0
    server: Server | None = None
    dsn: str = ""
    idle: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)   # raw SQL: connections kept between passes
    m: Measurement = field(default_factory=Measurement)
    rounds_tps: list[float] = field(default_factory=list)
    records: list[dict[int, Record]] = field(default_factory=list)   # per round: job index -> record
    cpu: dict[str, float] = field(default_factory=dict)   # seconds over all passes: server, postgres, client
    sessions: int = 0                                      # PostgreSQL sessions opened during the passes
    issues: list[str] = field(default_factory=list)
    wrong: bool = False


def lantu_path(job: Job) -> str:
    t = job.tile
    return f"/collections/{LAYER}/tiles/{GRID}/{t.z}/{t.y}/{t.x}"


def tipg_path(job: Job) -> str:
    t = job.tile
    return f"/collections/{TABLE}/tiles/{GRID}/{t.z}/{t.x}/{t.y}?properties={','.join(job.columns)}"


def tipg_stock_path(job: Job) -> str:
    t = job.tile
    return f"/collections/{TABLE}/tiles/{GRID}/{t.z}/{t.x}/{t.y}"


def start_lantu(home: BenchHome, port: int) -> Server:
    return Server("lantu", [str(VENV_BIN / "lantu"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                  home.env(), port, "/healthz", home.logs / "lantu-tiles.log").start()


def start_tipg(home: BenchHome, venv: Path, name: str, stock: bool, nodelay: bool) -> Server:
    """tipg under ``uvicorn --workers 2``; ``nodelay``: through bench/uvicorn_nodelay.py (TCP_NODELAY on the
    listening socket, as gunicorn does for Lantu; without it every response waits ~40 ms for a delayed ACK)."""
    port = free_port()
    env = home.env(DATABASE_URL=home.tcp_url(), TIPG_DB_SCHEMAS='["blueprint"]')
    if not stock:  # as close to Lantu's tiles as tipg's settings allow
        env.update(TIPG_TILE_BUFFER=str(BUFFER), TIPG_TILE_RESOLUTION=str(EXTENT),
                   TIPG_MAX_FEATURES_PER_TILE=str(TIPG_NO_CAP), TIPG_SET_MVT_LAYERNAME="true")
    launcher = [str(venv / "bin" / "python"), str(Path(__file__).resolve().parent / "uvicorn_nodelay.py")] \
        if nodelay else [str(venv / "bin" / "uvicorn")]
    return Server(name, [*launcher, "tipg.main:app", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
                  env, port, f"/collections/{TABLE}", home.logs / f"{name}-tiles.log").start()


def clear_cache(home: BenchHome) -> None:
    """Remove every cached tile (the tileset directories under ``cache/mvt``), as Lantu's own wipe does. The
    cache's change-log position (``.processed``) stays: without it a worker that notices the loss later (its sync
    runs at most once a second) would take the cache's history as unknown and wipe tiles written meanwhile."""
    root = home.path / "cache" / "mvt"
    if root.exists():
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


# ---- load ----------------------------------------------------------------------------------------------
def recording_factory(target: Target, jobs: Sequence[Job], book: dict[int, Record], keep_body: bool):
    """A client factory for ``run_concurrent``: jobs are indexes into ``jobs``; every answer is recorded in
    ``book`` (status, time, body hash, cache state; the body itself with ``keep_body``)."""
    lock = threading.Lock()

    def keep(index: int, status: int, ms: float, body: bytes, cache: str = "") -> int:
        record = Record(status, ms, hashlib.md5(body).hexdigest(), cache, body if keep_body else None)
        with lock:
            book[index] = record
        return 200 if status in (200, 204) else status

    if target.path_of is None:   # raw SQL
        def make_sql():
            # Connections live for the whole bench, like a server's pool: a new backend's first tile costs ~90 ms
            # of PostGIS/PROJ set-up (the 4490 ↔ 3857 transformations), which is not what is measured here.
            try:
                conn = target.idle.get_nowait()
            except queue.Empty:
                conn = psycopg2.connect(target.dsn)
                conn.autocommit = True

            def call(index: int) -> int:
                job = jobs[index]
                started = time.perf_counter()
                with conn.cursor() as cur:
                    cur.execute(job.sql, job.params)
                    _, data = cur.fetchone()
                return keep(index, 200, (time.perf_counter() - started) * 1000, bytes(data))

            return call, lambda: target.idle.put(conn)
        return make_sql

    def make_http():
        client = HttpClient("127.0.0.1", target.port, accept=MVT)

        def call(index: int) -> int:
            started = time.perf_counter()
            status, headers, body = client.get(target.path_of(jobs[index]))
            ms = (time.perf_counter() - started) * 1000
            return keep(index, status, ms, body, headers.get("X-Lantu-Cache", ""))

        return call, client.close
    return make_http


def cpu_snapshot(target: Target, postmaster: int | None) -> dict[str, float]:
    return {"server": cpu_seconds(target.server.proc.pid) if target.server else 0.0,
            "postgres": cpu_seconds(postmaster) if postmaster else 0.0,
            "client": self_cpu_seconds()}


class SessionCounter:
    """``pg_stat_database.sessions`` of the bench database: how many connections were opened. Backends report
    their statistics at most once a second, so a reading waits STATS_DELAY_S after the work it counts."""

    STATS_DELAY_S = 1.2

    def __init__(self, dsn: str):
        self.conn = psycopg2.connect(dsn)
        self.conn.autocommit = True

    def read(self) -> int:
        time.sleep(self.STATS_DELAY_S)
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_stat_clear_snapshot(); SELECT sessions FROM pg_stat_database "
                        "WHERE datname = current_database()")
            return int(cur.fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def one_pass(target: Target, jobs: Sequence[Job], clients: int, keep_body: bool, postmaster: int | None,
             sessions: SessionCounter | None = None) -> None:
    """The whole list once from ``clients`` clients; tiles/s, every answer, the CPU time spent by the server,
    PostgreSQL and this process (the clients) and the sessions opened are added to ``target``."""
    book: dict[int, Record] = {}
    before = target.m.concurrent_wall_s
    opened0 = sessions.read() if sessions else 0
    cpu0 = cpu_snapshot(target, postmaster)
    run_concurrent(recording_factory(target, jobs, book, keep_body), list(range(len(jobs))), clients, target.m)
    cpu1 = cpu_snapshot(target, postmaster)
    for key, value in cpu1.items():
        target.cpu[key] = target.cpu.get(key, 0.0) + value - cpu0[key]
    if sessions:
        target.sessions += sessions.read() - opened0
    target.rounds_tps.append(len(jobs) / (target.m.concurrent_wall_s - before))
    target.records.append(book)


WARMUP_PASSES = 2


def warm_up(targets: Sequence[Target], jobs: Sequence[Job], clients: int) -> None:
    """Every target serves the whole list WARMUP_PASSES times: connections and pools are open (a new PostgreSQL
    backend spends ~90 ms setting up PROJ on its first tile), PostgreSQL's buffers and the servers warm."""
    for target in targets:
        for _ in range(WARMUP_PASSES):
            run_concurrent(recording_factory(target, jobs, {}, False), list(range(len(jobs))), clients,
                           Measurement())


def measure(home: BenchHome, targets: list[Target], jobs: list[Job], rounds: int, clients: int) -> None:
    """``rounds`` rounds; in each, the targets take turns (in rotating order) serving the whole list from
    ``clients`` clients. Lantu's turn is a cleared cache (uncached) and then the same list again (cached)."""
    units: list[list[Target]] = []
    for t in targets:
        if t.name == "lantu_cached":
            units[-1].append(t)
        else:
            units.append([t])
    sessions = SessionCounter(home.socket_dsn)
    for r in range(rounds):
        order = units[r % len(units):] + units[:r % len(units)]
        log(f"round {r + 1}/{rounds}: {' → '.join(t.name for u in order for t in u)}; load average {loadavg()}")
        for unit in order:
            for target in unit:
                if target.name == "lantu_uncached":
                    clear_cache(home)
                one_pass(target, jobs, clients, r == 0, postmaster_pid(home), sessions)
        log("  " + ", ".join(f"{t.name} {t.rounds_tps[-1]:.1f}" for t in targets) + " tiles/s")
    sessions.close()


# ---- correctness ---------------------------------------------------------------------------------------
def check(targets: list[Target], jobs: list[Job]) -> None:
    """Against raw SQL, per tile: Lantu byte-identical (and every uncached request a miss, every cached one a
    hit); tipg the same empty / non-empty pattern and feature counts within reason."""
    for t in targets:  # decode the first round's tiles, then let the bodies go
        for rec in t.records[0].values():
            if rec.body is not None:
                rec.summary = summarize(rec.body) if rec.status in (200, 204) else None
                rec.body = None
    raw = next(t for t in targets if t.name == "raw_sql")
    reference = raw.records[0]
    raw_md5 = {i: {b[i].md5 for b in raw.records} for i in range(len(jobs))}
    if any(len(v) > 1 for v in raw_md5.values()):
        raw.issues.append("raw SQL answered differently between rounds")
    for t in targets:
        if t is raw:
            continue
        bad_status = [(i, rec.status) for book in t.records for i, rec in book.items() if rec.status not in (200, 204)]
        if bad_status:
            t.wrong = True
            i, status = bad_status[0]
            cause = t.server.last_error() if t.server else ""
            t.issues.append(f"{len(bad_status)} HTTP errors (first: {jobs[i].tile} → {status}"
                            + (f", {cause}" if cause else "") + ")")
        if t.name.startswith("lantu"):
            want = "miss" if t.name == "lantu_uncached" else "hit"
            states = [rec.cache for book in t.records for rec in book.values()]
            other = len(states) - states.count(want)
            if other:
                t.wrong = True
                t.issues.append(f"{other} of {len(states)} requests not a cache {want} "
                                f"({', '.join(sorted(set(states) - {want}))})")
            else:
                t.issues.append(f"all {len(states)} requests X-Lantu-Cache: {want}")
            differ = sum(1 for book in t.records for i, rec in book.items() if rec.md5 not in raw_md5[i])
            if differ:
                t.wrong = True
                t.issues.append(f"{differ} tiles differ from raw SQL's bytes")
            else:
                t.issues.append("byte-identical to raw SQL")
            continue
        first = t.records[0]
        pattern = [i for i in range(len(jobs))
                   if (reference[i].summary.features > 0) != (first[i].summary and first[i].summary.features > 0)]
        if pattern:
            t.wrong = True
            t.issues.append(f"empty/non-empty differs from raw SQL in {len(pattern)} tiles "
                            f"(first {jobs[pattern[0]].tile})")
        capped = [i for i in range(len(jobs)) if first[i].summary and first[i].summary.features <= TIPG_CAP
                  < reference[i].summary.features]
        if capped:
            t.issues.append(f"{len(capped)} tiles cut at tipg's default {TIPG_CAP:,} features "
                            f"(z{', z'.join(str(z) for z in sorted({jobs[i].tile.z for i in capped}))})")
        ratios = [first[i].summary.features / reference[i].summary.features for i in range(len(jobs))
                  if first[i].summary and reference[i].summary.features and i not in capped]
        if ratios:
            low, high = min(ratios), max(ratios)
            total = sum(first[i].summary.features for i in first if first[i].summary)
            ref_total = sum(r.summary.features for r in reference.values())
            t.issues.append(f"features {total:,} vs raw {ref_total:,} ({total / ref_total:.3f}; per tile "
                            f"{low:.2f}–{high:.2f})")
            if low < 0.5 or high > 1.5:
                t.wrong = True
                t.issues.append("feature counts per tile off by more than half")


# ---- profile (--profile) -------------------------------------------------------------------------------

PROFILE_PASSES = 3
# Where a request thread of a Lantu worker spends its time; the first rule whose key is in the stack wins.
PROFILE_BUCKETS = [
    ("Pool._checkout", "pool: checkout (health check)"),
    ("tile_sql", "compose the SQL (psycopg2.sql)"),
    ("fetch_tile", "SQL: execute + fetch (PostgreSQL builds the tile; libpq receive; bytes copy)"),
    (".sync (", "cache: change-log sync"),
    ("TileCache.put", "cache: write the tile file (mkdir, mkstemp, write, rename)"),
    ("TileCache.get", "cache: read the tile file (on a miss: the failed open)"),
    ("_tile_layer", "layer and attributes for the zoom"),
    ("equivalent_web_zoom", "grid: equivalent web zoom"),
    ("Grid.bounds", "grid: tile bounds"),
    ("_tile_address", "grid: parse and check the address"),
    ("_source", "collection lookup"),
    ("tile_cache", "tile_cache()"),
    ("_tile_response", "tile view's own lines (md5 for the ETag, Response)"),
    ("write (gunicorn/util.py", "gunicorn: send the body (sendall)"),
    ("glogging", "gunicorn: access log"),
    ("send_headers", "gunicorn: send headers"),
]


def profile_lantu(home: BenchHome, lantu: Target, jobs: list[Job], clients: int) -> list[str]:
    """py-spy on both Lantu workers during uncached and cached passes (``clients`` clients): once with --idle
    (wall time of the request threads: where a tile waits) and once without (CPU: what competes with PostgreSQL
    for the cores). Returns the lines to print."""
    venv, _ = ensure_venv(home, "tools", ["py-spy"])
    pyspy = str(venv / "bin" / "py-spy")
    tiles = len(jobs) * PROFILE_PASSES
    lines = [f"Lantu profile: py-spy at {PROFILE_RATE} Hz on both gunicorn workers, {PROFILE_PASSES} passes of "
             f"{len(jobs)} tiles × {clients} clients per line; ms per tile, summed over threads "
             f"(wall: --idle, request threads; CPU: samples on CPU, request threads and the main loop)"]
    for kind in ("uncached", "cached"):
        results = {}
        for mode in ("wall", "cpu"):
            if kind == "cached":
                one_pass(Target("scratch", "", lantu.path_of, lantu.port), jobs, clients, False, None)  # fill it
            spies, outputs = spy_start(pyspy, lantu.server.worker_pids(), home.logs / f"py-spy-tiles-{kind}-{mode}",
                                  idle=mode == "wall")
            m = Measurement()
            for _ in range(PROFILE_PASSES):
                if kind == "uncached":
                    clear_cache(home)
                run_concurrent(recording_factory(lantu, jobs, {}, False), list(range(len(jobs))), clients, m)
            spy_stop(spies)
            results[mode] = (*spy_classify(outputs, mode == "cpu", PROFILE_BUCKETS), m)
        wall, cpu = results["wall"], results["cpu"]
        if not wall[2] and not cpu[2]:
            lines.append(f"  {kind}: no samples (py-spy needs ptrace; see {home.logs})")
            continue
        per = 1000 / PROFILE_RATE / tiles
        lines.append(f"  {kind}: wall {wall[2] * per:.2f} ms/tile, CPU {cpu[2] * per:.2f} ms/tile sampled "
                     f"({fmt(wall[3].rps)} and {fmt(cpu[3].rps)} tiles/s under py-spy)")
        lines.append(f"    {'wall':>7} {'CPU':>7}")
        names = sorted(set(wall[0]) | set(cpu[0]), key=lambda n: -(wall[0].get(n, 0) + cpu[0].get(n, 0)))
        for name in names:
            lines.append(f"    {wall[0].get(name, 0) * per:7.3f} {cpu[0].get(name, 0) * per:7.3f}  {name}")
        top = sorted(cpu[1].items(), key=lambda kv: -kv[1])[:8]
        lines.append("    top CPU leaf frames: " + "; ".join(f"{leaf} {n * per:.3f}" for leaf, n in top))
    return lines


# ---- report --------------------------------------------------------------------------------------------
def tps(t: Target) -> float | None:
    return t.m.rps


def report(targets: list[Target], jobs: list[Job], rows: int, data_label: str, centre, half: float, args,
           timings: dict[str, str], profile: list[str]) -> None:
    by = {t.name: t for t in targets}
    raw = by["raw_sql"]
    per_zoom = {z: [i for i, j in enumerate(jobs) if j.tile.z == z] for z in ZOOMS}
    lon, lat, dense = centre
    print()
    print(f"tiles bench — {TABLE}: {rows:,} rows, {data_label}; {len(jobs)} {GRID} tiles z{ZOOMS[0]}–z{ZOOMS[-1]} "
          f"touching a {2 * half * 111.2:.1f} km box around ({lon:.3f}, {lat:.3f}) (densest 3 × 3 km near 星沙: "
          f"{dense} polygons); {args.rounds} rounds × whole list × {args.clients} clients, targets taking turns")
    header = (f"{'target':15} {'tiles/s':>8} {'min–max/round':>14} {'÷ raw':>6} {'p50 ms':>7} {'p95 ms':>7} "
              f"{'MB/pass':>8} {'CPU ms/tile srv/pg/cli':>22} {'conn/pass':>9}  notes")
    print(header)
    print("-" * len(header))
    raw_tps = tps(raw)
    for t in targets:
        rate = tps(t)
        lat_ms = t.m.concurrent_ms
        p50 = statistics.median(lat_ms) if lat_ms else None
        p95 = sorted(lat_ms)[max(0, math.ceil(0.95 * len(lat_ms)) - 1)] if lat_ms else None
        spread = f"{min(t.rounds_tps):.0f}–{max(t.rounds_tps):.0f}" if t.rounds_tps else "—"
        ratio = raw_tps / rate if rate and raw_tps else None
        size = sum(r.summary.size for r in t.records[0].values() if r.summary) / 1e6 if t.records else None
        served = len(jobs) * len(t.records)
        cpu = "/".join(f"{1000 * t.cpu.get(k, 0) / served:.2f}" for k in ("server", "postgres", "client")) \
            if served else "—"
        conns = fmt(t.sessions / len(t.records), 1) if t.records else "—"
        print(f"{t.name:15} {fmt(rate):>8} {spread:>14} {fmt(ratio, 2):>6} {fmt(p50):>7} {fmt(p95):>7} "
              f"{fmt(size, 2):>8} {cpu:>22} {conns:>9}  {'WRONG: ' if t.wrong else ''}{'; '.join(t.issues) or 'ok'}")
    print()
    print(f"÷ raw: time per tile over raw SQL's (raw tiles/s ÷ tiles/s); p50/p95: latency of a tile under "
          f"{args.clients} clients; MB/pass: bodies of one pass over the list; CPU ms/tile: CPU time during the "
          f"passes per tile, of the server's processes / all of PostgreSQL / this process (the {args.clients} "
          f"clients), on {os.cpu_count()} cores; conn/pass: PostgreSQL sessions opened per pass "
          f"(pg_stat_database.sessions; raw SQL keeps its 4 connections for the whole bench)")
    print()
    # per zoom: tiles, features and size (raw / first tipg), median latency under load per target
    names = [t.name for t in targets]
    head = f"{'zoom':>4} {'tiles':>5} {'features':>9} {'KB raw':>7}"
    tipgs = [t for t in targets if t.name.startswith("tipg")]
    for t in tipgs:
        head += f" {'KB ' + t.name:>{max(9, len(t.name) + 3)}}"
    head += "  median ms per tile under load: " + " / ".join(names)
    print(head)
    print("-" * len(head))
    for z, idx in per_zoom.items():
        if not idx:
            continue
        ref = raw.records[0]
        feats = statistics.median(ref[i].summary.features for i in idx)
        kb = statistics.median(ref[i].summary.size for i in idx) / 1024
        line = f"{z:>4} {len(idx):>5} {feats:>9.0f} {kb:>7.0f}"
        for t in tipgs:
            sizes = [t.records[0][i].summary.size for i in idx if i in t.records[0] and t.records[0][i].summary]
            line += f" {fmt(statistics.median(sizes) / 1024 if sizes else None, 0):>{max(9, len(t.name) + 3)}}"
        meds = []
        for t in targets:
            ms = [book[i].ms for book in t.records for i in idx if i in book]
            meds.append(fmt(statistics.median(ms) if ms else None, 1))
        print(line + "  " + " / ".join(meds))
    print("(features, KB: median per tile of that zoom; tipg KB from its first round)")
    print()
    attr_lines = []
    for t in targets:
        if not t.records or t.name == "lantu_cached":
            continue
        book = t.records[0]
        low = [i for z in ZOOMS if z < 14 for i in per_zoom[z]]
        high = [i for z in ZOOMS if z >= 14 for i in per_zoom[z]]
        keys_low = {k for i in low if i in book and book[i].summary for k in book[i].summary.keys}
        keys_high = {k for i in high if i in book and book[i].summary for k in book[i].summary.keys}
        names_ = sorted({name for r in book.values() if r.summary for name, _ in r.summary.layers})
        attr_lines.append(f"  {t.name:15} layer {','.join(names_) or '—'}; z10–13 attributes: "
                          f"{','.join(sorted(keys_low)) or '—'}; z14–16: {','.join(sorted(keys_high)) or '—'}")
    print("what is in the tiles (from the first round):")
    print("\n".join(attr_lines))
    for t in targets:
        print(f"  {t.name:15} {t.label}")
    if timings:
        print("timings: " + "; ".join(f"{k} {v}" for k, v in timings.items()))
    if profile:
        print()
        print("\n".join(profile))
    print()
    parts, verdict = [], True
    unc, cached = by["lantu_uncached"], by["lantu_cached"]
    for t, label, target, strict in ((unc, "lantu_uncached/raw_sql", TARGET_UNCACHED, False),
                                     (cached, "lantu_cached/raw_sql", TARGET_CACHED, True)):
        rate = tps(t)
        if t.wrong or raw.wrong or not rate or not raw_tps:
            parts.append(f"{label}=n/a (answer wrong or missing) FAIL")
            verdict = False
            continue
        value = raw_tps / rate
        ok = value < target if strict else value <= target
        verdict &= ok
        parts.append(f"{label}={value:.2f} (target {'<' if strict else '≤'}{target:g} {'PASS' if ok else 'FAIL'})")
    for t in tipgs:
        rate, lantu_rate = tps(t), tps(unc)
        if t.wrong or not rate or not lantu_rate:
            parts.append(f"lantu/{t.name}=n/a ({'answer wrong' if t.wrong else 'not measured'})")
            continue
        value = rate / lantu_rate
        parts.append(f"lantu/{t.name}={value:.2f} (issue ≤{TARGET_TIPG} {'PASS' if value <= TARGET_TIPG else 'FAIL'}, "
                     f"informational)")
    if not tipgs:
        parts.append("lantu/tipg=skipped")
    print("tiles: " + " ".join(parts) + (" PASS" if verdict else " FAIL"))


# ---- main ----------------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/tiles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (2 rounds instead of 5)")
    parser.add_argument("--home", help="bench LANTU_HOME (default $BENCH_HOME or ${LANTU_HOME:-var}/bench)")
    parser.add_argument("--rounds", type=int, help="passes over the tile list per target; default 5, --quick 2")
    parser.add_argument("--tiles", type=int, default=TARGET_TILES, help=f"about how many tiles (default "
                        f"{TARGET_TILES})")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--peers", default="tipg", help="comma list of peers: tipg (configured like Lantu's "
                        "tiles), tipg-stock (tipg's defaults), tipg-nagle (like tipg, but plain uvicorn without "
                        "TCP_NODELAY); '' for none")
    parser.add_argument("--profile", action="store_true", help="then profile Lantu's workers with py-spy (own venv) "
                        "and print where a tile's time goes")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Lantu setting for the bench's settings file (e.g. pool_min=4), to try a change; "
                        "repeatable; shown in the report")
    parser.add_argument("--keep", action="store_true", help="leave the servers and the database running")
    args = parser.parse_args()
    try:
        extra = dict(item.split("=", 1) for item in args.set)
    except ValueError:
        parser.error("--set takes KEY=VALUE")
    args.rounds = args.rounds or (2 if args.quick else 5)
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    unknown = set(peers) - {"tipg", "tipg-stock", "tipg-nagle"}
    if unknown:
        parser.error(f"unknown peers: {', '.join(sorted(unknown))}")
    install_signal_handlers()
    home = BenchHome.resolve(args.home)
    timings: dict[str, str] = {}
    db_started = False
    started = time.perf_counter()
    try:
        lantu_port = free_port()
        home.write_settings(lantu_port, extra)
        if extra:
            timings["Lantu settings changed by --set"] = ", ".join(f"{k}={v}" for k, v in extra.items())
        log(f"bench home {home.path} (embedded PostgreSQL on port {home.pg_port})")
        out = lantu_cli(home, "db", "start")
        db_started = "database started" in out
        log(out)
        rows, data_label = ensure_data(home, False, timings)
        log(f"{TABLE}: {rows:,} rows ({data_label})")
        venv = None
        if peers:
            venv, spent = ensure_venv(home, "tipg", TIPG_REQUIREMENTS)
            timings["venv tipg"] = "reused" if spent is None else f"created in {spent:.1f} s"
        warm_table(home)
        grid = grids()[GRID]
        centre = dense_centre(home)
        tiles, half = tile_list(grid, centre[0], centre[1], args.tiles)
        jobs = build_jobs(home, grid, tiles)
        log(f"{len(jobs)} tiles around ({centre[0]:.3f}, {centre[1]:.3f}): "
            + ", ".join(f"z{z} {sum(1 for j in jobs if j.tile.z == z)}" for z in ZOOMS))

        t0 = time.perf_counter()
        raw = Target("raw_sql", "Lantu's tile_sql statement for the same tiles, execute + fetchone over the unix "
                     "socket from threads, no HTTP", dsn=home.socket_dsn)
        lantu_server = start_lantu(home, lantu_port)
        changed = f" WITH --set {', '.join(args.set)}" if args.set else ""
        targets = [raw,
                   Target("lantu_uncached", f"Lantu (gunicorn 2×4 gthread){changed}, tile cache cleared before the "
                          f"pass", lantu_path, lantu_port, lantu_server),
                   Target("lantu_cached", "Lantu, the same tiles again right after (all from the disk cache)",
                          lantu_path, lantu_port, lantu_server)]
        like = (f"TIPG_TILE_BUFFER={BUFFER}, no feature cap, layer named after the table, properties= Lantu's "
                f"attributes at that zoom")
        for name, label, path_of in (
                ("tipg", f"tipg 1.6.1, uvicorn 2 workers with TCP_NODELAY; {like}", tipg_path),
                ("tipg-stock", "tipg 1.6.1 with its defaults (buffer 256, ≤ 10 000 features a tile, layer 'default', "
                 "every column), uvicorn 2 workers with TCP_NODELAY", tipg_stock_path),
                ("tipg-nagle", f"tipg 1.6.1, plain `uvicorn --workers 2` (as bench/features runs it: no TCP_NODELAY, "
                 f"~40 ms delayed-ACK wait per response); {like}", tipg_path)):
            if name in peers:
                server = start_tipg(home, venv, name, stock=name == "tipg-stock", nodelay=name != "tipg-nagle")
                targets.append(Target(name, label, path_of, server.port, server))
        for server in dict.fromkeys(t.server for t in targets if t.server):
            server.wait_ready()
        timings["servers ready"] = f"{time.perf_counter() - t0:.1f} s"
        log(f"warm-up: the whole list {WARMUP_PASSES}× per target; load average {loadavg()}")
        warm_up([t for t in targets if t.name != "lantu_cached"], jobs, args.clients)
        measure(home, targets, jobs, args.rounds, args.clients)
        while not raw.idle.empty():
            raw.idle.get_nowait().close()
        timings["load average"] = f"{loadavg()} (1/5/15 min; other work on the machine skews absolute figures)"
        check(targets, jobs)
        profile = profile_lantu(home, targets[1], jobs, args.clients) if args.profile else []
        timings["total"] = f"{time.perf_counter() - started:.0f} s"
        report(targets, jobs, rows, data_label, centre, half, args, timings, profile)
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        print(f"tiles: error: {exc} FAIL")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutdown(home, args.keep, db_started)


if __name__ == "__main__":
    sys.exit(main())

"""bench/ows — WMS GetMap through Lantu against the same request sent straight to a MapServer FastCGI worker;
WFS GetFeature of 1 000 features (GML 3.2 and GeoJSON); a cached WMTS tile against its first (miss) request.

``lantu serve --workers 2`` on the bench database (the county demo of bench/features, loaded if missing) starts its
own ``mapserv`` FastCGI workers. It runs in a LANTU_HOME of its own, ``$BENCH_HOME/ows`` (sockets in
``$BENCH_HOME/ows/run/mapserv/mapserv-N.sock``), because bench/features and bench/tiles serve from the bench home
itself and two servers on one home take each other's mapserv sockets. Targets, one client, taking turns request by
request (rotating which goes first), so that load from elsewhere on the machine falls on both alike:

- ``lantu``  — ``GET /wms?…`` / ``GET /wfs?…`` over one keep-alive HTTP connection (gunicorn 2 × 4 gthread →
  Flask → ``lantu.server.fcgi.request`` → a worker);
- ``direct`` — the bench process itself calls ``lantu.server.fcgi.request`` on a worker socket (chosen like
  Lantu does: shuffled, next one if a socket does not answer) with the CGI parameters Lantu's ``/wms`` route
  builds — computed by the route's own ``_query`` and ``_cgi_params`` before timing, and checked to hold the
  **identical** ``QUERY_STRING``. So ``lantu/direct`` is what Lantu adds in front of MapServer: HTTP, gunicorn,
  Flask, the route.

GetMap: 256 × 256 PNG (TRANSPARENT), ``LAYERS=land_use_survey,basic_farmland`` (永久基本农田's hatch over 土地利用
现状), WMS 1.3.0, CRS EPSG:4490 (BBOX lat,lon) and EPSG:3857, the ground size of a web-map tile from z11 (~17 km)
to z16 (~0.5 km) around 8 centres — 4 land-use polygons near 星沙's seat, 4 永久基本农田 polygons anywhere in the
county. Every answer of the probes must be a 256 × 256 PNG, byte-identical through Lantu and direct, and not
all of them blank. Every distinct request is sent ``--requests / 96`` times to each target. The last line's
``getmap lantu/direct`` is, per distinct request, Lantu's median ÷ direct's median, and of these the median;
target ≤ 1.1, and it alone decides PASS/FAIL. Shown beside it: the pooled ratio (Lantu's median ÷ direct's median
over all requests), which over maps from 10 to 200 ms can compare two different requests and swings by 10–30 %
between runs, and Lantu's floor (a /wms request its route refuses before MapServer).

Informational: WFS 2.0 ``GetFeature TYPENAMES=lantu:land_use_survey COUNT=1000`` at ``STARTINDEX`` offsets spread
over the table, as GML 3.2 and as GeoJSON (Lantu and direct; 1 000 features checked, same bytes but for the GML
time stamp); WMTS REST tiles of ``land_use_survey`` (WebMercatorQuad and CGCS2000Quad, z13–16 around 星沙, each in
its own MapProxy meta tile): the layer's tile cache is removed, every tile is requested once (miss: MapProxy runs
mapserv as CGI for a 4 × 4 meta tile), then again several times (hits, served from the disk cache).

Run ``bench/ows`` (``--quick`` for a short run, ``--profile`` to py-spy Lantu's workers, ``--help``).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

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
    ensure_venv,
    fmt,
    free_port,
    install_signal_handlers,
    lantu_cli,
    log,
    percentile,
    run_interleaved,
    run_serial,
    shutdown,
    spy_classify,
    spy_start,
    spy_stop,
)
from features import ensure_data, loadavg, warm_table  # noqa: E402

from lantu.server import fcgi  # noqa: E402
from lantu.server import ows as ows_route  # noqa: E402
from lantu.server.mapserver_pool import socket_paths  # noqa: E402

LAND_USE = "land_use_survey"
FARMLAND = "basic_farmland"
LAYERS = f"{LAND_USE},{FARMLAND}"
XINGSHA = (113.086, 28.261)        # 星沙街道's seat in the demo county (demo/county.py), as in bench/tiles
XINGSHA_RADIUS = 0.05
ZOOMS = tuple(range(11, 17))       # ground size of a 256-pixel web-map tile at these zooms
CRSS = ("EPSG:4490", "EPSG:3857")
SIZE = 256
WFS_COUNT = 1000
WFS_FORMATS = {"GML 3.2": "application/gml+xml; version=3.2", "GeoJSON": "geojson"}
WMTS_GRIDS = ("WebMercatorQuad", "CGCS2000Quad")
WMTS_ZOOMS = (13, 14, 15, 16)
META = 4                           # MapProxy's default meta_size (4 × 4 tiles rendered per miss)
EARTH = 6378137.0
TARGET_GETMAP = 1.1                # the issue: GetMap through Lantu ≤ 1.1 × straight to MapServer


# ---- jobs ----------------------------------------------------------------------------------------------
@dataclass
class Job:
    script: str            # /wms, /wfs or /wmts/…
    qs: str                # the query string, exactly as sent (and as Lantu forwards it to MapServer)
    group: str             # table row it belongs to
    crs: str = ""
    zoom: int = 0
    tile: tuple = ()       # WMTS: (grid, z, col, row)
    params: dict[str, str] | None = field(default=None, repr=False)  # the CGI parameters Lantu's route sends


def centres(home: BenchHome) -> list[tuple[str, float, float]]:
    """4 points on land-use polygons within 0.05° of 星沙's seat, 4 on 永久基本农田 polygons anywhere (fixed
    pseudo-random choice, the same every run on the same data)."""
    x, y = XINGSHA
    with psycopg2.connect(home.socket_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM blueprint.{LAND_USE} "
                    f"WHERE geom && ST_Expand(ST_SetSRID(ST_MakePoint(%s, %s), 4490), %s) "
                    f"ORDER BY md5(fid::text || 'ows') LIMIT 4) s", (x, y, XINGSHA_RADIUS))
        near = [("星沙", px, py) for px, py in cur.fetchall()]
        cur.execute(f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) p FROM blueprint.{FARMLAND} "
                    f"ORDER BY md5(fid::text || 'ows') LIMIT 4) s")
        county = [("county", px, py) for px, py in cur.fetchall()]
    conn.close()
    if len(near) < 4 or len(county) < 4:
        raise BenchError(f"too few features for the GetMap centres ({len(near)} near 星沙, {len(county)} 永久基本农田)")
    return near + county


def mercator(lon: float, lat: float) -> tuple[float, float]:
    return EARTH * math.radians(lon), EARTH * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def getmap_qs(crs: str, zoom: int, lon: float, lat: float) -> str:
    if crs == "EPSG:3857":
        cx, cy = mercator(lon, lat)
        half = math.pi * EARTH / 2 ** zoom
        bbox = ",".join(f"{v:.2f}" for v in (cx - half, cy - half, cx + half, cy + half))
    else:  # EPSG:4490 in WMS 1.3.0: lat,lon order; the same ground size as the web-map tile
        half_lon = 180 / 2 ** zoom
        half_lat = half_lon * math.cos(math.radians(lat))
        bbox = ",".join(f"{v:.6f}" for v in (lat - half_lat, lon - half_lon, lat + half_lat, lon + half_lon))
    return urlencode([("SERVICE", "WMS"), ("VERSION", "1.3.0"), ("REQUEST", "GetMap"), ("LAYERS", LAYERS),
                      ("STYLES", ""), ("CRS", crs), ("BBOX", bbox), ("WIDTH", str(SIZE)), ("HEIGHT", str(SIZE)),
                      ("FORMAT", "image/png"), ("TRANSPARENT", "TRUE")])


def getmap_jobs(points: Sequence[tuple[str, float, float]], n: int) -> list[Job]:
    """Centre by centre, every zoom in both CRSs (so any prefix of 12·k jobs covers every zoom and CRS alike),
    cycled when ``n`` is larger than the set."""
    unique = [Job("/wms", getmap_qs(crs, z, lon, lat), f"z{z}", crs, z)
              for _, lon, lat in points for z in ZOOMS for crs in CRSS]
    return [unique[i % len(unique)] for i in range(n)]


def wfs_jobs(rows: int, n: int, seed: int) -> dict[str, list[Job]]:
    rng = random.Random(seed)
    offsets = [rng.randint(0, rows - WFS_COUNT) for _ in range(n)]
    return {name: [Job("/wfs", urlencode([("SERVICE", "WFS"), ("VERSION", "2.0.0"), ("REQUEST", "GetFeature"),
                                          ("TYPENAMES", f"lantu:{LAND_USE}"), ("COUNT", str(WFS_COUNT)),
                                          ("STARTINDEX", str(o)), ("SORTBY", "fid"), ("OUTPUTFORMAT", fmt_)]),
                       name)
                   for o in offsets]
            for name, fmt_ in WFS_FORMATS.items()}


def tile_of(grid: str, z: int, lon: float, lat: float) -> tuple[int, int]:
    """WMTS TileCol, TileRow (top-left origin) of the tile holding lon/lat."""
    if grid == "WebMercatorQuad":
        x, y = mercator(lon, lat)
        span = 2 * math.pi * EARTH / 2 ** z
        return int((x + math.pi * EARTH) // span), int((math.pi * EARTH - y) // span)
    span = 360 / 2 ** z                       # CGCS2000Quad: origin (−180, 90), level n = 天地图 level n
    return int((lon + 180) // span), int((90 - lat) // span)


def wmts_jobs() -> list[Job]:
    """Per grid and zoom, the tile holding 星沙's seat and one a meta tile further east: every tile in a meta
    tile of its own, so each first request renders (miss)."""
    jobs = []
    for grid in WMTS_GRIDS:
        for z in WMTS_ZOOMS:
            col, row = tile_of(grid, z, *XINGSHA)
            for c in (col, col + META):
                jobs.append(Job(f"/wmts/{LAND_USE}/{grid}/{z}/{c}/{row}.png", "", grid, zoom=z,
                                tile=(grid, z, c, row)))
    return jobs


# ---- clients -------------------------------------------------------------------------------------------
@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes


def route_cgi_params(job: Job, port: int) -> dict[str, str]:
    """The CGI parameters Lantu's /wms and /wfs route hands to mapserv for ``GET job`` from 127.0.0.1 to
    127.0.0.1:port: built by the route's own functions (``_query``, ``_cgi_params`` of server/ows.py) in a
    request context like gunicorn's, so the direct request stays identical when the route changes."""
    from flask import Flask

    app = Flask("bench-ows")
    with app.test_request_context(f"{job.script}?{job.qs}", base_url=f"http://127.0.0.1:{port}",
                                  environ_base={"REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1"}):
        pairs, problem = ows_route._query(ows_route.SERVICE_OF[job.script])
        if problem:
            raise BenchError(f"Lantu's route refuses {job.script}?{job.qs}: {problem}")
        return ows_route._cgi_params(pairs, b"")


def attach_params(jobs: Sequence[Job], port: int) -> None:
    """Compute each distinct job's CGI parameters once (before timing) and check that Lantu forwards the
    query string unchanged, so that "the same QUERY_STRING" holds for the direct request."""
    cache: dict[str, dict[str, str]] = {}
    for job in jobs:
        key = job.script + "?" + job.qs
        if key not in cache:
            cache[key] = route_cgi_params(job, port)
            if cache[key].get("QUERY_STRING") != job.qs:
                raise BenchError(f"Lantu forwards another QUERY_STRING than the bench sends: {job.qs} → "
                                 f"{cache[key].get('QUERY_STRING')}")
        job.params = cache[key]


class Direct:
    """Straight to the mapserv workers, as Lantu's route does it: sockets shuffled, the first that answers."""

    def __init__(self, sockets: Sequence[str], port: int, seed: int = 7):
        self.sockets, self.port, self.rng = list(sockets), port, random.Random(seed)

    def get(self, job: Job) -> Answer:
        order = self.sockets[:]
        self.rng.shuffle(order)
        for address in order:
            try:
                answer = fcgi.request(address, job.params or route_cgi_params(job, self.port))
                break
            except fcgi.FastCGIError:
                continue
        else:
            return Answer(503, "", b"")
        ctype = next((v for k, v in answer.headers if k.lower() == "content-type"), "")
        return Answer(answer.status, ctype, answer.body)

    def __call__(self, job: Job) -> int:
        return self.get(job).status


class Lantu:
    def __init__(self, port: int):
        self.client = HttpClient("127.0.0.1", port, accept="*/*")

    def path(self, job: Job) -> str:
        return f"{job.script}?{job.qs}" if job.qs else job.script

    def get(self, job: Job) -> Answer:
        status, headers, body = self.client.get(self.path(job))
        return Answer(status, headers.get("Content-Type", ""), body)

    def __call__(self, job: Job) -> int:
        return self.client(self.path(job))

    def close(self) -> None:
        self.client.close()


def lantu_factory(port: int):
    def make():
        client = Lantu(port)
        return client, client.close
    return make


def direct_factory(sockets: Sequence[str], port: int):
    def make():
        return Direct(sockets, port), (lambda: None)
    return make


# ---- the server ----------------------------------------------------------------------------------------
def sockets_answering(paths: Sequence[Path]) -> list[Path]:
    live = []
    for path in paths:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(1)
            try:
                sock.connect(str(path))
                live.append(path)
            except OSError:
                pass
    return live


def mapserv_listeners(lantu_home: Path) -> list[str]:
    """Listening unix sockets bound to this home's mapserv paths, from /proc/net/unix (which keeps a socket's
    path after the file was unlinked, e.g. by another server that took the path over)."""
    prefix = str(lantu_home / "run" / "mapserv") + "/mapserv-"
    try:
        lines = Path("/proc/net/unix").read_text().splitlines()[1:]
    except OSError:
        return []
    return [f[-1] for f in (line.split() for line in lines)
            if len(f) >= 8 and f[-1].startswith(prefix) and int(f[3], 16) & 0x10000]  # __SO_ACCEPTCON


def refuse_if_busy(lantu_home: Path, wait_s: float = 0) -> None:
    """Two ``lantu serve`` on one home take each other's mapserv sockets (run/mapserv/mapserv-N.sock: the later
    one unlinks and rebinds them, the first to stop unlinks them), so the bench runs only when it is alone
    (waiting up to ``wait_s`` for the other server to end)."""
    deadline = time.monotonic() + wait_s
    if mapserv_listeners(lantu_home) and wait_s:
        log(f"another `lantu serve` uses {lantu_home}: waiting up to {wait_s:.0f} s for it to end")
    while mapserv_listeners(lantu_home) and time.monotonic() < deadline:
        time.sleep(2)
    if busy := mapserv_listeners(lantu_home):
        raise BenchError(f"another `lantu serve` is using {lantu_home} (a mapserv worker listens on {busy[0]}; "
                         f"another bench/ows running?): wait for it to end, or use --wait")


def serve_home(home: BenchHome, port: int) -> tuple[Path, dict[str, str]]:
    """The LANTU_HOME of this bench's server, ``$BENCH_HOME/ows``, and its environment. bench/features and
    bench/tiles run ``lantu serve`` on the bench home itself, and two servers on one home take each other's
    mapserv sockets; so this one gets a home of its own, on the bench home's database (the same unix socket
    the embedded cluster's DSN names) and with its demo files (the DEM: the same mapfile)."""
    path = home.path / "ows"
    path.mkdir(parents=True, exist_ok=True)
    demo = path / "demo"
    if not demo.exists() and not demo.is_symlink() and (home.path / "demo").is_dir():
        demo.symlink_to(home.path / "demo")
    socket_dir = quote(str(home.path / "run" / "pg"), safe="/")
    url = f"postgresql://lantu@/lantu?host={socket_dir}&port={home.pg_port}"
    settings = path / "bench-settings.yaml"
    settings.write_text(f"home: {json.dumps(str(path))}\ndatabase_url: {json.dumps(url)}\n"
                        f"bind: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\nworkers: 2\n", encoding="utf-8")
    return path, {**home.env(), "LANTU_HOME": str(path), "LANTU_SETTINGS": str(settings)}


def start_lantu(home: BenchHome, port: int, wait_s: float) -> tuple[Server, Path, list[str]]:
    lantu_home, env = serve_home(home, port)
    refuse_if_busy(lantu_home, wait_s)
    paths = socket_paths(lantu_home / "run", 2)  # settings.mapserver_workers: the default
    server = Server("lantu", [str(VENV_BIN / "lantu"), "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"],
                    env, port, "/healthz", home.logs / "lantu-ows.log").start()
    server.wait_ready()
    deadline = time.monotonic() + 30
    while len(sockets_answering(paths)) < len(paths):
        if time.monotonic() > deadline:
            raise BenchError(f"the mapserv workers did not come up: {server.log_tail()}")
        time.sleep(0.2)
    return server, lantu_home, [str(p) for p in paths]


def socket_inodes(sockets: Sequence[str]) -> list[int]:
    return [os.stat(s).st_ino for s in sockets]


# ---- correctness ---------------------------------------------------------------------------------------
def png_drawn(body: bytes) -> tuple[tuple[int, int], float]:
    """(size, share of pixels that are not fully transparent) of a PNG."""
    from PIL import Image

    image = Image.open(io.BytesIO(body))
    image.load()
    alpha = image.convert("RGBA").getchannel("A")
    drawn = sum(count for value, count in enumerate(alpha.histogram()) if value > 0)
    return image.size, drawn / (image.size[0] * image.size[1])


def check_getmap(lantu: Lantu, direct: Direct, jobs: Sequence[Job]) -> tuple[list[str], list[float], int]:
    """One probe per distinct request: returns (problems, drawn share per probe, PNG bytes of the probes)."""
    problems: list[str] = []
    drawn: list[float] = []
    total = 0
    differ = 0
    for job in jobs:
        a, b = lantu.get(job), direct.get(job)
        for who, ans in (("lantu", a), ("direct", b)):
            if ans.status != 200 or not ans.content_type.startswith("image/png"):
                text = ans.body[:300].decode("utf-8", "replace")
                raise BenchError(f"GetMap {who}: HTTP {ans.status} {ans.content_type} for {job.qs}: {text}")
        size, share = png_drawn(a.body)
        if size != (SIZE, SIZE):
            raise BenchError(f"GetMap answered a {size} image for {job.qs}")
        drawn.append(share)
        total += len(a.body)
        if a.body != b.body:
            differ += 1
    if differ:
        problems.append(f"PNG bytes differ between Lantu and direct in {differ} of {len(jobs)} probes")
    if not any(drawn):
        raise BenchError("every GetMap probe is blank: bboxes outside the data (axis order?)")
    return problems, drawn, total


_GML_STAMP = re.compile(rb'timeStamp="[^"]*"')


def check_wfs(lantu: Lantu, direct: Direct, name: str, jobs: Sequence[Job]) -> tuple[list[str], list[str], int]:
    """Three probes: HTTP 200, 1 000 features, Lantu's bytes identical to direct's (GML: but the timeStamp).
    Returns (problems, notes, mean body size)."""
    problems, sizes = [], []
    notes = paging_stability(direct, jobs[0]) if name == "GeoJSON" else []
    for job in (jobs[0], jobs[len(jobs) // 2], jobs[-1]):
        a, b = lantu.get(job), direct.get(job)
        for who, ans in (("lantu", a), ("direct", b)):
            if ans.status != 200:
                raise BenchError(f"WFS {name} {who}: HTTP {ans.status}: {ans.body[:300].decode('utf-8', 'replace')}")
        if name == "GeoJSON":
            returned = len(json.loads(a.body).get("features") or [])
        else:
            match = re.search(rb'numberReturned="(\d+)"', a.body[:4000])
            returned = int(match[1]) if match else -1
            if a.body.count(b"<wfs:member>") != returned:
                problems.append(f"numberReturned {returned} but {a.body.count(b'<wfs:member>')} members")
        if returned != WFS_COUNT:
            problems.append(f"{returned} features, not {WFS_COUNT} ({job.qs})")
        if _GML_STAMP.sub(b"", a.body) != _GML_STAMP.sub(b"", b.body):
            problems.append("Lantu's body differs from direct's")
        sizes.append(len(a.body))
    return sorted(set(problems)), notes, sum(sizes) // len(sizes)


def paging_stability(direct: Direct, job: Job) -> list[str]:
    """MapServer pages with LIMIT/OFFSET and orders only when asked (SORTBY): PostgreSQL's synchronised
    sequential scans then start wherever another scan is, and the same STARTINDEX returns other features. The
    timed requests send SORTBY=fid; this probe sends the request without it three times (direct)."""
    bare = Job(job.script, "&".join(p for p in job.qs.split("&") if not p.startswith("SORTBY=")), job.group)
    firsts = set()
    for _ in range(3):
        answer = direct.get(bare)
        features = json.loads(answer.body).get("features") or [] if answer.status == 200 else []
        firsts.add(tuple(f.get("properties", {}).get("fid") for f in features[:1] + features[-1:]))
    if len(firsts) > 1:
        return [f"without SORTBY the same STARTINDEX gave {len(firsts)} different pages in 3 requests "
                f"(MapServer's paging is unstable: no ORDER BY)"]
    return []


def cached_files(lantu_home: Path) -> int:
    base = lantu_home / "cache" / "wmts" / f"{LAND_USE}_cache"
    return sum(1 for _ in base.rglob("*.png")) if base.exists() else 0


# ---- measuring -----------------------------------------------------------------------------------------
@dataclass
class Pair:
    """Lantu and direct over the same jobs, 1 client, taking turns."""

    jobs: list[Job]
    lantu: Measurement = field(default_factory=Measurement)
    direct: Measurement = field(default_factory=Measurement)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    size: int = 0

    def ratio(self, select: Callable[[Job], bool] = lambda _: True) -> tuple[float | None, ...]:
        """Over the selected jobs: (per request: the median over the distinct requests of Lantu's median for
        that request ÷ direct's median for it; the same for the difference in ms; pooled: Lantu's median over
        all requests ÷ direct's). In a set of maps from 10 to 200 ms the pooled medians can land on different
        requests (a z13 map for one target, a z14 map for the other) and move by 10–30 % from run to run; the
        per-request figures compare the same request only."""
        by_request: dict[str, tuple[list[float], list[float]]] = {}
        for i, job in enumerate(self.jobs):
            if select(job):
                a, b = by_request.setdefault(job.script + "?" + job.qs, ([], []))
                a.append(self.lantu.latencies_ms[i])
                b.append(self.direct.latencies_ms[i])
        if not by_request:
            return None, None, None
        medians = [(statistics.median(a), statistics.median(b)) for a, b in by_request.values()]
        pooled_a = [x for a, _ in by_request.values() for x in a]
        pooled_b = [x for _, b in by_request.values() for x in b]
        return (statistics.median(x / y for x, y in medians), statistics.median(x - y for x, y in medians),
                statistics.median(pooled_a) / statistics.median(pooled_b))


def interleave(pair: Pair, port: int, sockets: Sequence[str], warmup: Sequence[Job]) -> None:
    factories = [lantu_factory(port), direct_factory(sockets, port)]
    run_interleaved(factories, warmup, [Measurement(), Measurement()])
    run_interleaved(factories, pair.jobs, [pair.lantu, pair.direct])
    for name, m in (("lantu", pair.lantu), ("direct", pair.direct)):
        if m.errors:
            raise BenchError(f"{name}: {m.errors} errors (HTTP {m.error_status}) while timed")


@dataclass
class Wmts:
    jobs: list[Job]
    miss: Measurement = field(default_factory=Measurement)
    hit: Measurement = field(default_factory=Measurement)
    hit_groups: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)   # tile path → bytes


def measure_wmts(home: Path, port: int, rounds: int) -> Wmts:
    """Remove the layer's tile cache; every tile once (miss), then ``rounds`` times more (hits)."""
    result = Wmts(wmts_jobs())
    shutil.rmtree(home / "cache" / "wmts" / f"{LAND_USE}_cache", ignore_errors=True)
    client = Lantu(port)
    first: dict[str, bytes] = {}
    try:
        client.get(Job("/wmts", "SERVICE=WMTS&REQUEST=GetCapabilities", "caps"))  # MapProxy loaded, not timed
        for job in result.jobs:
            before = cached_files(home)
            started = time.perf_counter()
            answer = client.get(job)
            result.miss.latencies_ms.append((time.perf_counter() - started) * 1000)
            result.miss.record(answer.status)
            if answer.status != 200 or not answer.content_type.startswith("image/png"):
                raise BenchError(f"WMTS {job.script}: HTTP {answer.status} {answer.content_type}: "
                                 f"{answer.body[:300].decode('utf-8', 'replace')}")
            if cached_files(home) <= before:
                result.problems.append(f"{job.script}: first request wrote no tile to the cache (not a miss?)")
            first[job.script] = answer.body
        stored = cached_files(home)
        for r in range(rounds):
            for job in result.jobs[r % 2::2] + result.jobs[1 - r % 2::2]:
                started = time.perf_counter()
                answer = client.get(job)
                result.hit.latencies_ms.append((time.perf_counter() - started) * 1000)
                result.hit.record(answer.status)
                result.hit_groups.append(job.group)
                if answer.body != first[job.script]:
                    result.problems.append(f"{job.script}: cached tile differs from the first answer")
        if cached_files(home) != stored:
            result.problems.append("the cache grew during the hit rounds (some requests were misses)")
    finally:
        client.close()
    result.sizes = {path: len(body) for path, body in first.items()}
    result.problems = sorted(set(result.problems))
    return result


# ---- profile (--profile) -------------------------------------------------------------------------------

# Where a request thread of a Lantu worker spends its time; the first rule whose key is in the stack wins.
PROFILE_BUCKETS = [
    ("_read_exact", "fcgi: wait for mapserv's answer (recv: MapServer renders)"),
    ("request (server/fcgi.py", "fcgi: connect, send params, parse the answer"),
    ("_cgi_params", "route: build the CGI parameters"),
    ("_query", "route: parse + normalise the query string"),
    ("socket_paths", "route: socket paths from the settings"),
    ("lantu (server/context.py", "route: lantu() context"),
    ("ows (server/ows.py", "route: its own lines (shuffle, Response)"),
    ("glogging", "gunicorn: access log"),
    ("write (gunicorn/util.py", "gunicorn: send the body (sendall)"),
    ("send_headers", "gunicorn: send headers"),
]


def profile_lantu(home: BenchHome, server: Server, port: int, sockets: Sequence[str], jobs: Sequence[Job],
                  passes: int) -> list[str]:
    """py-spy on both gunicorn workers while Lantu serves ``jobs`` ``passes`` times (1 client): wall (--idle,
    request threads) and CPU (request threads and the gthread main loop), ms per request; and, for scale,
    the bench client's own cost of a direct FastCGI exchange."""
    venv, _ = ensure_venv(home, "tools", ["py-spy"])
    pyspy = str(venv / "bin" / "py-spy")
    todo = list(jobs) * passes
    lines = [f"Lantu profile: py-spy at {PROFILE_RATE} Hz on both gunicorn workers, {len(todo)} GetMap requests × "
             f"1 client per mode; ms per request (wall: --idle, request threads; CPU: on-CPU samples, request "
             f"threads and the main loop)"]
    results = {}
    for mode in ("wall", "cpu"):
        spies, outputs = spy_start(pyspy, server.worker_pids(), home.logs / f"py-spy-ows-{mode}", idle=mode == "wall")
        m = Measurement()
        run_serial(lantu_factory(port), todo, m)
        spy_stop(spies)
        results[mode] = (*spy_classify(outputs, mode == "cpu", PROFILE_BUCKETS), m)
    wall, cpu = results["wall"], results["cpu"]
    if not wall[2] and not cpu[2]:
        return lines + [f"  no samples (py-spy needs ptrace; see {home.logs})"]
    per = 1000 / PROFILE_RATE / len(todo)
    lines.append(f"  sampled: wall {wall[2] * per:.2f} ms, CPU {cpu[2] * per:.2f} ms per request (client-side "
                 f"median under py-spy {fmt(wall[3].median, 2)} / {fmt(cpu[3].median, 2)} ms)")
    lines.append(f"    {'wall':>7} {'CPU':>7}")
    for name in sorted(set(wall[0]) | set(cpu[0]), key=lambda n: -(wall[0].get(n, 0) + cpu[0].get(n, 0))):
        lines.append(f"    {wall[0].get(name, 0) * per:7.3f} {cpu[0].get(name, 0) * per:7.3f}  {name}")
    top = sorted(cpu[1].items(), key=lambda kv: -kv[1])[:8]
    lines.append("    top CPU leaf frames: " + "; ".join(f"{leaf} {n * per:.3f}" for leaf, n in top))
    lines.append("    (CPU comes from py-spy's view of the thread state without pausing the process; on a busy machine "
                 "it counts some waits as CPU: e.g. os.utime of gunicorn's heartbeat costs ~3 µs a call here)")
    # What the exchange with mapserv costs a client in CPU (the part Lantu and direct share).
    direct = Direct(sockets, port)
    started_cpu, started = time.process_time(), time.perf_counter()
    for job in todo:
        direct(job)
    n = len(todo)
    lines.append(f"  direct (bench process, no py-spy): {1000 * (time.perf_counter() - started) / n:.2f} ms wall, "
                 f"{1000 * (time.process_time() - started_cpu) / n:.3f} ms client CPU per request")
    return lines


# ---- report --------------------------------------------------------------------------------------------
def row(label: str, n: int, a: Sequence[float], b: Sequence[float], ratios: tuple, size: str,
        notes: str = "") -> str:
    ratio, overhead, pooled = ratios
    return (f"{label:22} {n:4d} {fmt(statistics.median(a)):>9} {fmt(percentile(a, 95)):>8} "
            f"{fmt(statistics.median(b)):>9} {fmt(percentile(b, 95)):>8} {fmt(ratio, 2):>6} {fmt(overhead, 2):>7} "
            f"{fmt(pooled, 2):>6} {size:>6}  {notes}").rstrip()


HEADER = (f"{'':22} {'n':>4} {'med ms':>9} {'p95 ms':>8} {'med ms':>9} {'p95 ms':>8} {'ratio':>6} {'+ms':>7} "
          f"{'pooled':>6} {'KB':>6}  notes")


def report(home: BenchHome, rows: int, data_label: str, farmland: int, points, getmap: Pair, drawn: list[float],
           floor: Measurement, wfs: dict[str, Pair], wmts: Wmts | None, timings: dict[str, str],
           profile: list[str]) -> None:
    print()
    print(f"ows bench — {data_label}: {rows:,} 土地利用现状 ({LAND_USE}), {farmland:,} 永久基本农田 ({FARMLAND}); "
          f"database of {home.path}, server home {home.path / 'ows'}")
    print("lantu: GET over one keep-alive HTTP connection to `lantu serve --workers 2` (gunicorn 2×4 gthread), "
          "2 mapserv FastCGI workers; direct: lantu.server.fcgi.request from the bench process to a worker socket "
          "(shuffled like Lantu), same CGI parameters and QUERY_STRING; 1 client, the two taking turns request by "
          "request (rotating who goes first)")
    print()
    print(f"WMS 1.3.0 GetMap {SIZE}×{SIZE} PNG, LAYERS={LAYERS}, {len(getmap.jobs)} requests each: "
          f"{len(points)} centres ({sum(1 for p in points if p[0] == '星沙')} near 星沙, "
          f"{sum(1 for p in points if p[0] == 'county')} on 永久基本农田 over the county) × z{ZOOMS[0]}–z{ZOOMS[-1]} "
          f"ground size × {' / '.join(CRSS)}")
    print(f"{'':22} {'':4} {'---- lantu ----':>18} {'---- direct ----':>18}")
    print(HEADER)
    print("-" * len(HEADER))
    size = fmt(getmap.size / 1024, 1)
    groups: list[tuple[str, Callable[[Job], bool]]] = [
        (f"z{z} ({360 / 2 ** z * 111.32 * math.cos(math.radians(XINGSHA[1])):.1f} km)", lambda j, z=z: j.zoom == z)
        for z in ZOOMS]
    groups += [(crs, lambda j, c=crs: j.crs == c) for crs in CRSS]
    for label, select in groups:
        idx = [i for i, j in enumerate(getmap.jobs) if select(j)]
        print(row(label, len(idx), [getmap.lantu.latencies_ms[i] for i in idx],
                  [getmap.direct.latencies_ms[i] for i in idx], getmap.ratio(select), ""))
    blank = sum(1 for d in drawn if d == 0)
    print(row("all GetMap", len(getmap.jobs), getmap.lantu.latencies_ms, getmap.direct.latencies_ms, getmap.ratio(),
              size, "; ".join(getmap.problems) or f"ok: same PNG bytes; {len(drawn) - blank} of {len(drawn)} "
              f"probes drawn (median {statistics.median(drawn) * 100:.0f} % of pixels), {blank} blank"))
    print(f"Lantu's floor: /wms?SERVICE=WFS refused by the route itself (HTTP, gunicorn, Flask, route; no MapServer), "
          f"{len(floor.latencies_ms)} requests: median {fmt(floor.median, 2)} ms, p95 {fmt(floor.p95, 2)} ms")
    print()
    print(f"WFS 2.0 GetFeature TYPENAMES=lantu:{LAND_USE} COUNT={WFS_COUNT}, STARTINDEX spread over "
          f"0..{rows - WFS_COUNT:,}, SORTBY=fid (informational)")
    print(HEADER)
    print("-" * len(HEADER))
    for name, pair in wfs.items():
        print(row(name, len(pair.jobs), pair.lantu.latencies_ms, pair.direct.latencies_ms, pair.ratio(),
                  fmt(pair.size / 1024, 0), "; ".join(pair.problems or [f"ok: {WFS_COUNT} features, same bytes"]
                                                      + pair.notes)))
    print()
    if wmts:
        print(f"WMTS REST /wmts/{LAND_USE}/{{grid}}/{{z}}/{{col}}/{{row}}.png through Lantu (MapProxy), "
              f"z{WMTS_ZOOMS[0]}–{WMTS_ZOOMS[-1]} around 星沙 (informational): miss = first request after the "
              f"layer's cache was removed (renders a {META}×{META} meta tile with mapserv), hit = the same tile again")
        head = (f"{'':22} {'n':>4} {'miss med':>9} {'p95 ms':>8} {'n':>4} {'hit med':>9} {'p95 ms':>8} "
                f"{'miss/hit':>8} {'KB':>7}  notes")
        print(head)
        print("-" * len(head))
        for grid in WMTS_GRIDS:
            miss = [v for j, v in zip(wmts.jobs, wmts.miss.latencies_ms, strict=True) if j.group == grid]
            hit = [v for g, v in zip(wmts.hit_groups, wmts.hit.latencies_ms, strict=True) if g == grid]
            r = statistics.median(miss) / statistics.median(hit) if miss and hit else None
            sizes = [wmts.sizes[j.script] for j in wmts.jobs if j.group == grid]
            print(f"{grid:22} {len(miss):4d} {fmt(statistics.median(miss)):>9} {fmt(percentile(miss, 95)):>8} "
                  f"{len(hit):4d} {fmt(statistics.median(hit), 2):>9} {fmt(percentile(hit, 95), 2):>8} "
                  f"{fmt(r, 0):>8} {fmt(sum(sizes) / len(sizes) / 1024, 1):>7}  "
                  f"{'; '.join(wmts.problems) or 'ok: every first request wrote the cache, hits the same bytes'}")
        print()
    print("med/p95: 1 client, over all requests of the row; ratio: per distinct request, Lantu's median ÷ direct's "
          "median, then the median over the requests of the row (the 'all GetMap' one decides PASS/FAIL); +ms: the "
          "same for Lantu's median − direct's; pooled: Lantu's median ÷ direct's median over all requests of the row "
          "(compares different requests when the medians of a mixed set land on different ones); KB: mean body of "
          "the probes")
    if timings:
        print("timings: " + "; ".join(f"{k} {v}" for k, v in timings.items()))
    if profile:
        print()
        print("\n".join(profile))
    print()
    ratio, over, pooled = getmap.ratio()
    ok = ratio is not None and ratio <= TARGET_GETMAP and not getmap.problems
    parts = [f"getmap lantu/direct={fmt(ratio, 2)} (target ≤{TARGET_GETMAP} {'PASS' if ok else 'FAIL'}; "
             f"+{fmt(over, 1)} ms; pooled medians {fmt(pooled, 2)})"]
    parts += [f"wfs_{'gml' if name.startswith('GML') else 'geojson'}={fmt(pair.lantu.median, 0)}ms"
              for name, pair in wfs.items()]
    if wmts:
        parts += [f"wmts_hit={fmt(wmts.hit.median, 2)}ms", f"wmts_miss={fmt(wmts.miss.median, 0)}ms"]
    print("ows: " + " ".join(parts) + (" PASS" if ok else " FAIL"))


# ---- main ----------------------------------------------------------------------------------------------
def farmland_rows(home: BenchHome) -> int:
    with psycopg2.connect(home.socket_dsn) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*), sum(ST_NPoints(geom)) FROM blueprint.{FARMLAND}")  # also reads it once
        count = cur.fetchone()[0]
    conn.close()
    return count


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/ows", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (fewer requests)")
    parser.add_argument("--home", help="bench LANTU_HOME (default $BENCH_HOME or ${LANTU_HOME:-var}/bench)")
    parser.add_argument("--requests", type=int, help="GetMap requests per target (default 384: every distinct "
                        "request 4 times; --quick 48)")
    parser.add_argument("--wfs-requests", type=int, help="WFS requests per format and target (default 20, --quick 6)")
    parser.add_argument("--wmts-rounds", type=int, help="hit rounds over the WMTS tiles (default 20, --quick 5)")
    parser.add_argument("--skip", default="", help="comma list of parts to leave out: wfs, wmts")
    parser.add_argument("--profile", action="store_true", help="then py-spy Lantu's workers (own venv) during "
                        "GetMap and print where a request's time goes")
    parser.add_argument("--wait", type=float, default=0, metavar="SECONDS", help="when another `lantu serve` "
                        "uses $BENCH_HOME/ows (another bench/ows), wait up to SECONDS for it to end")
    parser.add_argument("--keep", action="store_true", help="leave the server and the database running")
    args = parser.parse_args()
    args.requests = args.requests or (48 if args.quick else 384)
    args.wfs_requests = args.wfs_requests or (6 if args.quick else 20)
    args.wmts_rounds = args.wmts_rounds or (5 if args.quick else 20)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    install_signal_handlers()
    home = BenchHome.resolve(args.home)
    timings: dict[str, str] = {}
    db_started = False
    started = time.perf_counter()
    try:
        port = free_port()
        if f"pg_port: {home.pg_port}\n" not in (home.settings_file.read_text() if home.settings_file.exists() else ""):
            home.write_settings(port)  # else left alone: bench/features or bench/tiles may be running on it
        home.logs.mkdir(parents=True, exist_ok=True)
        log(f"bench home {home.path} (embedded PostgreSQL on port {home.pg_port})")
        out = lantu_cli(home, "db", "start")
        db_started = "database started" in out
        log(out)
        rows, data_label = ensure_data(home, False, timings)
        farmland = farmland_rows(home)
        log(f"blueprint.{LAND_USE}: {rows:,} rows, blueprint.{FARMLAND}: {farmland:,} ({data_label})")
        warm_table(home)
        points = centres(home)
        jobs = getmap_jobs(points, args.requests)
        distinct = list(dict.fromkeys(j.qs for j in jobs))
        probes = [next(j for j in jobs if j.qs == qs) for qs in distinct]

        t0 = time.perf_counter()
        server, lantu_home, sockets = start_lantu(home, port, args.wait)
        inodes = socket_inodes(sockets)
        timings["server ready"] = f"{time.perf_counter() - t0:.1f} s"
        lantu, direct = Lantu(port), Direct(sockets, port, seed=1)
        attach_params(jobs, port)
        getmap = Pair(jobs)
        getmap.problems, drawn, total = check_getmap(lantu, direct, probes)
        getmap.size = total // len(probes)
        log(f"GetMap probes: {len(probes)} distinct requests, {sum(1 for d in drawn if d)} drawn"
            + (f"; {'; '.join(getmap.problems)}" if getmap.problems else ", same bytes through Lantu and direct"))
        log(f"load average before measuring: {loadavg()}")
        warmup = [probes[i] for i in range(0, len(probes), max(1, len(probes) // 12))]
        log(f"GetMap: {len(jobs)} requests per target, interleaved")
        interleave(getmap, port, sockets, warmup)
        floor = Measurement()  # answered 400 by Lantu's route itself: HTTP, gunicorn, Flask, the route
        run_serial(lantu_factory(port), [Job("/wms", "SERVICE=WFS&REQUEST=GetCapabilities", "floor")] * 100, floor)

        wfs: dict[str, Pair] = {}
        if "wfs" not in skip:
            for name, wjobs in wfs_jobs(rows, args.wfs_requests, seed=430121).items():
                attach_params(wjobs, port)
                pair = Pair(wjobs)
                pair.problems, pair.notes, pair.size = check_wfs(lantu, direct, name, wjobs)
                log(f"WFS {name}: {len(wjobs)} requests per target, interleaved"
                    + (f" ({'; '.join(pair.problems)})" if pair.problems else ""))
                interleave(pair, port, sockets, wjobs[:1])
                wfs[name] = pair
        lantu.close()
        wmts = None
        if "wmts" not in skip:
            log(f"WMTS: {len(wmts_jobs())} tiles: miss, then {args.wmts_rounds} hit rounds")
            wmts = measure_wmts(lantu_home, port, args.wmts_rounds)
        if socket_inodes(sockets) != inodes:
            raise BenchError(f"the mapserv sockets were replaced during the run (another `lantu serve` on "
                             f"{lantu_home}?): the figures are not Lantu's alone")
        timings["load average"] = f"{loadavg()} (1/5/15 min; other work on the machine skews absolute figures)"
        profile = profile_lantu(home, server, port, sockets, probes, 2 if args.quick else 3) if args.profile else []
        timings["total"] = f"{time.perf_counter() - started:.0f} s"
        report(home, rows, data_label, farmland, points, getmap, drawn, floor, wfs, wmts, timings, profile)
        return 0
    except BenchError as exc:
        log(f"error: {exc}")
        print(f"ows: error: {exc} FAIL")
        return 1
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        shutdown(home, args.keep, db_started)


if __name__ == "__main__":
    sys.exit(main())

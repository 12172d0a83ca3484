"""The ``lantu`` command line: one click group per concern.

Exit codes: 0 success, 1 failure (one-line reason on stderr), 2 usage error (click's own).
Set ``LANTU_DEBUG=1`` to see the traceback of a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click

from lantu.config.registry import RegistryError, load_registry
from lantu.config.settings import Settings, load_settings


class LantuGroup(click.Group):
    """Turns any failure into one line on stderr and exit code 1 (usage errors stay click's exit 2)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.UsageError, SystemExit):
            raise
        except BrokenPipeError:  # output piped into `head` and closed early: not a failure
            sys.stderr.close()
            sys.exit(0)
        except Exception as exc:  # noqa: BLE001 - the CLI's single reporting point
            if os.environ.get("LANTU_DEBUG"):
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"lantu: error: {message}", err=True)
            sys.exit(1)


def _settings() -> Settings:
    return load_settings()


@click.group(cls=LantuGroup)
@click.version_option(package_name="lantu")
def main() -> None:
    """蓝图 Lantu — OGC service server for 多规合一 planning platforms."""


# ---- db ----------------------------------------------------------------------------------------------
@main.group(cls=LantuGroup)
def db() -> None:
    """The embedded PostgreSQL/PostGIS cluster (or the external one of LANTU_DATABASE_URL)."""


def _cluster(settings: Settings):
    from lantu.providers.cluster import Cluster

    if not settings.embedded:
        raise click.UsageError("LANTU_DATABASE_URL is set: Lantu uses an external PostGIS and does not manage it")
    return Cluster.from_settings(settings)


@db.command("start")
def db_start() -> None:
    """Initialise on first use, start, create PostGIS and apply migrations."""
    from lantu.providers.database import prepare

    settings = _settings()
    cluster = _cluster(settings)
    was_running = cluster.running() if cluster.initialised else False
    prepare(settings, load_registry())
    state = "already running" if was_running else "started"
    click.echo(f"database {state}: socket {cluster.socket_dir}, port {cluster.port}, data {cluster.data_dir}")


@db.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster (data is kept)."""
    stopped = _cluster(_settings()).stop()
    click.echo("database stopped" if stopped else "database was not running")


@db.command("status")
def db_status() -> None:
    """Say whether the database runs and which migrations are applied (exit 1 if it is down)."""
    from lantu.providers.pool import get_pool

    settings = _settings()
    if settings.embedded:
        cluster = _cluster(settings)
        if not cluster.initialised or not cluster.running():
            click.echo(f"database not running (data {cluster.data_dir})")
            sys.exit(1)
        click.echo(f"database running: socket {cluster.socket_dir}, port {cluster.port}, data {cluster.data_dir}")
    with get_pool(settings).connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT postgis_lib_version(), (SELECT max(version) FROM lantu.schema_migrations)")
        postgis, version = cur.fetchone()
    click.echo(f"PostGIS {postgis}, schema version {version}")


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations and create missing layer tables."""
    from lantu.providers.database import prepare
    from lantu.providers.migrate import migrate

    settings = _settings()
    pool = prepare(settings, load_registry(), start=False)
    with pool.connection() as conn:
        applied = migrate(conn)
    click.echo("applied: " + ", ".join(applied) if applied else "schema up to date")


@db.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def db_psql(args: tuple[str, ...]) -> None:
    """Open psql on the Lantu database (extra arguments go to psql)."""
    from lantu.providers.pool import dsn_for

    sys.exit(subprocess.call(["psql", dsn_for(_settings()), *args]))


# ---- demo --------------------------------------------------------------------------------------------
@main.group(cls=LantuGroup)
def demo() -> None:
    """The synthetic demo county 长沙县 (430121)."""


@demo.command("load")
@click.option("--scale", type=click.Choice(["small", "county"]), default="small", show_default=True)
@click.option("--seed", type=int, default=430121, show_default=True)
def demo_load(scale: str, seed: int) -> None:
    """Build the demo county and replace every layer with it (one transaction)."""
    from lantu.demo.load import load_demo
    from lantu.providers.database import prepare

    settings = _settings()
    registry = load_registry()
    pool = prepare(settings, registry)
    summary = load_demo(pool, registry, settings, scale=scale, seed=seed)
    total = sum(summary["counts"].values())
    click.echo(f"demo {scale} (seed {seed}) loaded: {total} features in {len(summary['counts'])} layers; "
               f"truth {summary['truth']}; DEM {summary['dem']}")


# ---- load --------------------------------------------------------------------------------------------
@main.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--layer", "layer_id", required=True, help="registry layer id, e.g. basic_farmland")
@click.option("--mode", type=click.Choice(["replace", "append"]), default="replace", show_default=True)
@click.option("--srs", default=None, help="CRS to assume when the file has none, e.g. EPSG:4490")
@click.option("--make-valid", is_flag=True, help="repair invalid geometries instead of refusing them")
@click.option("--report", "report_path", type=click.Path(path_type=Path), default=None,
              help="where to write the QC report (.json and .txt); default $LANTU_HOME/reports/")
def load(file: Path, layer_id: str, mode: str, srs: str | None, make_valid: bool, report_path: Path | None) -> None:
    """Load FILE (GeoPackage, Shapefile or zip, GeoJSON) into a layer after QC: all or nothing."""
    from lantu.providers.database import prepare
    from lantu.providers.intake import run_intake

    settings = _settings()
    registry = load_registry()
    pool = prepare(settings, registry)
    result = run_intake(pool, registry, file, layer_id, mode=mode, srs=srs, make_valid=make_valid,
                        who=os.environ.get("USER", "lantu"), report_path=report_path,
                        reports_dir=settings.home / "reports")
    click.echo(str(result))


# ---- layers ------------------------------------------------------------------------------------------
@main.group(cls=LantuGroup)
def layers() -> None:
    """The layer registry."""


@layers.command("list")
def layers_list() -> None:
    """One line per registry entry: id, kind/geometry, 中文名, English title."""
    for layer in load_registry():
        kind = layer.geometry or layer.kind
        click.echo(f"{layer.id:32} {kind:11} {layer.name_zh}  ({layer.title_en})")


@layers.command("show")
@click.argument("layer_id")
def layers_show(layer_id: str) -> None:
    """The full registry entry of one layer, as JSON."""
    layer = load_registry().get(layer_id)
    if layer is None:
        raise click.BadParameter(f"no layer {layer_id!r} (see `lantu layers list`)", param_hint="ID")
    click.echo(json.dumps(layer.model_dump(mode="json"), ensure_ascii=False, indent=2))


@layers.command("validate")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="a registry YAML to check instead of the installed one")
def layers_validate(path: Path | None) -> None:
    """Check the registry and print every problem with its location."""
    try:
        registry = load_registry(path)
    except RegistryError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        click.echo(f"lantu: error: {len(exc.problems)} registry problem(s)", err=True)
        sys.exit(1)
    click.echo(f"registry ok: {len(registry)} layers ({len(registry.vector_layers())} vector)")


# ---- tiles -------------------------------------------------------------------------------------------
@main.group(cls=LantuGroup)
def tiles() -> None:
    """Map tile caches (WMTS/TMS through MapProxy)."""


def _levels(text: str) -> tuple[int, int]:
    parts = text.split("-")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
        raise click.BadParameter("give a range like 10-14", param_hint="--levels")
    return int(parts[0]), int(parts[1])


def _bbox(text: str | None) -> tuple[float, float, float, float] | None:
    if text is None:
        return None
    try:
        box = tuple(float(v) for v in text.split(","))
    except ValueError:
        box = ()
    if len(box) != 4 or box[0] >= box[2] or box[1] >= box[3]:
        raise click.BadParameter("give minlon,minlat,maxlon,maxlat (EPSG:4490)", param_hint="--bbox")
    return box


@tiles.command("seed")
@click.option("--layer", "layer_id", required=True, help="registry layer id")
@click.option("--levels", required=True, help="level range, e.g. 10-14 (天地图 numbering on CGCS2000Quad)")
@click.option("--bbox", default=None, help="minlon,minlat,maxlon,maxlat in EPSG:4490; default: the layer's extent")
@click.option("--grid", "grid_names", multiple=True, type=click.Choice(["WebMercatorQuad", "CGCS2000Quad"]),
              help="grid(s) to seed (default both)")
@click.option("--concurrency", type=click.IntRange(1, 16), default=2, show_default=True)
def tiles_seed(layer_id: str, levels: str, bbox: str | None, grid_names: tuple[str, ...], concurrency: int) -> None:
    """Fill the WMTS/TMS cache of a layer ahead of use (progress is shown by mapproxy-seed)."""
    import tempfile

    import yaml

    from lantu.providers.database import prepare
    from lantu.providers.features import extent, source_from_layer
    from lantu.server.mapserver_pool import write_ows_config
    from lantu.tiles.mapproxy import GRIDS, seed_config

    settings = _settings()
    registry = load_registry()
    layer = registry.get(layer_id)
    if layer is None or not layer.is_vector:
        raise click.BadParameter(f"no vector layer {layer_id!r} (see `lantu layers list`)", param_hint="--layer")
    level_range, area = _levels(levels), _bbox(bbox)
    pool = prepare(settings, registry)
    area = area or extent(pool, source_from_layer(layer))
    if area is None:
        raise click.ClickException(f"layer {layer_id} is empty: nothing to seed")
    files = write_ows_config(settings, registry)
    config = seed_config(layer_id, level_range, area, grid_names or GRIDS)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as fh:
        yaml.safe_dump(config, fh)
    seeder = Path(sys.executable).with_name("mapproxy-seed")
    env = {**os.environ, "MAPSERVER_CONFIG_FILE": str(files.config_file)}
    code = subprocess.call([str(seeder), "-f", str(settings.home / "mapproxy" / "mapproxy.yaml"), "-s", fh.name,
                            "-c", str(concurrency), "--seed", "ALL"], env=env)
    os.unlink(fh.name)
    if code != 0:
        raise click.ClickException(f"mapproxy-seed failed with exit code {code}")
    click.echo(f"seeded {layer_id} levels {levels} over {', '.join(f'{v:.5f}' for v in area)}")


# ---- serve -------------------------------------------------------------------------------------------
@main.command("serve")
@click.option("--bind", default=None, help="HOST:PORT (default LANTU_BIND or settings, 127.0.0.1:8080)")
@click.option("--workers", type=click.IntRange(1, 64), default=None, help="gunicorn worker processes")
def serve_cmd(bind: str | None, workers: int | None) -> None:
    """Serve every endpoint on one origin (gunicorn); starts the embedded database if needed."""
    from lantu.processes.indicators import catalogue_path, load_catalogue
    from lantu.providers.database import prepare
    from lantu.server.serve import serve

    settings = _settings()
    registry = load_registry()
    load_catalogue(registry, catalogue_path(settings))  # a bad indicator entry stops here, named
    prepare(settings, registry)
    serve(settings, bind, workers)


# ---- accounts ----------------------------------------------------------------------------------------
@main.group()
def accounts() -> None:
    """Accounts (departments, people), their roles and API keys."""


def _pool():
    from lantu.providers.database import prepare

    settings = _settings()
    return prepare(settings, load_registry())


@accounts.command("create")
@click.argument("name")
@click.option("--title", default="", help="中文名称, e.g. 县自然资源局")
@click.option("--role", "roles", multiple=True, help="a role (repeat for several), e.g. --role planning_editor")
@click.option("--attr", "attrs", multiple=True, help="KEY=VALUE attribute for row filters, e.g. xzqdm=430121104000")
@click.option("--key/--no-key", default=True, show_default=True, help="also create an API key and print it")
def accounts_create(name: str, title: str, roles: tuple[str, ...], attrs: tuple[str, ...], key: bool) -> None:
    from lantu.providers.accounts import create_account, create_key, get_account

    pool = _pool()
    if get_account(pool, name):
        raise click.ClickException(f"account {name!r} exists")
    bad = [a for a in attrs if "=" not in a]
    if bad:
        raise click.ClickException(f"--attr must be KEY=VALUE, not {bad[0]!r}")
    account = create_account(pool, name, title, list(roles), dict(a.split("=", 1) for a in attrs))
    click.echo(f"account {name} created (roles: {', '.join(roles) or 'none'})")
    if key:
        click.echo(f"API key (shown once, store it now): {create_key(pool, account)}")


@accounts.command("key")
@click.argument("name")
@click.option("--expires-days", type=click.FloatRange(min=0.01), default=None)
def accounts_key(name: str, expires_days: float | None) -> None:
    """Create another API key for an account."""
    from lantu.providers.accounts import create_key, get_account

    pool = _pool()
    account = get_account(pool, name)
    if account is None:
        raise click.ClickException(f"no account {name!r}")
    click.echo(f"API key (shown once, store it now): {create_key(pool, account, expires_days)}")


@accounts.command("revoke")
@click.argument("prefix")
def accounts_revoke(prefix: str) -> None:
    """Revoke an API key by its prefix (the 8 hex characters after lantu_)."""
    from lantu.providers.accounts import revoke_key

    if not revoke_key(_pool(), prefix.removeprefix("lantu_").split("_")[0]):
        raise click.ClickException(f"no live key with prefix {prefix!r}")
    click.echo(f"key {prefix} revoked (servers stop accepting it within 30 s)")


@accounts.command("list")
def accounts_list() -> None:
    from lantu.providers.accounts import list_accounts

    for account, prefixes in list_accounts(_pool()):
        state = " (disabled)" if account.disabled else ""
        click.echo(f"{account.name}{state}\t{account.title}\troles={','.join(account.roles)}\t"
                   f"attrs={json.dumps(account.attributes, ensure_ascii=False)}\tkeys={','.join(prefixes)}")


# ---- audit ---------------------------------------------------------------------------------------------
@main.group()
def audit() -> None:
    """Who read what (access log) and who changed what (edit audit), for administrators."""


@audit.command("access")
@click.option("--who", default=None, help="account name (or 'anonymous')")
@click.option("--layer", default=None, help="layer id")
@click.option("--since", default="1 day", show_default=True, help="a PostgreSQL interval, e.g. '7 days'")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
def audit_access(who: str | None, layer: str | None, since: str, limit: int) -> None:
    rows = _audit_rows("SELECT at, who, protocol, action, array_to_string(layers, ','), status, requests, path "
                       "FROM lantu.access_log WHERE at > now() - %s::interval AND (%s::text IS NULL OR who = %s) "
                       "AND (%s::text IS NULL OR %s = ANY(layers)) ORDER BY at DESC LIMIT %s",
                       (since, who, who, layer, layer, limit))
    for row in rows:
        click.echo("\t".join(str(v) for v in row))


@audit.command("edits")
@click.option("--layer", default=None, help="layer id")
@click.option("--limit", type=click.IntRange(1, 100000), default=100, show_default=True)
def audit_edits(layer: str | None, limit: int) -> None:
    rows = _audit_rows("SELECT at, who, layer, operation, bsm, fid, change_id FROM lantu.audit_log "
                       "WHERE %s::text IS NULL OR layer = %s ORDER BY id DESC LIMIT %s", (layer, layer, limit))
    for row in rows:
        click.echo("\t".join(str(v) for v in row))


def _audit_rows(query: str, params: tuple) -> list[tuple]:
    import psycopg2

    with _pool().connection() as conn, conn.cursor() as cur:
        try:
            cur.execute(query, params)
        except psycopg2.errors.InvalidDatetimeFormat:
            raise click.ClickException("--since must be an interval such as '7 days'") from None
        return cur.fetchall()


# ---- worker ------------------------------------------------------------------------------------------
@main.command("worker")
@click.option("--once", is_flag=True, help="run at most one queued job, then exit")
def worker_cmd(once: bool) -> None:
    """Run OGC API – Processes jobs from the queue in PostgreSQL (any number, on any machine)."""
    import logging

    from lantu.processes.base import Env
    from lantu.processes.worker import Worker
    from lantu.providers.database import start_embedded
    from lantu.providers.pool import get_pool

    settings = _settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s lantu-worker %(levelname)s %(message)s")
    # No migrations or DDL here: workers only read the schema `lantu serve` / `lantu db migrate` maintain
    # (and must not wait on a table lock before they can take a job).
    start_embedded(settings)
    worker = Worker(Env(settings, load_registry(), get_pool(settings)))
    if once:
        status = worker.run_once()
        click.echo(f"job {status}" if status else "no job waiting")
        return
    click.echo(f"worker {worker.name} waiting for jobs")
    worker.run_forever()


# ---- indicators (规划核心指标, issue 11) -----------------------------------------------------------------
@main.group(cls=LantuGroup)
def indicators() -> None:
    """规划核心指标: yearly snapshots, targets, the catalogue check, reports."""


def _indicator_env():
    from lantu.processes.base import Env
    from lantu.providers.database import start_embedded
    from lantu.providers.pool import get_pool

    settings = _settings()
    start_embedded(settings)
    return Env(settings, load_registry(), get_pool(settings))


@indicators.command("check")
def indicators_check() -> None:
    """Check the indicator catalogue against the registry (a bad entry is named)."""
    from lantu.processes.indicators import catalogue_path, load_catalogue

    settings = _settings()
    cat = load_catalogue(load_registry(), catalogue_path(settings))
    click.echo(f"{cat.source}: {len(cat.indicators)} indicators OK")


@indicators.command("snapshot")
@click.option("--year", type=int, default=None, help="the year the data describe (default: the current data year)")
@click.option("--replace", is_flag=True, help="overwrite an earlier year's snapshot with today's data")
def indicators_snapshot(year: int | None, replace: bool) -> None:
    """Store every indicator for the county and each town as the snapshot of YEAR."""
    from lantu.processes.indicators import get_catalogue, take_snapshot

    env = _indicator_env()
    get_catalogue(env.registry, env.settings)
    year, rows = take_snapshot(env, year, replace)
    click.echo(f"indicator snapshot {year}: {rows} rows")


@indicators.command("targets")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def indicators_targets(file: Path) -> None:
    """Load the plan's targets from a CSV (columns indicator, xzqdm, target[, source]); replaces those rows."""
    from lantu.processes.indicators import get_catalogue, load_targets

    env = _indicator_env()
    n = load_targets(env, get_catalogue(env.registry, env.settings), file)
    click.echo(f"{n} targets loaded")


# ---- catalog -----------------------------------------------------------------------------------------
@main.group(cls=LantuGroup)
def catalog() -> None:
    """The resource catalog (/csw): generated records, harvesting, federation with peer catalogs."""


def _catalog_env():
    from lantu.providers.database import prepare

    settings = _settings()
    registry = load_registry()
    return settings, registry, prepare(settings, registry)


@catalog.command("rebuild")
def catalog_rebuild() -> None:
    """Regenerate every record of the registry's layers and of the services."""
    from lantu.catalog.build import refresh

    settings, registry, pool = _catalog_env()
    summary = refresh(settings, registry, pool, full=True)
    click.echo(f"catalog: {summary.generated} records generated, {summary.written} written (changed), "
               f"{summary.removed} removed; change log position {summary.position}")


@catalog.command("harvest")
@click.argument("url")
@click.option("--type", "kind", type=click.Choice(["csw", "wms", "wfs", "wmts", "ogcapi"]), default="csw",
              show_default=True, help="what URL is: a CSW endpoint, a service's capabilities, an OGC API landing page")
def catalog_harvest(url: str, kind: str) -> None:
    """Pull a remote catalog or service into ours; re-runs fetch only what changed and resume after a stop."""
    from lantu.catalog.harvest import harvest

    settings, _, pool = _catalog_env()
    click.echo(harvest(settings, pool, url, kind).line())


@catalog.command("sources")
def catalog_sources() -> None:
    """The harvest sources and peers: last complete run, its counts, and where an interrupted run resumes."""
    from lantu.providers.catalog_store import harvest_sources

    _, _, pool = _catalog_env()
    for src in harvest_sources(pool):
        report = src["last_report"] or {}
        resume = f", resumes at record {src['resume_position']}" if src["resume_position"] else ""
        click.echo(f"{src['url']} ({src['type']}{', peer ' + src['peer'] if src['peer'] else ''}): last complete "
                   f"{src['last_completed'] or 'never'}, added {report.get('added', 0)}, updated "
                   f"{report.get('updated', 0)}, removed {report.get('removed', 0)}{resume}")


@catalog.command("sync")
def catalog_sync() -> None:
    """Harvest every peer of `catalog_peers`; exit 1 when a peer could not be completed."""
    from lantu.catalog.harvest import HarvestError, sync

    settings, _, pool = _catalog_env()
    if not settings.catalog_peers:
        raise click.UsageError("no peers configured (setting catalog_peers)")
    failed = []
    for result in sync(settings, pool):
        report = result.report if isinstance(result, HarvestError) else result
        click.echo(report.line())
        if isinstance(result, HarvestError):
            failed.append(f"{report.source}: {result}")
    if failed:
        raise RuntimeError("; ".join(failed))


if __name__ == "__main__":
    main()

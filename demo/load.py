"""``lantu demo load``: build the demo county and replace every vector layer with it, in one transaction.

The truth (``$LANTU_HOME/demo/truth.json``) and the DEM (``$LANTU_HOME/demo/dem.tif``) are written after the
database commit, so a failed load leaves the previous demo — data, truth and DEM — as it was.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import shapely
from psycopg2 import sql
from tqdm import tqdm

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.demo.dem import write_cog
from lantu.demo.generate import build_demo
from lantu.providers.pool import Pool
from lantu.providers.tables import table_id
from lantu.providers.writer import analyze, write_features


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def load_demo(pool: Pool, registry: Registry, settings: Settings, scale: str = "small", seed: int = 430121,
              who: str = "lantu demo") -> dict[str, Any]:
    """Generate the demo at ``scale`` and load it; returns counts per layer and the truth and DEM paths."""
    t0 = time.perf_counter()
    layers = registry.vector_layers()
    quiet = scale != "county"
    with tqdm(desc="demo: generating", unit="step", disable=quiet) as bar:
        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        demo = build_demo(registry, scale, seed, progress=step)
    generated = time.perf_counter() - t0
    counts: dict[str, int] = {}
    source = f"demo:{scale}:{seed}"
    with tqdm(total=len(layers), desc="demo: loading", unit="layer", disable=quiet) as bar:
        with pool.connection() as conn:  # one transaction: every layer or none
            for layer in layers:
                data = demo.layers[layer.id]
                bar.set_postfix_str(f"{layer.id} ({len(data)})")
                result = write_features(conn, layer, data.rows, data.geometries, mode="replace", who=who,
                                        source=source, operation="demo",
                                        details={"scale": scale, "seed": seed, "synthetic": True})
                counts[layer.id] = result.inserted
                bar.update(1)
            bar.set_postfix_str("ANALYZE")
            for layer in layers:
                analyze(conn, layer)
    if demo.indicator_history:
        load_indicator_years(pool, registry, settings, demo.indicator_history)
    out = Path(settings.home) / "demo"
    truth_path = _write_json(out / "truth.json", demo.truth)
    dem_path = write_cog(demo.dem, out / "dem.tif")
    return {"scale": scale, "seed": seed, "counts": counts, "features": sum(counts.values()),
            "truth": truth_path, "dem": dem_path, "seconds": {"generate": round(generated, 2),
                                                              "total": round(time.perf_counter() - t0, 2)}}


def load_indicator_years(pool: Pool, registry: Registry, settings: Settings, history: dict[str, Any]) -> None:
    """The demo's statistics, targets and the snapshots of both years (issue 11), in one transaction.

    The previous year is replayed inside a savepoint: its two planted differences (survey patches that were
    旱地, the larger red-line polygon) are written, its snapshot computed, and the savepoint rolled back, so the
    layers keep the current year's data. Existing statistics, targets and snapshots are replaced."""
    from lantu.processes.indicators import get_catalogue, snapshot_rows, store_snapshot

    cat = get_catalogue(registry, settings)
    srid = settings.planar_srid
    lu, erl = registry.get("land_use_survey"), registry.get("eco_red_line")
    with pool.connection() as conn:
        with conn.cursor() as cur:
            for table in ("indicator_snapshots", "indicator_targets", "statistics"):
                cur.execute(sql.SQL("DELETE FROM lantu.{}").format(sql.Identifier(table)))
            cur.executemany("INSERT INTO lantu.statistics (xzqdm, year, item, value, unit, source) "
                            "VALUES (%s, %s, %s, %s, %s, %s)", history["statistics"])
            cur.executemany("INSERT INTO lantu.indicator_targets (indicator, xzqdm, target, source) "
                            "VALUES (%s, %s, %s, %s)", history["targets"])
            cur.execute("SAVEPOINT previous_year")
            cur.executemany(sql.SQL("UPDATE {} SET dlbm = %s, dlmc = %s WHERE bsm = %s").format(table_id(lu)),
                            [(code, name, bsm) for bsm, code, name in history["land_use_2024"]])
            bsm, geom = history["red_line_2024"]
            cur.execute(sql.SQL("UPDATE {} SET geom = ST_Multi(ST_GeomFromWKB(%s, 4490)) WHERE bsm = %s").format(
                table_id(erl)), (shapely.to_wkb(geom), bsm))
        previous = snapshot_rows(conn, registry, cat, history["previous"], srid)
        with conn.cursor() as cur:
            cur.execute("ROLLBACK TO SAVEPOINT previous_year")
        store_snapshot(conn, previous, history["previous"])
        store_snapshot(conn, snapshot_rows(conn, registry, cat, history["year"], srid), history["year"])

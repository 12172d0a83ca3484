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

from tqdm import tqdm

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.demo.dem import write_cog
from lantu.demo.generate import build_demo
from lantu.providers.pool import Pool
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
    out = Path(settings.home) / "demo"
    truth_path = _write_json(out / "truth.json", demo.truth)
    dem_path = write_cog(demo.dem, out / "dem.tif")
    return {"scale": scale, "seed": seed, "counts": counts, "features": sum(counts.values()),
            "truth": truth_path, "dem": dem_path, "seconds": {"generate": round(generated, 2),
                                                              "total": round(time.perf_counter() - t0, 2)}}

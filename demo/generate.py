"""Build the synthetic demo county 长沙县 (430121): every vector layer of the registry, the truth, the DEM.

    >>> from lantu.config.registry import load_registry
    >>> demo = build_demo(load_registry(), "small")          # doctest: +SKIP
    >>> demo.layers["basic_farmland"].rows[0]["BSM"]          # doctest: +SKIP
    '430121000000000001'

Deterministic: the same registry, scale and seed give the same features, attributes and truth.
Geometry is generated on the integer-metre grid of EPSG:4547 and handed out in EPSG:4490 (x = lon).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import shapely

from lantu.config.registry import Layer, Registry
from lantu.demo import objects
from lantu.demo.county import COUNTY_CODE, COUNTY_NAME, planar_to_storage, towns
from lantu.demo.dem import Dem, make_dem
from lantu.demo.features import POLYGON_BUILDERS, Ctx, Features
from lantu.demo.indicators import indicator_demo
from lantu.demo.projects import DEFINITIONS as PROJECT_DEFINITIONS
from lantu.demo.projects import project_truth
from lantu.demo.truth import compute_truth, discrepancy_ledger, geodesic_area
from lantu.demo.world import World, build_world

SYNTHETIC_NOTE = "合成演示数据，不得用于生产 (synthetic demo data, not for production)"
GEOMETRY_TYPES = {"Point": ("Point",), "LineString": ("LineString",), "Polygon": ("Polygon", "MultiPolygon")}


@dataclass
class LayerData:
    layer: Layer
    rows: list[dict[str, Any]]  # every field of the layer, keyed by field code
    geometries: np.ndarray  # shapely geometries in EPSG:4490, x = lon

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class DemoData:
    scale: str
    seed: int
    layers: dict[str, LayerData]
    truth: dict[str, Any]
    dem: Dem
    world: World = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    indicator_history: dict[str, Any] | None = field(default=None, repr=False)  # the 2024 state (demo/indicators.py)

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.layers.items()}


def _build_features(ctx: Ctx, registry: Registry, progress: Callable[[str], None]) -> dict[str, Features]:
    feats: dict[str, Features] = {}
    for layer_id, builder in POLYGON_BUILDERS.items():
        progress(layer_id)
        feats[layer_id] = builder(ctx)
    progress("lines")
    feats["road_network"] = objects.road_network(ctx)
    feats["road_centerline"] = objects.road_centerline(ctx)
    feats["road_red_line"] = objects.road_red_line(ctx)
    feats.update(objects.network_layers(ctx))
    for layer_id, fn in (("regional_transport", objects.regional_transport), ("highways", objects.highways),
                         ("waterways", objects.waterways), ("rail_transit", objects.rail_transit)):
        feats[layer_id] = fn(ctx)
    feats["admin_boundaries"] = objects.admin_boundaries(ctx, feats["admin_divisions"])
    progress("points")
    for layer_id in objects.POINT_LAYERS:
        feats[layer_id] = objects.point_layer(ctx, layer_id)
    for layer_id in ("cultural_relics", "cultural_relics_status"):
        feats[layer_id] = objects.relic_points(ctx, layer_id)
    feats["power_network"] = objects.power_network(ctx, feats["power_facilities"])
    progress("buildings, projects, heritage")
    feats["buildings"] = objects.buildings(ctx)
    feats.update(objects.projects(ctx))
    for layer_id, fn in (("purple_line", objects.purple_line), ("historic_city_area", objects.historic_city_area),
                         ("historic_block_protection", objects.historic_block_protection)):
        feats[layer_id] = fn(ctx)
    feats["discrepancy_patches"] = discrepancy_ledger(ctx, feats)
    wanted = {layer.id for layer in registry.vector_layers()}
    missing, extra = wanted - set(feats), set(feats) - wanted
    if missing or extra:
        raise RuntimeError(f"demo layers do not match the registry: missing {sorted(missing)}, extra {sorted(extra)}")
    return {layer.id: feats[layer.id] for layer in registry.vector_layers()}


def _check_geometry(layer: Layer, geoms: np.ndarray, county) -> None:
    if len(geoms) == 0:
        raise RuntimeError(f"{layer.id}: no features")
    kinds = set(shapely.get_type_id(geoms).tolist())
    allowed = {shapely.GeometryType[t.upper()].value for t in GEOMETRY_TYPES[layer.geometry]}
    if not kinds <= allowed:
        raise RuntimeError(f"{layer.id}: geometry types {kinds} for a {layer.geometry} layer")
    bad = np.flatnonzero(~shapely.is_valid(geoms) | shapely.is_empty(geoms))
    if len(bad):
        raise RuntimeError(f"{layer.id}: invalid or empty geometry at {bad[:5].tolist()}: "
                           f"{shapely.is_valid_reason(geoms[bad[0]])}")
    xy = shapely.get_coordinates(geoms)
    if not np.array_equal(xy, np.round(xy)):
        raise RuntimeError(f"{layer.id}: coordinates off the 1 m grid")
    outside = np.flatnonzero(~shapely.covered_by(geoms, county))
    if len(outside):
        raise RuntimeError(f"{layer.id}: {len(outside)} features outside the county")


def _check_rows(layer: Layer, rows: list[dict[str, Any]], registry: Registry) -> None:
    for fdef in layer.fields:
        values = [r.get(fdef.code) for r in rows]
        if fdef.required and any(v is None or v == "" for v in values):
            raise RuntimeError(f"{layer.id}.{fdef.code}: required value missing")
        if fdef.code_list:
            codes = registry.code_lists[fdef.code_list].codes
            bad = sorted({v for v in values if v is not None and v not in codes})
            if bad:
                raise RuntimeError(f"{layer.id}.{fdef.code}: codes not in {fdef.code_list}: {bad[:5]}")
        if fdef.type == "string" and fdef.length:
            long = [v for v in values if v is not None and len(str(v)) > fdef.length]
            if long:
                raise RuntimeError(f"{layer.id}.{fdef.code}: {long[0]!r} longer than {fdef.length}")


def _town_lookup(stored: np.ndarray, town_geoms: np.ndarray) -> np.ndarray:
    """Town index of each geometry's interior point (``ST_PointOnSurface``), -1 where it lies on a border."""
    rep = shapely.point_on_surface(stored)
    gi, ti = shapely.STRtree(town_geoms).query(rep, predicate="within")
    out = np.full(len(stored), -1, dtype=np.int64)
    out[gi] = ti
    return out


def build_demo(registry: Registry, scale: Literal["small", "county"] = "small", seed: int = 430121,
               progress: Callable[[str], None] | None = None) -> DemoData:
    """Generate the demo county at ``scale`` from ``seed`` (numpy Generator); nothing is written anywhere."""
    if scale not in ("small", "county"):
        raise ValueError(f"scale must be 'small' or 'county', not {scale!r}")
    say = progress or (lambda step: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say("world")
    world = build_world(scale, seed)
    timings["world"] = time.perf_counter() - t0
    ctx = Ctx(world, registry, np.random.default_rng([seed, 1]))
    feats = _build_features(ctx, registry, say)
    timings["features"] = time.perf_counter() - t0 - timings["world"]
    say("checks and EPSG:4490")
    stored: dict[str, np.ndarray] = {}
    for layer in registry.vector_layers():
        _check_geometry(layer, feats[layer.id].geoms, world.county)
        stored[layer.id] = planar_to_storage(feats[layer.id].geoms)
    town_list = towns()
    admin = feats["admin_divisions"].atom_feature
    if not np.array_equal(admin, world.town):  # features in town order: feature i is town i
        raise RuntimeError("admin_divisions features are not in town order")
    town_of = {lid: _town_lookup(g, stored["admin_divisions"]) for lid, g in stored.items()}
    layers: dict[str, LayerData] = {}
    bsm: dict[str, list[str]] = {}
    say("attributes")
    for layer in registry.vector_layers():
        f = feats[layer.id]
        tix = town_of[layer.id]
        county_level = layer.id == "admin_boundaries"
        if not county_level and (tix < 0).any():
            raise RuntimeError(f"{layer.id}: {(tix < 0).sum()} features whose interior point is on a town border")
        rows = []
        for i, own in enumerate(f.rows):
            row = {"BSM": f"{COUNTY_CODE}0000{i + 1:08d}", "YSDM": layer.ysdm,
                   "XZQDM": COUNTY_CODE if county_level else town_list[tix[i]].code12,
                   "XZQMC": COUNTY_NAME if county_level else town_list[tix[i]].name, "BZ": SYNTHETIC_NOTE}
            row.update(own)
            if layer.geometry == "Polygon":
                row["MJ"] = round(geodesic_area(stored[layer.id][i]), 2)
            rows.append(row)
        _check_rows(layer, rows, registry)
        layers[layer.id] = LayerData(layer, rows, stored[layer.id])
        bsm[layer.id] = [r["BSM"] for r in rows]
    timings["attributes"] = time.perf_counter() - t0 - timings["world"] - timings["features"]
    say("truth")
    truth = compute_truth(ctx, feats, stored, bsm)
    timings["truth"] = time.perf_counter() - t0 - sum(timings.values())
    say("project sites")
    truth.update(project_truth(ctx, feats, stored, bsm))
    truth["definitions"].update(PROJECT_DEFINITIONS)
    timings["projects"] = time.perf_counter() - t0 - sum(timings.values())
    say("indicators")
    truth["indicators"], history = indicator_demo(ctx, feats, stored, bsm, seed)
    timings["indicators"] = time.perf_counter() - t0 - sum(timings.values())
    say("DEM")
    lon0, lat0, lon1, lat1 = shapely.bounds(planar_to_storage(world.county))
    dem = make_dem(world.terrain, (lon0, lat0, lon1, lat1), world.params.dem_arcsec)
    timings["dem"] = time.perf_counter() - t0 - sum(timings.values())
    timings["total"] = time.perf_counter() - t0
    truth["generator"] = {"module": "lantu.demo.generate", "scale": scale, "seed": seed}
    return DemoData(scale, seed, layers, truth, dem, world, timings, history)

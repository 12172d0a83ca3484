"""规划核心指标 of the demo county: a second year with planted changes, statistics, targets and the truth.

The generated world is the *current* year (``YEAR``, 2025). The previous year (``PREVIOUS``, 2024) differs by
two planted changes, both recorded in truth.json with their BSMs:

* **farmland lost to construction** — land-use survey patches that are construction land in 2025 were 旱地
  (0103) in 2024 (≈ 1 % of the county's cropland), so 耕地保有量 falls and 城乡建设用地 grows;
* **a red-line adjustment** — one 生态保护红线 polygon was larger in 2024 (adjacent atoms 调出 in 2025), so the
  red-line area falls below its target (未达标).

Targets (the plan's 指标表 of the demo) are set from the 2025 values so that the statuses are planted too: the
county's 耕地保有量 is 0.4 % above its target (预警 with its 1 % margin; 达标 in 2024), the red line is below its
target (the 2024 area), 15分钟生活圈覆盖率 misses its 30 % target, the rest are met.

Every value is computed here from the atoms the layers are made of (each feature is a union of whole atoms, each
atom lies in one town): planar = the atoms' area in EPSG:4547; ellipsoidal = Karney's geodesic area on GRS80 of
the atoms in EPSG:4490 (the sum over atoms equals the area of their union: shared edges cancel). The 15-minute
coverage is computed with shapely: each residential atom ∩ the buffers (1000 m, 8 segments per quarter circle like
``ST_Buffer``) of every school and every medical facility. None of this uses Lantu's SQL.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import shapely

from lantu.demo.county import COUNTY_CODE, COUNTY_NAME, planar_to_storage, storage_to_planar, towns
from lantu.demo.features import Ctx, Features
from lantu.demo.truth import geodesic_area

YEAR = 2025
PREVIOUS = 2024
HA = 10000.0
LOSS_SHARE = 0.01          # farmland lost to construction: share of the county's 2025 cropland
REDLINE_ATOMS = 6          # atoms taken out of one red-line polygon in 2025
COVERAGE_DISTANCE_M = 1000.0
URBAN_M2_PER_PERSON = 110.0
MARGINS = {"cropland_area": 0.01}  # config/indicators.yaml: warn_margin per indicator (default 0.02)
DEFAULT_MARGIN = 0.02

# The definitions (the same as config/indicators.yaml; tests/test_indicators.py checks they agree).
URC_PREFIXES = ("05", "06", "07", "08", "09")
URC_CODES = ("1004", "1005")
INDICATORS: dict[str, dict[str, str]] = {
    "basic_farmland_area": {"direction": "min", "unit": "公顷"},
    "cropland_area": {"direction": "min", "unit": "公顷"},
    "eco_red_line_area": {"direction": "min", "unit": "公顷"},
    "urban_dev_boundary_area": {"direction": "max", "unit": "公顷"},
    "forest_area": {"direction": "min", "unit": "公顷"},
    "urban_rural_construction_area": {"direction": "max", "unit": "公顷"},
    "development_intensity": {"direction": "max", "unit": "%"},
    "urban_construction_per_capita": {"direction": "max", "unit": "平方米/人"},
    "life_circle_coverage": {"direction": "min", "unit": "%"},
}


def _urc(code: str) -> bool:
    return code.startswith(URC_PREFIXES) or code in URC_CODES


def status_of(value: float | None, target: float | None, direction: str, margin: float) -> str | None:
    if value is None or target is None:
        return None
    if direction == "min":
        return "未达标" if value < target else "预警" if value < target * (1 + margin) else "达标"
    return "未达标" if value > target else "预警" if value > target * (1 - margin) else "达标"


class _Atoms:
    """Per-atom membership, codes and areas."""

    def __init__(self, ctx: Ctx, feats: dict[str, Features]):
        w = ctx.world
        self.w = w
        self.n = len(w.atoms)
        lu = feats["land_use_survey"]
        if (lu.atom_feature < 0).any():  # pragma: no cover - the survey covers the county
            raise RuntimeError("land_use_survey leaves atoms uncovered")
        self.lu_feature = lu.atom_feature
        self.code = np.array([lu.rows[f]["DLBM"] for f in lu.atom_feature], dtype=object)
        self.member = {layer: feats[layer].atom_feature >= 0
                       for layer in ("basic_farmland", "eco_red_line", "urban_dev_boundary")}
        self.planar = np.asarray(w.area, dtype=float)
        stored = planar_to_storage(w.atoms)
        self.ellipsoidal = np.array([geodesic_area(g) for g in stored])
        self.planar_back = storage_to_planar(stored)  # as PostGIS sees them: 4490 back to 4547
        cl = ctx.registry.code_lists["gbt21010"].codes
        self.construction_codes = {c for c, v in cl.items() if v.is_construction is True}


def _masks(a: _Atoms, code: np.ndarray, red: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "basic_farmland_area": a.member["basic_farmland"],
        "cropland_area": np.array([c.startswith("01") for c in code]),
        "eco_red_line_area": red,
        "urban_dev_boundary_area": a.member["urban_dev_boundary"],
        "forest_area": np.array([c.startswith("03") for c in code]),
        "urban_rural_construction_area": np.array([_urc(c) for c in code]),
        "construction": np.array([c in a.construction_codes for c in code]),
        "urban_construction": np.array([_urc(c) for c in code]) & a.member["urban_dev_boundary"],
        "residential": np.array([c.startswith("07") for c in code]),
    }


def _near(ctx: Ctx, stored: dict[str, np.ndarray]) -> shapely.Geometry:
    unions = [shapely.union_all(shapely.buffer(storage_to_planar(stored[layer]), COVERAGE_DISTANCE_M, quad_segs=8))
              for layer in ("education_facilities", "medical_facilities")]
    return shapely.intersection(unions[0], unions[1])


def _values(a: _Atoms, masks: dict[str, np.ndarray], near, covered_cache: dict[int, float],
            population: dict[str, int]) -> dict[str, dict[str, dict[str, float | None]]]:
    """region code → indicator → {value (ellipsoidal), value_planar}."""
    shapely.prepare(near)
    regions = {COUNTY_CODE: np.ones(a.n, dtype=bool)}
    for t in towns():
        regions[t.code12] = a.w.town == t.index
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for key, sel in regions.items():
        vals: dict[str, dict[str, float | None]] = {}
        for ind in ("basic_farmland_area", "cropland_area", "eco_red_line_area", "urban_dev_boundary_area",
                    "forest_area", "urban_rural_construction_area"):
            m = masks[ind] & sel
            vals[ind] = {"value": a.ellipsoidal[m].sum() / HA, "value_planar": a.planar[m].sum() / HA}
        m = masks["construction"] & sel
        vals["development_intensity"] = {"value": a.ellipsoidal[m].sum() / a.ellipsoidal[sel].sum() * 100,
                                         "value_planar": a.planar[m].sum() / a.planar[sel].sum() * 100}
        m = masks["urban_construction"] & sel
        pop = population.get(key)
        vals["urban_construction_per_capita"] = {
            "value": a.ellipsoidal[m].sum() / pop if pop else None,
            "value_planar": a.planar[m].sum() / pop if pop else None, "population": pop}
        res = np.flatnonzero(masks["residential"] & sel)
        for i in res:
            if i not in covered_cache:
                g = a.planar_back[i]
                covered_cache[i] = float(g.area) if shapely.contains(near, g) else (
                    float(shapely.intersection(g, near).area) if shapely.intersects(near, g) else 0.0)
        land = float(sum(a.planar_back[i].area for i in res))
        share = sum(covered_cache[i] for i in res) / land * 100 if land else None
        vals["life_circle_coverage"] = {"value": share, "value_planar": share, "land_m2": land}
        for v in vals.values():
            for k in ("value", "value_planar"):
                v[k] = None if v[k] is None else float(v[k])
        out[key] = vals
    return out


def _farmland_loss(ctx: Ctx, a: _Atoms, feats: dict[str, Features], rng: np.random.Generator) -> np.ndarray:
    """Atoms that were 旱地 in 2024 and are construction (single-atom survey patches, outside the trap sites)."""
    w = ctx.world
    counts = np.bincount(a.lu_feature, minlength=len(feats["land_use_survey"]))
    ok = (np.isin(a.code, ["0601", "0701", "0702", "0501", "0604"]) & (w.site < 0)
          & (counts[a.lu_feature] == 1) & ~a.member["eco_red_line"])
    cand = np.flatnonzero(ok)
    rng.shuffle(cand)
    goal = LOSS_SHARE * a.planar[np.array([c.startswith("01") for c in a.code])].sum()
    chosen, total = [], 0.0
    for i in cand:
        if total >= goal:
            break
        chosen.append(int(i))
        total += a.planar[i]
    return np.array(sorted(chosen), dtype=np.int64)


def _redline_growth(ctx: Ctx, a: _Atoms, feats: dict[str, Features], lost: np.ndarray) -> tuple[int, np.ndarray]:
    """The red-line feature that lost atoms in 2025 and those atoms (adjacent, same town, outside every red line,
    the farmland loss and the trap sites)."""
    w = ctx.world
    erl = feats["eco_red_line"]
    tree = shapely.STRtree(w.atoms)
    for f in np.argsort([-len(np.flatnonzero(erl.atom_feature == k)) for k in range(len(erl))]):
        own = np.flatnonzero(erl.atom_feature == f)
        if erl.site_name and erl.site_name[f]:
            continue
        town = int(w.town[own[0]])
        if (w.town[own] != town).any():
            continue
        touching = np.unique(tree.query(erl.geoms[f], predicate="touches"))
        ok = [int(i) for i in touching
              if w.town[i] == town and not a.member["eco_red_line"][i] and w.site[i] < 0 and i not in lost
              and shapely.length(shapely.intersection(w.atoms[i].boundary, erl.geoms[f].boundary)) > 0]
        if len(ok) >= REDLINE_ATOMS:
            return int(f), np.array(sorted(ok[:REDLINE_ATOMS]), dtype=np.int64)
    raise RuntimeError("no red-line polygon to adjust")  # pragma: no cover


def _population(a: _Atoms, masks: dict[str, np.ndarray], growth: float) -> dict[str, dict[str, int]]:
    """Resident and urban population per town (and the county sum) for the year."""
    urban, resident = {}, {}
    for t in towns():
        sel = a.w.town == t.index
        u = max(int(round(a.planar[masks["urban_construction"] & sel].sum() / URBAN_M2_PER_PERSON / growth)), 800)
        rural = int(round(a.planar[np.isin(a.code, ["0702"]) & sel].sum() / 260.0 / growth)) + 1500
        urban[t.code12], resident[t.code12] = u, u + rural
    urban[COUNTY_CODE], resident[COUNTY_CODE] = sum(urban.values()), sum(resident.values())
    return {"urban_population": urban, "resident_population": resident}


def indicator_demo(ctx: Ctx, feats: dict[str, Features], stored: dict[str, np.ndarray],
                   bsm: dict[str, list[str]], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(truth["indicators"], what ``lantu demo load`` writes: the 2024 state, statistics, targets)."""
    rng = np.random.default_rng([seed, 11])
    a = _Atoms(ctx, feats)
    lost = _farmland_loss(ctx, a, feats, rng)
    red_f, red_extra = _redline_growth(ctx, a, feats, lost)
    near = _near(ctx, stored)
    code_prev = a.code.copy()
    code_prev[lost] = "0103"
    red_now = a.member["eco_red_line"]
    red_prev = red_now.copy()
    red_prev[red_extra] = True
    masks_now, masks_prev = _masks(a, a.code, red_now), _masks(a, code_prev, red_prev)
    pop = {YEAR: _population(a, masks_now, 1.0), PREVIOUS: _population(a, masks_now, 1.012)}
    cache: dict[int, float] = {}
    values = {YEAR: _values(a, masks_now, near, cache, pop[YEAR]["urban_population"]),
              PREVIOUS: _values(a, masks_prev, near, cache, pop[PREVIOUS]["urban_population"])}
    # targets: from the 2025 values, planted statuses for the county
    targets: dict[str, dict[str, float]] = {}
    red_town = towns()[int(ctx.world.town[np.flatnonzero(feats["eco_red_line"].atom_feature == red_f)[0]])].code12
    for key, vals in values[YEAR].items():
        for ind, spec in INDICATORS.items():
            v = vals[ind]["value"]
            if ind == "life_circle_coverage":
                t = 30.0
            elif v is None:
                continue
            elif ind == "cropland_area" and key == COUNTY_CODE:
                t = v / 1.004                       # planted 预警
            elif ind == "eco_red_line_area" and key in (COUNTY_CODE, red_town):
                t = values[PREVIOUS][key][ind]["value"]  # planted 未达标: the 2024 area must be kept
            else:
                t = v * (0.97 if spec["direction"] == "min" else 1.05)
            targets.setdefault(ind, {})[key] = round(t, 2)
    names = {COUNTY_CODE: COUNTY_NAME, **{t.code12: t.name for t in towns()}}
    years: dict[str, Any] = {}
    for year in (PREVIOUS, YEAR):
        rows: dict[str, dict[str, Any]] = {}
        for key, vals in values[year].items():
            for ind, spec in INDICATORS.items():
                v = vals[ind]
                target = targets.get(ind, {}).get(key)
                prev = values[PREVIOUS][key][ind]["value"] if year == YEAR else None
                rows.setdefault(key, {})[ind] = {
                    **v, "target": target,
                    "status": status_of(v["value"], target, spec["direction"], MARGINS.get(ind, DEFAULT_MARGIN)),
                    "previous": prev, "change": None if prev is None or v["value"] is None else v["value"] - prev}
        years[str(year)] = rows
    erl_prev = shapely.coverage_union_all(ctx.world.atoms[np.flatnonzero(red_prev & (
        (feats["eco_red_line"].atom_feature == red_f) | np.isin(np.arange(a.n), red_extra)))])
    truth = {
        "year": YEAR, "previous_year": PREVIOUS, "county": COUNTY_CODE, "names": names,
        "definitions": {"coverage_distance_m": COVERAGE_DISTANCE_M, "margins": MARGINS,
                        "default_margin": DEFAULT_MARGIN, "value": "ellipsoidal (GRS80) area in 公顷 or the ratio "
                        "of ellipsoidal areas; value_planar: the same in EPSG:4547"},
        "planted": {
            "farmland_lost": {"layer": "land_use_survey",
                              "bsm": [bsm["land_use_survey"][a.lu_feature[i]] for i in lost],
                              "dlbm_2024": "0103", "dlbm_2025": sorted({str(a.code[i]) for i in lost}),
                              "area": {"planar_m2": float(a.planar[lost].sum()),
                                       "ellipsoidal_m2": float(a.ellipsoidal[lost].sum())}},
            "red_line_adjustment": {"layer": "eco_red_line", "bsm": bsm["eco_red_line"][red_f], "xzqdm": red_town,
                                    "area_out": {"planar_m2": float(a.planar[red_extra].sum()),
                                                 "ellipsoidal_m2": float(a.ellipsoidal[red_extra].sum())}},
            "warning": {"indicator": "cropland_area", "xzqdm": COUNTY_CODE, "year": YEAR, "status": "预警",
                        "status_previous": years[str(PREVIOUS)][COUNTY_CODE]["cropland_area"]["status"]},
            "not_met": {"indicator": "eco_red_line_area", "xzqdm": COUNTY_CODE, "year": YEAR, "status": "未达标"},
        },
        "targets": targets, "population": {str(y): p for y, p in pop.items()}, "years": years,
    }
    history = {
        "year": YEAR, "previous": PREVIOUS,
        "land_use_2024": [(bsm["land_use_survey"][a.lu_feature[i]], "0103", ctx.name("gbt21010", "0103"))
                          for i in lost],
        "red_line_2024": (bsm["eco_red_line"][red_f], planar_to_storage(erl_prev)),
        "statistics": [(key, year, item, float(v), "人", "合成演示数据 (synthetic)")
                       for year, items in pop.items() for item, per in items.items() for key, v in per.items()],
        "targets": [(ind, key, t, "演示规划指标表 (synthetic)")
                    for ind, per in targets.items() for key, t in per.items()],
    }
    return truth, history

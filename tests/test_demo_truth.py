"""The small demo county in the throwaway PostGIS: every planted conflict and every check total of
truth.json recomputed with PostGIS from the stored rows, plus the data's own invariants.

Nothing here is a hard-coded answer: the truth comes from the generator (shapely on its own geometry),
the expected values from PostGIS on what was stored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from psycopg2 import sql

from lantu.demo.generate import build_demo
from lantu.demo.truth import CLASSES

REL = 1e-6
BSM_PATTERN = r"^4301210000[0-9]{8}$"


@pytest.fixture(scope="module")
def truth(small_demo) -> dict:
    return json.loads(Path(small_demo["truth"]).read_text("utf-8"))


def rows(pool, query, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def table(layer: str) -> sql.Composed:
    return sql.SQL("blueprint.{}").format(sql.Identifier(layer))


def construction_codes(registry) -> list[str]:
    return sorted(c for c, v in registry.code_lists["gb50137"].codes.items() if v.is_construction is True)


def close(a: float, b: float) -> bool:
    return abs(a - b) <= REL * max(abs(a), abs(b), 1e-300)


# ---- the data itself -------------------------------------------------------------------------------------
def test_every_vector_layer_is_loaded(small_demo, pool, registry):
    for layer in registry.vector_layers():
        (n,), = rows(pool, sql.SQL("SELECT count(*) FROM {}").format(table(layer.id)))
        assert n >= 1, layer.id
        assert n == small_demo["counts"][layer.id], layer.id
    total = sum(small_demo["counts"].values())
    assert 2000 < total < 15000  # "a few thousand"
    assert len(small_demo["counts"]) == 73


def test_codes_are_in_their_code_lists(small_demo, pool, registry):
    for layer in registry.vector_layers():
        for fdef in layer.fields:
            if not fdef.code_list:
                continue
            found = rows(pool, sql.SQL("SELECT DISTINCT {} FROM {}").format(sql.Identifier(fdef.column),
                                                                             table(layer.id)))
            codes = registry.code_lists[fdef.code_list].codes
            bad = [v for (v,) in found if v is not None and v not in codes]
            assert not bad, f"{layer.id}.{fdef.code}: {bad[:5]}"
            if fdef.required:
                assert all(v is not None for (v,) in found), f"{layer.id}.{fdef.code} has NULLs"


def test_bsm_unique_and_standard_fields(small_demo, pool, registry):
    for layer in registry.vector_layers():
        (n, distinct, good, ysdm_ok, bz_ok), = rows(pool, sql.SQL(
            "SELECT count(*), count(DISTINCT bsm), count(*) FILTER (WHERE bsm ~ %s), "
            "count(*) FILTER (WHERE ysdm = %s), count(*) FILTER (WHERE bz LIKE '%%合成演示数据%%') FROM {}").format(
            table(layer.id)), (BSM_PATTERN, layer.ysdm))
        assert n == distinct == good == ysdm_ok == bz_ok, layer.id


def test_geometries_valid_and_inside_the_county(small_demo, pool, registry):
    (county_km2, county), = rows(pool, "SELECT ST_Area(u) / 1e6, ST_AsBinary(ST_Buffer(u, 0.01)) FROM "
                                       "(SELECT ST_Union(ST_Transform(geom, 4547)) u FROM blueprint.admin_divisions) s")
    assert county_km2 == pytest.approx(1756, rel=0.01)
    for layer in registry.vector_layers():
        (n, valid, srid_ok, inside), = rows(pool, sql.SQL(
            "SELECT count(*), count(*) FILTER (WHERE ST_IsValid(geom)), count(*) FILTER (WHERE ST_SRID(geom) = 4490), "
            "count(*) FILTER (WHERE ST_CoveredBy(ST_Transform(geom, 4547), ST_GeomFromWKB(%s, 4547))) FROM {}").format(
            table(layer.id)), (county,))
        assert n == valid == srid_ok == inside, layer.id


@pytest.mark.parametrize("layer", ["land_use_survey", "planned_land_use", "construction_scale_boundary",
                                   "admin_divisions", "three_zones", "functional_area_plan"])
def test_tiling_layers_cover_the_county_without_overlaps(small_demo, pool, layer):
    (overlapping,), = rows(pool, sql.SQL("SELECT count(*) FROM {t} a JOIN {t} b ON a.fid < b.fid "
                                         "AND a.geom && b.geom AND ST_Relate(a.geom, b.geom, '2********')").format(
        t=table(layer)))
    assert overlapping == 0
    (total, county), = rows(pool, sql.SQL(
        "SELECT (SELECT sum(ST_Area(ST_Transform(geom, 4547))) FROM {}), "
        "(SELECT ST_Area(ST_Union(ST_Transform(geom, 4547))) FROM blueprint.admin_divisions)").format(table(layer)))
    assert total == pytest.approx(county, rel=1e-9)


def test_permanent_farmland_lies_on_cropland_and_outside_the_construction_zone(small_demo, pool):
    (off_cropland,), = rows(pool, """
        SELECT coalesce(sum(ST_Area(ST_Difference(ST_Transform(f.geom, 4547), (
            SELECT ST_Union(ST_Transform(l.geom, 4547)) FROM blueprint.land_use_survey l
            WHERE l.dlbm LIKE '01%%' AND l.geom && f.geom)))), 0)
        FROM blueprint.basic_farmland f""")
    assert off_cropland < 1e-6
    (in_010,), = rows(pool, """
        SELECT coalesce(sum(ST_Area(ST_CollectionExtract(ST_Intersection(ST_Transform(f.geom, 4547),
            ST_Transform(c.geom, 4547)), 3))), 0)
        FROM blueprint.basic_farmland f JOIN blueprint.construction_scale_boundary c
          ON c.gzqlxdm = '010' AND ST_Intersects(f.geom, c.geom)""")
    assert in_010 < 1e-6


def test_a_plus_c_is_all_urban_plan_construction_outside_the_land_use_plan(truth, pool, registry):
    (total,), = rows(pool, """
        SELECT sum(ST_Area(ST_CollectionExtract(ST_Intersection(ST_Transform(p.geom, 4547),
            ST_Transform(c.geom, 4547)), 3)))
        FROM blueprint.planned_land_use p JOIN blueprint.construction_scale_boundary c
          ON ST_Intersects(p.geom, c.geom) AND p.yddm = ANY(%s) AND c.gzqlxdm <> '010'""",
                     (construction_codes(registry),))
    classes = truth["checks"]["plan-discrepancy"]["classes"]
    a_plus_c = sum(classes[k]["totals"]["area"]["planar"]["m2"] for k in ("A", "C"))
    assert close(total, a_plus_c)


def test_polygon_area_field_is_the_ellipsoidal_area(small_demo, pool, registry):
    for layer in registry.vector_layers():
        if layer.geometry != "Polygon":
            continue
        (worst,), = rows(pool, sql.SQL("SELECT max(abs(mj - ST_Area(geom::geography, true))) FROM {}").format(
            table(layer.id)))
        assert worst <= 0.0051, layer.id


def test_xzqdm_is_the_town_containing_the_interior_point(small_demo, pool, registry):
    towns = dict(rows(pool, "SELECT xzqdm, xzqmc FROM blueprint.admin_divisions"))
    assert len(towns) == 18 and all(len(code) == 12 for code in towns)
    official = registry.code_lists["xzqdm"]
    assert all(official.name(code) == name for code, name in towns.items())
    for layer in registry.vector_layers():
        if layer.id == "admin_boundaries":  # a border belongs to two towns: the county's code
            assert rows(pool, "SELECT DISTINCT xzqdm, xzqmc FROM blueprint.admin_boundaries") == [("430121", "长沙县")]
            continue
        (n, ok, named), = rows(pool, sql.SQL(
            "SELECT count(*), count(t.xzqdm), count(*) FILTER (WHERE t.xzqmc = f.xzqmc) FROM {} f "
            "LEFT JOIN blueprint.admin_divisions t ON t.xzqdm = f.xzqdm "
            "AND ST_Within(ST_PointOnSurface(f.geom), t.geom)").format(table(layer.id)))
        assert n == ok == named, layer.id


def test_the_lang_character_survives(small_demo, pool, registry):
    # 㮾 (木 + 朗) is U+3BBE in the town list; the design notes' "U+3BAE" is 㮮, a different character.
    official = registry.code_lists["xzqdm"].name("430121004000")
    assert official == "\u3bbe梨街道"
    (name,), = rows(pool, "SELECT xzqmc FROM blueprint.admin_divisions WHERE xzqdm = '430121004000'")
    assert name == official and ord(name[0]) == 0x3BBE
    (n,), = rows(pool, "SELECT count(*) FROM blueprint.land_use_survey WHERE xzqmc = %s", (official,))
    assert n > 0
    (n,), = rows(pool, "SELECT count(*) FROM blueprint.historic_city_area WHERE mc LIKE %s", ("\u3bbe梨%",))
    assert n == 1


def test_load_is_logged_as_one_demo_change_per_layer(small_demo, pool):
    (n, layers), = rows(pool, "SELECT count(*), count(DISTINCT layer) FROM lantu.change_log "
                              "WHERE operation = 'demo' AND source = 'demo:small:430121'")
    assert layers == 73 and n >= 73


# ---- truth.json against PostGIS ---------------------------------------------------------------------------
PAIR_SQL = """
WITH a AS (SELECT ST_Transform(geom, 4547) g FROM {a} WHERE bsm = %(a)s),
     b AS (SELECT ST_Transform(geom, 4547) g FROM {b} WHERE bsm = %(b)s),
     m AS (SELECT ST_Union(ST_Transform(geom, 4547)) g FROM blueprint.basic_farmland WHERE bsm = ANY(%(minus)s)),
     x AS (SELECT CASE WHEN m.g IS NULL THEN ST_Intersection(a.g, b.g)
                       ELSE ST_Difference(ST_Intersection(a.g, b.g), m.g) END AS g FROM a, b, m),
     p AS (SELECT ST_CollectionExtract(g, 3) g FROM x)
SELECT ST_Area(p.g), ST_Area(ST_Transform(p.g, 4490)::geography, true), ST_IsEmpty(p.g),
       (SELECT json_object_agg(t.xzqdm, ST_Area(ST_CollectionExtract(
            ST_Intersection(p.g, ST_Transform(t.geom, 4547)), 3)))
          FROM blueprint.admin_divisions t WHERE ST_Intersects(t.geom, ST_Transform(p.g, 4490))
           AND NOT ST_IsEmpty(p.g))
FROM p
"""


def test_every_planted_conflict_matches_postgis(truth, pool):
    conflicts = truth["conflicts"]
    assert any(c["planted"] for c in conflicts)
    checked = 0
    for c in conflicts:
        la, lb = c["layers"]
        minus = c["minus"]["bsm"] if c["minus"] else []
        (planar, ell, empty, by_town), = rows(pool, sql.SQL(PAIR_SQL).format(a=table(la), b=table(lb)),
                                              {"a": c["bsm"][0], "b": c["bsm"][1], "minus": minus})
        want_p, want_e = c["area"]["planar"]["m2"], c["area"]["ellipsoidal"]["m2"]
        if c["zero_area"]:
            assert planar == 0 and ell == 0 and empty, c["id"]
            assert not c["expect_reported"]
        else:
            assert close(planar, want_p), (c["id"], planar, want_p)
            assert close(ell, want_e), (c["id"], ell, want_e)
            assert c["area"]["planar"]["mu"] == pytest.approx(want_p * 15 / 10000, rel=1e-12)
            assert c["area"]["ellipsoidal"]["ha"] == pytest.approx(want_e / 10000, rel=1e-12)
            got_towns = {k: v for k, v in (by_town or {}).items() if v > 0}
            assert sorted(got_towns) == c["xzqdm"], c["id"]
            for code, area in c["by_town"].items():
                assert close(got_towns[code], area), (c["id"], code)
        checked += 1
    assert checked == len(conflicts)


TOTAL_SQL = """
SELECT a.bsm, b.bsm, ST_Area(y.g), ST_Area(ST_Transform(y.g, 4490)::geography, true)
FROM {a} a JOIN {b} b ON ST_Intersects(a.geom, b.geom)
CROSS JOIN LATERAL (SELECT ST_Intersection(ST_Transform(a.geom, 4547), ST_Transform(b.geom, 4547)) AS g) x
LEFT JOIN LATERAL (SELECT ST_Union(ST_Transform(f.geom, 4547)) AS g FROM blueprint.basic_farmland f
                   WHERE %(minus)s AND f.geom && a.geom AND f.geom && b.geom
                     AND ST_Intersects(ST_Transform(f.geom, 4547), x.g)) m ON true
CROSS JOIN LATERAL (SELECT ST_CollectionExtract(CASE WHEN m.g IS NULL THEN x.g ELSE ST_Difference(x.g, m.g) END, 3)
                    AS g) y
WHERE {a_filter} AND {b_filter}
"""
FILTERS = {
    "all": "true",
    "construction": "{t}.yddm = ANY(%(cons)s)",
    "non_construction": "NOT {t}.yddm = ANY(%(cons)s)",
    "csb_010": "{t}.gzqlxdm = '010'",
    "csb_not_010": "{t}.gzqlxdm <> '010'",
    "cropland": "{t}.dlbm LIKE '01%%'",
}


@pytest.mark.parametrize("cls", CLASSES, ids=[c.name for c in CLASSES])
def test_check_totals_over_all_pairs_match_postgis(truth, pool, registry, cls):
    query = sql.SQL(TOTAL_SQL).format(a=table(cls.a), b=table(cls.b),
                                      a_filter=sql.SQL(FILTERS[cls.a_filter].format(t="a")),
                                      b_filter=sql.SQL(FILTERS[cls.b_filter].format(t="b")))
    found = rows(pool, query, {"cons": construction_codes(registry), "minus": cls.minus is not None})
    positive = {(a, b): (p, e) for a, b, p, e in found if p > 0}
    listed = {tuple(c["bsm"]): c for c in truth["conflicts"] if c["class"] == cls.name and not c["zero_area"]}
    assert set(positive) == set(listed), "pairs PostGIS finds but truth.json lacks, or the reverse"
    totals = truth["checks"][cls.check]["classes"][cls.name]["totals"]
    assert totals["pairs"] == len(positive) > 0
    assert close(sum(p for p, _ in positive.values()), totals["area"]["planar"]["m2"])
    assert close(sum(e for _, e in positive.values()), totals["area"]["ellipsoidal"]["m2"])
    assert totals["area"]["planar"]["mu"] == pytest.approx(totals["area"]["planar"]["m2"] * 15 / 1e4, rel=1e-12)


def test_truth_covers_every_trap(truth):
    conflicts = truth["conflicts"]
    traps = {c["trap"] for c in conflicts if c["trap"]}
    assert {"sliver", "edge_touch", "corner_touch", "hole", "multipolygon", "town_border"} <= traps
    for c in conflicts:
        area = c["area"]["planar"]["m2"]
        assert c["sliver"] == (0 < area < 1)
        assert c["zero_area"] == (area == 0) == (not c["expect_reported"])
        if c["trap"] in ("edge_touch", "corner_touch"):
            assert c["zero_area"], c["id"]
        if c["trap"] == "sliver":
            assert c["sliver"], c["id"]
    # every class has real conflicts and at least one sliver or hole trap, in the small demo too
    for cls in CLASSES:
        mine = [c for c in conflicts if c["class"] == cls.name]
        assert any(c["expect_reported"] and c["planted"] for c in mine), cls.name
        assert any(c["zero_area"] for c in mine), cls.name
    # A + C = all 城规有、土规无; no class A pair keeps farmland
    assert all(c["minus"] is not None for c in conflicts if c["class"] == "A")


def test_town_border_conflict_lies_in_the_other_town(truth, pool):
    """The trap: a conflict attributed to the town of the red line, not of the boundary's XZQDM."""
    border = [c for c in truth["conflicts"] if c["trap"] == "town_border"]
    assert border
    moved = 0
    for c in border:
        la, lb = c["layers"]
        (xa,), = rows(pool, sql.SQL("SELECT xzqdm FROM {} WHERE bsm = %s").format(table(la)), (c["bsm"][0],))
        (xb,), = rows(pool, sql.SQL("SELECT xzqdm FROM {} WHERE bsm = %s").format(table(lb)), (c["bsm"][1],))
        assert c["xzqdm"] and set(c["xzqdm"]) <= {xa, xb}
        moved += xb not in c["xzqdm"] or xa not in c["xzqdm"]
    assert moved >= 1


def test_discrepancy_ledger_matches_the_classes(truth, pool):
    for cls in ("A", "B", "C"):
        (planar, n, status), = rows(pool, "SELECT sum(ST_Area(ST_Transform(geom, 4547))), count(*), "
                                          "count(*) FILTER (WHERE xtzt = '待协调') FROM blueprint.discrepancy_patches "
                                          "WHERE cylx = %s", (cls,))
        total = truth["checks"]["plan-discrepancy"]["classes"][cls]["totals"]["area"]["planar"]["m2"]
        assert close(planar, total) and n == status, cls
    (overlap,), = rows(pool, "SELECT coalesce(sum(ST_Area(ST_CollectionExtract(ST_Intersection("
                             "ST_Transform(a.geom, 4547), ST_Transform(b.geom, 4547)), 3))), 0) "
                             "FROM blueprint.discrepancy_patches a JOIN blueprint.discrepancy_patches b "
                             "ON a.fid < b.fid AND ST_Intersects(a.geom, b.geom)")
    assert overlap == 0  # the classes never overlap


def test_dem_is_a_cog_over_the_county(small_demo, pool):
    (x0, y0, x1, y1), = rows(pool, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                                   "(SELECT ST_Extent(geom) e FROM blueprint.admin_divisions) s")
    with rasterio.open(small_demo["dem"]) as ds:
        assert ds.crs.to_epsg() == 4490
        assert ds.profile["tiled"] and ds.overviews(1)
        assert ds.res[0] <= 3 / 3600 + 1e-12
        b = ds.bounds
        assert b.left <= x0 and b.bottom <= y0 and b.right >= x1 and b.top >= y1
        z = ds.read(1)
        sw = next(ds.sample([(113.08, 28.17)]))[0]  # 浏阳河 valley near 㮾梨
        ne = next(ds.sample([(113.31, 28.62)]))[0]  # the hills of the north-east
    assert 20 < z.min() and z.max() < 700 and sw < 60 < 200 < ne


def test_generation_is_deterministic(registry, truth, pool):
    """Same seed → the same truth, and bit for bit the rows and geometries load_demo stored; another seed
    → another county."""
    first = build_demo(registry, "small", 430121)
    assert json.loads(json.dumps(first.truth, ensure_ascii=False)) == truth  # the fixture's own build
    for layer in ("land_use_survey", "key_projects", "road_network", "basic_farmland"):
        data = first.layers[layer]
        multi = {"Polygon": shapely.MultiPolygon, "LineString": shapely.MultiLineString}
        make = multi.get(data.layer.geometry)
        wkb = [(make([g]) if make and g.geom_type == data.layer.geometry else g).wkb for g in data.geometries]
        stored = rows(pool, sql.SQL("SELECT bsm, ST_AsBinary(geom, 'NDR') FROM {} ORDER BY bsm").format(table(layer)))
        assert [b for b, _ in stored] == [r["BSM"] for r in data.rows]
        assert [bytes(g) for _, g in stored] == wkb, layer
    other = build_demo(registry, "small", 7)
    assert other.truth["conflicts"] != first.truth["conflicts"]
    assert not np.array_equal(first.dem.data, other.dem.data)

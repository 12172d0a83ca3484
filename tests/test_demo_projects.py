"""The planted project sites and the site-selection case of truth.json, recomputed with PostGIS from the
stored rows of the small demo county (the generator measured them with shapely on the same stored doubles).

Like tests/test_demo_truth.py, nothing here is a hard-coded answer: the truth comes from the generator, the
expected values from PostGIS on what was stored; the designed properties are checked on both."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
from psycopg2 import sql

REL = 1e-6
ABS_M = 1e-6  # distances and areas that are 0 in one and a rounding error in the other
SITES = ("P1", "P2", "P3", "P4", "P5")


@pytest.fixture(scope="module")
def truth(small_demo) -> dict:
    return json.loads(Path(small_demo["truth"]).read_text("utf-8"))


@pytest.fixture(scope="module")
def sites(truth) -> dict[str, dict]:
    return {s["name"]: s for s in truth["project_sites"]}


def rows(pool, query, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def table(layer: str) -> sql.Composed:
    return sql.SQL("blueprint.{}").format(sql.Identifier(layer))


def close(a: float, b: float) -> bool:
    return abs(a - b) <= max(REL * max(abs(a), abs(b)), ABS_M)


def control_layers(registry) -> list[str]:
    return [layer.id for layer in registry.vector_layers() if layer.control_line]


SITE_4547 = "ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(%(site)s), 4490), 4547)"

# One layer against one site, the truth.json definitions in SQL: hits (positive area for polygons, any contact
# otherwise), the union of the pieces, the distance to the nearest feature.
LAYER_SQL = """
WITH s AS (SELECT {site} AS g),
     f AS (SELECT t.bsm, ST_Transform(t.geom, 4547) AS g FROM {t} t),
     x AS (SELECT f.bsm, ST_CollectionExtract(ST_Intersection(s.g, f.g), 3) AS p FROM f, s
           WHERE ST_Intersects(s.g, f.g)),
     h AS (SELECT bsm, p FROM x WHERE NOT %(polygon)s OR ST_Area(p) > 0),
     u AS (SELECT ST_CollectionExtract(ST_Union(p), 3) AS g FROM h)
SELECT (SELECT min(ST_Distance(s.g, f.g)) FROM f, s),
       (SELECT coalesce(array_agg(bsm ORDER BY bsm), '{{}}') FROM h),
       coalesce(ST_Area(u.g), 0), coalesce(ST_Area(ST_Transform(u.g, 4490)::geography, true), 0),
       (SELECT ST_Area(g) FROM s)
FROM u
"""


def site_param(site: dict) -> dict:
    return {"site": json.dumps(site["geometry"])}


# ---- the designed properties ------------------------------------------------------------------------------
def test_five_project_sites(sites):
    assert tuple(sites) == SITES
    for site in sites.values():
        assert site["title"] and site["kind"] and site["design"]
        assert 1e4 <= site["area"]["planar"]["m2"] <= 2e5, site["name"]  # 1–20 ha
        xy = site["geometry_epsg4547"]["coordinates"][0]
        assert all(isinstance(v, int) for p in xy for v in p), "vertices on the integer-metre grid"
        lon, lat = zip(*site["geometry"]["coordinates"][0], strict=True)
        assert all(112.9 < x < 113.7 for x in lon) and all(27.9 < y < 28.8 for y in lat), "CRS84 lon/lat order"
        assert site["xzqdm"] and all(len(code) == 12 for code in site["xzqdm"])


def test_p1_is_clean(sites, registry, pool):
    p1 = sites["P1"]
    for layer in control_layers(registry):
        entry = p1["layers"][layer]
        if layer == "construction_scale_boundary":  # it tiles the county: only 允许建设区 is touched
            assert entry["intersects"] and entry["bsm"]
            codes = rows(pool, "SELECT DISTINCT gzqlxdm FROM blueprint.construction_scale_boundary "
                               "WHERE bsm = ANY(%s)", (entry["bsm"],))
            assert codes == [("010",)]
            continue
        assert not entry["intersects"] and entry["distance_m"] >= 100.0, layer
    (tiles,), = rows(pool, "SELECT abs((SELECT sum(ST_Area(ST_Transform(geom, 4547))) FROM "
                           "blueprint.construction_scale_boundary) - (SELECT ST_Area(ST_Union(ST_Transform(geom, "
                           "4547))) FROM blueprint.admin_divisions)) < 1")
    assert tiles
    (d,), = rows(pool, f"SELECT min(ST_Distance({SITE_4547}, ST_Transform(geom, 4547))) "
                       "FROM blueprint.construction_scale_boundary WHERE gzqlxdm <> '010'", site_param(p1))
    assert d >= 100.0


def test_p2_is_30_percent_farmland(sites):
    layers = sites["P2"]["layers"]
    assert layers["basic_farmland"]["share"] == pytest.approx(0.30, abs=0.002)
    assert not layers["eco_red_line"]["intersects"] and layers["eco_red_line"]["distance_m"] > 0


def test_p3_is_60_40_across_the_urban_development_boundary(sites):
    layers = sites["P3"]["layers"]
    assert layers["urban_dev_boundary"]["share"] == pytest.approx(0.60, abs=0.002)
    for layer in ("eco_red_line", "basic_farmland"):
        assert not layers[layer]["intersects"] and layers[layer]["overlap"]["planar"]["m2"] == 0, layer


def test_p4_crosses_blue_line_and_road_red_line(sites):
    layers = sites["P4"]["layers"]
    assert layers["blue_line"]["intersects"] and layers["blue_line"]["overlap"]["planar"]["m2"] > 0
    assert 0 < layers["blue_line"]["share"] < 1
    assert layers["road_red_line"]["intersects"] and layers["road_red_line"]["bsm"]


def test_p5_lies_inside_one_red_line_polygon(sites, pool):
    p5 = sites["P5"]
    entry = p5["layers"]["eco_red_line"]
    assert entry["share"] == pytest.approx(1.0, abs=1e-9) and len(entry["bsm"]) == 1
    (within, inset), = rows(pool, f"""
        SELECT ST_Within({SITE_4547}, ST_Transform(geom, 4547)),
               ST_Distance({SITE_4547}, ST_Boundary(ST_Transform(geom, 4547)))
        FROM blueprint.eco_red_line WHERE bsm = %(bsm)s""", site_param(p5) | {"bsm": entry["bsm"][0]})
    assert within and inset >= 20.0


# ---- truth.json against PostGIS ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", SITES)
def test_project_site_matches_postgis(sites, name, pool, registry):
    site = sites[name]
    params = site_param(site)
    (planar, ell, shift), = rows(pool, f"""
        SELECT ST_Area({SITE_4547}), ST_Area(ST_SetSRID(ST_GeomFromGeoJSON(%(site)s), 4490)::geography, true),
               ST_HausdorffDistance({SITE_4547}, ST_SetSRID(ST_GeomFromGeoJSON(%(design)s), 4547))""",
                                  params | {"design": json.dumps(site["geometry_epsg4547"])})
    assert close(planar, site["area"]["planar"]["m2"]) and close(ell, site["area"]["ellipsoidal"]["m2"])
    assert shift < 1e-6  # geometry_epsg4547 is the same polygon
    assert set(site["layers"]) == {layer.id for layer in registry.vector_layers()}
    for layer in registry.vector_layers():
        want = site["layers"][layer.id]
        polygon = layer.geometry == "Polygon"
        (dist, bsm, area, area_ell, site_area), = rows(pool, sql.SQL(LAYER_SQL).format(
            site=sql.SQL(SITE_4547), t=table(layer.id)), params | {"polygon": polygon})
        where = (name, layer.id)
        assert sorted(bsm) == want["bsm"], where
        assert want["intersects"] == bool(bsm), where
        assert close(dist, want["distance_m"]), (where, dist, want["distance_m"])
        assert close(area, want["overlap"]["planar"]["m2"]), (where, area, want["overlap"]["planar"]["m2"])
        assert close(area_ell, want["overlap"]["ellipsoidal"]["m2"]), where
        assert want["share"] == pytest.approx(area / site_area if polygon else 0.0, rel=REL, abs=1e-9), where
        assert want["overlap"]["planar"]["mu"] == pytest.approx(want["overlap"]["planar"]["m2"] * 15 / 1e4,
                                                                rel=1e-12)
    towns = rows(pool, f"""
        SELECT xzqdm FROM blueprint.admin_divisions
        WHERE ST_Area(ST_CollectionExtract(ST_Intersection({SITE_4547}, ST_Transform(geom, 4547)), 3)) > 0
        ORDER BY xzqdm""", params)
    assert [t for (t,) in towns] == site["xzqdm"]


# ---- site selection ---------------------------------------------------------------------------------------
PARTS_SQL = """
WITH region AS (SELECT ST_Transform(geom, 4547) AS g, geom FROM blueprint.admin_divisions WHERE xzqdm = %(region)s),
     inside AS (SELECT ST_Union(ST_Transform(l.geom, 4547)) AS g FROM ({inside}) l, region r
                WHERE ST_Intersects(l.geom, r.geom)),
     outside AS (SELECT ST_Union(ST_Transform(l.geom, 4547)) AS g FROM ({outside}) l, region r
                 WHERE ST_Intersects(l.geom, r.geom)),
     f AS (SELECT p.bsm, ST_Transform(p.geom, 4547) AS g FROM {land_use} p, region r
           WHERE p.yddm = ANY(%(codes)s) AND ST_Intersects(ST_Transform(p.geom, 4547), r.g)),
     r AS (SELECT f.bsm, ST_CollectionExtract(ST_Intersection(f.g, r.g), 3) AS region_g FROM f, region r),
     piece AS (SELECT r.bsm, r.region_g, ST_CollectionExtract(ST_Intersection(r.region_g, i.g), 3) AS inside_g
               FROM r, inside i),
     cut AS (SELECT p.bsm, p.region_g, p.inside_g,
                    ST_CollectionExtract(CASE WHEN o.g IS NULL THEN p.inside_g
                                              ELSE ST_Difference(p.inside_g, o.g) END, 3) AS g
             FROM piece p, outside o),
     parts AS (SELECT bsm, (ST_Dump(g)).geom AS g FROM cut WHERE NOT ST_IsEmpty(g))
SELECT bsm, NULL::float8, ST_Area(region_g), ST_Area(inside_g), ST_Area(g), NULL::float8, NULL::float8 FROM cut
UNION ALL
SELECT parts.bsm, ST_Area(parts.g), NULL, NULL, NULL, ST_Area(ST_Transform(parts.g, 4490)::geography, true),
       (SELECT min(ST_Distance(parts.g, ST_Transform(r.geom, 4547))) FROM {roads} r)
FROM parts
"""


def _union_of(layers: list[str]) -> sql.Composable:
    return sql.SQL(" UNION ALL ").join(sql.SQL("SELECT geom FROM {}").format(table(lid)) for lid in layers)


@pytest.fixture(scope="module")
def selection(truth, pool) -> dict:
    """The semantics of truth["site_selection"] in PostGIS: every feature's classification and every part."""
    case = truth["site_selection"]
    c = case["constraints"]
    query = sql.SQL(PARTS_SQL).format(inside=_union_of(c["inside"]), outside=_union_of(c["outside"]),
                                      land_use=table(c["land_use_layer"]), roads=table(c["road_layer"]))
    found = rows(pool, query, {"region": case["region"], "codes": c["allowed_codes"]})
    features, parts = {}, defaultdict(list)
    for bsm, part_area, region_area, inside_area, cut_area, ell, road in found:
        if part_area is None:
            features[bsm] = (region_area, inside_area, cut_area)
        else:
            parts[bsm].append((part_area, ell, road))
    out = {"features": features, "parts": {}}
    for bsm, mine in parts.items():
        for k, (a, e, road) in enumerate(sorted(mine, key=lambda p: -p[0])):
            if not c["min_area_m2"] <= a <= c["max_area_m2"]:
                reason = "area"
            elif road > c["max_road_distance_m"]:
                reason = "road_distance"
            else:
                reason = None
            out["parts"][(bsm, k)] = (a, e, road, reason)
    return out


def test_site_selection_region_and_constraints(truth, pool, registry):
    case = truth["site_selection"]
    c = case["constraints"]
    assert case["semantics"] and c["inside"] == ["urban_dev_boundary"] and c["road_layer"] == "road_centerline"
    kinds = {layer.id: layer.geometry for layer in registry.vector_layers()}
    assert all(kinds[lid] == "Polygon" for lid in c["inside"] + c["outside"])
    assert set(c["outside"]) | {"urban_dev_boundary", "construction_scale_boundary", "road_red_line"} \
        == set(control_layers(registry))
    (udb, cons, roads), = rows(pool, """
        SELECT (SELECT count(*) FROM blueprint.urban_dev_boundary u WHERE ST_Intersects(u.geom, t.geom)),
               (SELECT count(*) FROM blueprint.planned_land_use p WHERE p.yddm = ANY(%(codes)s)
                  AND ST_Intersects(p.geom, t.geom)),
               (SELECT count(*) FROM blueprint.road_centerline r WHERE ST_Intersects(r.geom, t.geom))
        FROM blueprint.admin_divisions t WHERE t.xzqdm = %(region)s""",
                              {"region": case["region"], "codes": c["allowed_codes"]})
    assert udb and cons and roads
    present = {code for (code,) in rows(pool, "SELECT DISTINCT yddm FROM blueprint.planned_land_use")}
    assert set(c["allowed_codes"]) <= present
    assert 3 <= len(case["candidates"]) <= 30
    assert {r["reason"] for r in case["rejected_examples"]} == {"outside", "control_line", "area", "road_distance"}


def test_site_selection_candidates_match_postgis(truth, selection):
    case = truth["site_selection"]
    got = [(bsm, k, a, e, road) for (bsm, k), (a, e, road, reason) in selection["parts"].items() if reason is None]
    got.sort(key=lambda p: (p[4], -p[2], p[0], p[1]))
    want = case["candidates"]
    assert [(g[0], g[1]) for g in got] == [(w["bsm"], w["part"]) for w in want]
    for (bsm, k, a, e, road), w in zip(got, want, strict=True):
        assert close(a, w["area"]["planar"]["m2"]) and close(e, w["area"]["ellipsoidal"]["m2"]), (bsm, k)
        assert close(road, w["road_distance_m"]), (bsm, k)
    ranks = [(w["road_distance_m"], -w["area"]["planar"]["m2"], w["bsm"], w["part"]) for w in want]
    assert ranks == sorted(ranks)


def test_site_selection_rejections_match_postgis(truth, selection):
    for r in truth["site_selection"]["rejected_examples"]:
        if r["reason"] in ("outside", "control_line"):
            region_area, inside_area, cut_area = selection["features"][r["bsm"]]
            assert region_area > 0 and cut_area == 0, r
            assert (inside_area == 0) == (r["reason"] == "outside"), r
            kept = region_area if r["reason"] == "outside" else inside_area
            assert close(kept, r["area"]["planar"]["m2"]), r
            assert not any(bsm == r["bsm"] for bsm, _ in selection["parts"]), r
        else:
            a, e, road, reason = selection["parts"][(r["bsm"], r["part"])]
            assert reason == r["reason"], r
            assert close(a, r["area"]["planar"]["m2"]) and close(road, r["road_distance_m"]), r
    counts = defaultdict(int)
    for (a, _, _, reason) in selection["parts"].values():
        if reason and a >= 1.0:
            counts[reason] += 1
    for region_area, inside_area, cut_area in selection["features"].values():
        if cut_area == 0 and (region_area if inside_area == 0 else inside_area) >= 1.0:
            counts["outside" if inside_area == 0 else "control_line"] += 1
    assert dict(counts) == truth["site_selection"]["rejected_counts"]

"""Saving a conflict check as the 差异图斑 layer (``discrepancy_patches``): one feature per patch, each 待解决
until an authorised user marks it 已解决 (an edit of its XTZT field). Saved like any load — one transaction,
recorded in the change log — so the collection, its tiles and its WMS/WFS layer follow at once.

Without an area of interest the layer is replaced; with one, the saved patches lying in that area are
replaced and the rest of the county's ledger stays.
"""

from __future__ import annotations

import shapely

from lantu.config.codelists import DIFF_ADVICE
from lantu.processes.base import RunContext
from lantu.processes.overlay import OverlayClass, Patch
from lantu.providers.tables import table_id
from lantu.providers.writer import delete_features, write_features

LAYER = "discrepancy_patches"


def save_patches(ctx: RunContext, classes: list[OverlayClass], patches: list[Patch], aoi: dict | None) -> dict:
    layer = ctx.registry.get(LAYER)
    titles = {c.name: c for c in classes}
    towns = _town_names(ctx)
    rows, geoms = [], []
    with ctx.pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT coalesce(max(substring(bsm from 7)::bigint), 0) FROM {table_id(layer).as_string(conn)} "
                    "WHERE bsm ~ '^430121[0-9]{12}$'")
        first = cur.fetchone()[0] + 1
    for n, p in enumerate(patches, start=first):
        cls = titles[p.cls]
        town = max(p.by_town, key=p.by_town.get) if p.by_town else ""
        codes = {cls.a: p.a_code, cls.b: p.b_code}
        rows.append({"BSM": f"430121{n:012d}", "YSDM": layer.ysdm, "XZQDM": town, "XZQMC": towns.get(town, ""),
                     "MJ": round(p.planar_m2, 2), "CYLX": p.cls if p.cls in DIFF_ADVICE else None,
                     "CGYD": codes.get("planned_land_use"), "TGYT": codes.get("construction_scale_boundary"),
                     "XTZT": "待解决", "XTYJ": DIFF_ADVICE.get(p.cls, cls.title),
                     "BZ": f"{cls.a}:{p.a_bsm} × {cls.b}:{p.b_bsm}"})
        geoms.append(shapely.from_geojson(p.geojson))
    with ctx.pool.connection() as conn:
        replaced = 0
        if aoi and aoi.get("ewkb"):
            with conn.cursor() as cur:
                cur.execute(f"SELECT bsm FROM {table_id(layer).as_string(conn)} WHERE "
                            "ST_Within(ST_PointOnSurface(geom), ST_GeomFromEWKB(%s))", (bytes.fromhex(aoi["ewkb"]),))
                old = [r[0] for r in cur.fetchall()]
            if old:
                replaced = delete_features(conn, layer, old, who="conflict-check", source=f"job {ctx.job_id}").deleted
            result = write_features(conn, layer, rows, geoms, mode="append", who="conflict-check",
                                    source=f"job {ctx.job_id}")
        else:
            result = write_features(conn, layer, rows, geoms, mode="replace", who="conflict-check",
                                    source=f"job {ctx.job_id}")
            replaced = result.deleted
    return {"layer": LAYER, "inserted": result.inserted, "replaced": replaced,
            "collection": f"{ctx.settings.public_url}/collections/{LAYER}"}


def _town_names(ctx: RunContext) -> dict[str, str]:
    with ctx.pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT xzqdm, xzqmc FROM blueprint.admin_divisions")
        return dict(cur.fetchall())

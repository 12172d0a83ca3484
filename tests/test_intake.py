"""`lantu load`: data intake with QC. Good files load in one transaction; each kind of bad file is refused
with a QC error naming the problem, a JSON and a text report, and the layer left exactly as it was.

Test files are built here at test time (pyogrio) in tmp_path: small polygons inside 长沙县."""

from __future__ import annotations

import json
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pyogrio.raw
import pytest
import shapely
from psycopg2 import sql
from pyproj import Transformer

from lantu.providers.intake import IntakeRefused, IntakeResult, IntakeUsageError, run_intake
from lantu.providers.qc import QcReport

LAYER = "basic_farmland"
FIELDS = ["BSM", "YSDM", "XZQDM", "XZQMC", "MJ", "DLBM", "DLMC", "JBNTTBBH", "ZLDJ", "BZ"]
TO_4547 = Transformer.from_crs(4490, 4547, always_xy=True)
TO_3857 = Transformer.from_crs(4490, 3857, always_xy=True)


# ---- building test files --------------------------------------------------------------------------------
def rows_and_polygons(n: int, prefix: str = "T") -> tuple[list[dict], list[shapely.Geometry]]:
    """``n`` small squares in 长沙县 (lon 113.15…, lat 28.2…) with valid attributes."""
    rows, geoms = [], []
    for i in range(n):
        x, y = 113.15 + 0.01 * (i % 10), 28.20 + 0.01 * (i // 10)
        geoms.append(shapely.box(x, y, x + 0.004, y + 0.003))
        rows.append({"BSM": f"{prefix}{i + 1:06d}", "YSDM": "9900000004",
                     "XZQDM": "430121001000" if i % 2 else "430121", "XZQMC": "星沙街道" if i % 2 else "长沙县",
                     "MJ": 1200.5 + i, "DLBM": "0101" if i % 3 else "0103", "DLMC": "水田" if i % 3 else "旱地",
                     "JBNTTBBH": f"JB{i:04d}", "ZLDJ": 1 + i % 10, "BZ": None})
    return rows, geoms


def project(geoms, transformer):
    return list(shapely.transform(np.array(geoms, dtype=object),
                                  lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1]))))


def write_vector(path: Path, rows, geoms, *, crs: str | None = "EPSG:4490", fields=None, layer=None,
                 driver=None) -> Path:
    fields = list(fields or FIELDS)
    data = []
    for f in fields:
        values = [r.get(f) for r in rows]
        if f == "MJ":
            data.append(np.array([np.nan if v is None else v for v in values], dtype=float))
        else:
            data.append(np.array(values, dtype=object))
    types = {shapely.get_type_id(g) for g in geoms}
    gtype = {frozenset({3}): "Polygon", frozenset({6}): "MultiPolygon", frozenset({1}): "LineString",
             frozenset({0}): "Point"}.get(frozenset(types), "Unknown")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "'crs' was not provided" is the point of some files
        pyogrio.raw.write(str(path), np.array(shapely.to_wkb(geoms), dtype=object), data, fields, crs=crs,
                          layer=layer, driver=driver, geometry_type=gtype,
                          promote_to_multi=False if driver != "ESRI Shapefile" else None)
    return path


def zip_shapefile(tmp_path: Path, rows, geoms, name: str = "farmland", **kw) -> Path:
    folder = tmp_path / f"shp-{name}"
    folder.mkdir()
    write_vector(folder / f"{name}.shp", rows, geoms, driver="ESRI Shapefile", **kw)
    archive = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(folder.iterdir()):
            zf.write(part, part.name)
    return archive


# ---- database state ---------------------------------------------------------------------------------------
def table_state(pool, layer: str = LAYER) -> tuple[int, str]:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(bsm || ST_AsEWKT(geom), ',' ORDER BY fid), '')) "
                            "FROM {}.{}").format(sql.Identifier("blueprint"), sql.Identifier(layer)))
        count, digest = cur.fetchone()
    return count, digest


@pytest.fixture(scope="module", autouse=True)
def restore_layers(pool):
    """Other modules may rely on what is stored (the demo): put the layers this module writes back as found."""
    layers = [LAYER, "key_projects"]
    with pool.connection() as conn, conn.cursor() as cur:
        for layer in layers:
            cur.execute(sql.SQL("CREATE TABLE lantu.{} AS SELECT * FROM blueprint.{}").format(
                sql.Identifier(f"_test_intake_{layer}"), sql.Identifier(layer)))
    before = {layer: table_state(pool, layer) for layer in layers}
    yield
    with pool.connection() as conn, conn.cursor() as cur:
        for layer in layers:
            saved, table = sql.Identifier(f"_test_intake_{layer}"), sql.Identifier(layer)
            cur.execute(sql.SQL("DELETE FROM blueprint.{}").format(table))
            cur.execute(sql.SQL("INSERT INTO blueprint.{} SELECT * FROM lantu.{}").format(table, saved))
            cur.execute(sql.SQL("DROP TABLE lantu.{}").format(saved))
    assert {layer: table_state(pool, layer) for layer in layers} == before


def fetch(pool, query: str, params=()):
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


@pytest.fixture
def base(pool, registry, tmp_path) -> tuple[int, str]:
    """Reset the layer to a known state (3 features, BSM B000001…) whatever other tests left behind."""
    rows, geoms = rows_and_polygons(3, prefix="B")
    path = write_vector(tmp_path / "base.gpkg", rows, geoms, layer=LAYER)
    run_intake(pool, registry, path, LAYER, mode="replace", report_path=tmp_path / "base-report", progress=False)
    state = table_state(pool)
    assert state[0] == 3
    return state


def refuse(pool, registry, tmp_path, path, before, check: str, *, mode="replace", **kw) -> QcReport:
    """Load ``path``, expect a QC refusal with ``check`` among the errors, the layer untouched, reports written."""
    report_base = tmp_path / f"report-{check}"
    with pytest.raises(IntakeRefused) as info:
        run_intake(pool, registry, path, LAYER, mode=mode, report_path=report_base, progress=False, **kw)
    report = info.value.report
    assert check in report.checks("error"), report.to_text()
    assert report.status == "refused"
    assert table_state(pool) == before, "a refused load must leave the layer exactly as it was"
    assert str(info.value).startswith("QC refused") and "\n" not in str(info.value)  # one line for the CLI
    saved = json.loads(report_base.with_name(report_base.name + ".json").read_text("utf-8"))
    assert saved["status"] == "refused" and saved["ok"] is False
    assert check in [i["check"] for i in saved["issues"]]
    text = report_base.with_name(report_base.name + ".txt").read_text("utf-8")
    assert f"[{check}]" in text and "REFUSED" in text
    assert info.value.report_paths[1].exists()
    return report


def issue(report: QcReport, check: str):
    return next(i for i in report.issues if i.check == check)


# ---- good files ---------------------------------------------------------------------------------------------
def test_good_geopackage_loads_with_change_log(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(25, prefix="G")
    path = write_vector(tmp_path / "good.gpkg", rows, geoms, layer=LAYER)
    result = run_intake(pool, registry, path, LAYER, who="test-intake", reports_dir=tmp_path / "reports",
                        progress=False)
    assert isinstance(result, IntakeResult)
    assert (result.inserted, result.deleted, result.features) == (25, 3, 25)
    assert table_state(pool)[0] == 25
    assert result.report.ok and result.report.status == "loaded"
    assert result.report_json.parent == tmp_path / "reports" and result.report_json.name.startswith(
        f"intake-{LAYER}-")
    saved = json.loads(result.report_json.read_text("utf-8"))
    assert saved["status"] == "loaded" and saved["result"]["inserted"] == 25
    assert "永久基本农田" in result.report_text.read_text("utf-8")
    assert "25 inserted" in str(result)

    (layer, operation, inserted, deleted, who, source, details), = fetch(
        pool, "SELECT layer, operation, inserted, deleted, who, source, details FROM lantu.change_log WHERE id = %s",
        (result.change_id,))
    assert (layer, operation, inserted, deleted, who, source) == (LAYER, "replace", 25, 3, "test-intake", str(path))
    assert details["features"] == 25 and details["report"] == str(result.report_json)

    (srid, x, y, dlbm, zldj, xzqmc, kind), = fetch(
        pool, "SELECT ST_SRID(geom), ST_XMin(geom), ST_YMin(geom), dlbm, zldj, xzqmc, GeometryType(geom) "
              "FROM blueprint.basic_farmland WHERE bsm = 'G000002'")
    assert srid == 4490 and kind == "MULTIPOLYGON"
    assert x == pytest.approx(113.16) and y == pytest.approx(28.20)  # x = lon, y = lat
    assert (dlbm, zldj, xzqmc) == ("0101", 2, "星沙街道")


def test_good_zipped_shapefile(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(7, prefix="Z")
    archive = zip_shapefile(tmp_path, rows, geoms)
    result = run_intake(pool, registry, archive, LAYER, report_path=tmp_path / "zip", progress=False)
    assert result.inserted == 7 and table_state(pool)[0] == 7
    assert result.report.file["driver"] == "ESRI Shapefile"
    (xzqmc,), = fetch(pool, "SELECT xzqmc FROM blueprint.basic_farmland WHERE bsm = 'Z000002'")
    assert xzqmc == "星沙街道"  # Chinese text survives the .dbf (UTF-8 .cpg)


def test_shapefile_without_cpg_in_gbk(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="U")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        pyogrio.raw.write(str(tmp_path / "gbk.shp"), np.array(shapely.to_wkb(geoms), dtype=object),
                          [np.array([r[f] for r in rows], dtype=object) for f in FIELDS[:4] + ["DLBM"]],
                          FIELDS[:4] + ["DLBM"], crs="EPSG:4490", driver="ESRI Shapefile",
                          geometry_type="Polygon", encoding="GBK")
    (tmp_path / "gbk.cpg").unlink()  # an old Chinese shapefile: GBK text and no code page anywhere
    result = run_intake(pool, registry, tmp_path / "gbk.shp", LAYER, report_path=tmp_path / "gbk", progress=False)
    assert "file.encoding" in result.report.checks("warning")
    assert [r[0] for r in fetch(pool, "SELECT xzqmc FROM blueprint.basic_farmland ORDER BY bsm")] == [
        "长沙县", "星沙街道", "长沙县"]


def test_good_geojson(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="J")
    path = write_vector(tmp_path / "good.geojson", rows, geoms, driver="GeoJSON")
    result = run_intake(pool, registry, path, LAYER, report_path=tmp_path / "gj", progress=True)
    assert result.inserted == 4 and result.report.checks("warning") == []


def test_append_mode(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(5, prefix="A")
    path = write_vector(tmp_path / "more.gpkg", rows, geoms)
    result = run_intake(pool, registry, path, LAYER, mode="append", report_path=tmp_path / "app", progress=False)
    assert (result.inserted, result.deleted) == (5, 0)
    assert table_state(pool)[0] == 3 + 5
    (operation,), = fetch(pool, "SELECT operation FROM lantu.change_log WHERE id = %s", (result.change_id,))
    assert operation == "append"


def test_projected_4547_is_transformed_exactly(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(6, prefix="P")
    projected = project(geoms, TO_4547)
    path = write_vector(tmp_path / "gk.gpkg", rows, projected, crs="EPSG:4547")
    result = run_intake(pool, registry, path, LAYER, report_path=tmp_path / "gk", progress=False)
    assert result.inserted == 6 and result.report.checks("warning") == []  # CGCS2000 family: no warning
    stored = fetch(pool, "SELECT bsm, ST_AsBinary(geom) FROM blueprint.basic_farmland ORDER BY bsm")
    assert [b for b, _ in stored] == [r["BSM"] for r in rows]
    for (_, wkb), original in zip(stored, projected, strict=True):
        lonlat = shapely.get_coordinates(shapely.from_wkb(bytes(wkb)))
        assert 113 < lonlat[:, 0].min() < 114 and 28 < lonlat[:, 1].min() < 29  # x = lon
        back = np.column_stack(TO_4547.transform(lonlat[:, 0], lonlat[:, 1]))
        assert np.abs(back - shapely.get_coordinates(original)).max() < 0.001  # round trip within 1 mm


def test_wgs84_geojson_is_transformed_with_warning(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="W")
    path = write_vector(tmp_path / "wgs84.geojson", rows, geoms, crs="EPSG:4326", driver="GeoJSON")
    result = run_intake(pool, registry, path, LAYER, report_path=tmp_path / "wgs", progress=False)
    assert result.inserted == 3
    warn = issue(result.report, "crs.transformed")
    assert warn.severity == "warning" and "EPSG:4326" in warn.message
    (x,), = fetch(pool, "SELECT ST_XMin(geom) FROM blueprint.basic_farmland WHERE bsm = 'W000001'")
    assert x == pytest.approx(113.15, abs=1e-5)


def test_web_mercator_is_transformed(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(2, prefix="M")
    path = write_vector(tmp_path / "merc.gpkg", rows, project(geoms, TO_3857), crs="EPSG:3857")
    result = run_intake(pool, registry, path, LAYER, report_path=tmp_path / "merc", progress=False)
    assert "crs.transformed" in result.report.checks("warning")
    (x, y), = fetch(pool, "SELECT ST_XMin(geom), ST_YMin(geom) FROM blueprint.basic_farmland WHERE bsm = 'M000001'")
    assert (x, y) == (pytest.approx(113.15, abs=1e-5), pytest.approx(28.20, abs=1e-5))


def test_point_layer_takes_points_and_one_point_multipoints(pool, registry, tmp_path):
    rows = [{"BSM": f"KP{i}", "YSDM": "9900000010", "XZQDM": "430121", "XZQMC": "长沙县", "XMMC": f"项目{i}",
             "XMLX": "交通", "JSND": 2025} for i in range(3)]
    points = [shapely.Point(113.2, 28.3), shapely.MultiPoint([(113.25, 28.35)]), shapely.Point(113.3, 28.4)]
    fields = ["BSM", "YSDM", "XZQDM", "XZQMC", "XMMC", "XMLX", "JSND"]
    path = write_vector(tmp_path / "points.geojson", rows, points, fields=fields, driver="GeoJSON")
    result = run_intake(pool, registry, path, "key_projects", report_path=tmp_path / "pts", progress=False)
    assert result.inserted == 3
    kinds = fetch(pool, "SELECT GeometryType(geom), ST_X(geom) FROM blueprint.key_projects ORDER BY bsm")
    assert kinds == [("POINT", 113.2), ("POINT", 113.25), ("POINT", 113.3)]
    before = table_state(pool, "key_projects")
    points[2] = shapely.MultiPoint([(113.3, 28.4), (113.31, 28.41)])
    path = write_vector(tmp_path / "multipoints.geojson", rows, points, fields=fields, driver="GeoJSON")
    with pytest.raises(IntakeRefused) as info:
        run_intake(pool, registry, path, "key_projects", report_path=tmp_path / "mpts", progress=False)
    found = issue(info.value.report, "geometry.type")
    assert found.ids == ("KP2",) and "MultiPoint" in found.message
    assert table_state(pool, "key_projects") == before


def test_layer_chosen_by_name_from_several(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(2, prefix="L")
    path = tmp_path / "two.gpkg"
    write_vector(path, rows, geoms, layer="roads")
    write_vector(path, rows, geoms, layer="parcels")
    report = refuse(pool, registry, tmp_path, path, base, "file.layers")
    assert "roads" in issue(report, "file.layers").message and "parcels" in issue(report, "file.layers").message
    write_vector(path, rows, geoms, layer=LAYER)
    assert run_intake(pool, registry, path, LAYER, report_path=tmp_path / "two", progress=False).inserted == 2


# ---- bad files: refused, layer untouched ---------------------------------------------------------------
def test_wrong_crs(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="X")
    path = write_vector(tmp_path / "wrong-crs.gpkg", rows, geoms, crs="EPSG:4547")  # lon/lat labelled as GK
    report = refuse(pool, registry, tmp_path, path, base, "crs.mismatch")
    message = issue(report, "crs.mismatch").message
    assert "EPSG:4547" in message and "do not fit" in message and "degrees" in message


def test_no_crs_refused_then_accepted_with_srs(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="N")
    path = write_vector(tmp_path / "nocrs.shp", rows, geoms, crs=None, driver="ESRI Shapefile")
    assert not path.with_suffix(".prj").exists()
    report = refuse(pool, registry, tmp_path, path, base, "crs.missing")
    assert "--srs" in issue(report, "crs.missing").message
    result = run_intake(pool, registry, path, LAYER, srs="EPSG:4490", report_path=tmp_path / "srs", progress=False)
    assert result.inserted == 4 and "crs.assigned" in result.report.checks("warning")


def test_wrong_geometry_type(pool, registry, tmp_path, base):
    rows, _ = rows_and_polygons(3, prefix="Y")
    lines = [shapely.LineString([(113.2, 28.2 + i / 100), (113.3, 28.25 + i / 100)]) for i in range(3)]
    path = write_vector(tmp_path / "lines.gpkg", rows, lines)
    report = refuse(pool, registry, tmp_path, path, base, "geometry.type")
    found = issue(report, "geometry.type")
    assert "LineString" in found.message and "Polygon" in found.message
    assert found.ids == ("Y000001", "Y000002", "Y000003") and "Y000002" in found.message


def test_invalid_geometry_refused_then_repaired(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="V")
    geoms[1] = shapely.Polygon([(113.20, 28.30), (113.21, 28.31), (113.21, 28.30), (113.20, 28.31)])  # bow-tie
    path = write_vector(tmp_path / "bowtie.gpkg", rows, geoms)
    report = refuse(pool, registry, tmp_path, path, base, "geometry.invalid")
    found = issue(report, "geometry.invalid")
    assert found.ids == ("V000002",) and "V000002" in found.message and "Self-intersection" in found.message
    result = run_intake(pool, registry, path, LAYER, make_valid=True, report_path=tmp_path / "mv", progress=False)
    assert result.inserted == 3 and "geometry.repaired" in result.report.checks("warning")
    (valid, parts, area), = fetch(pool, "SELECT ST_IsValid(geom), ST_NumGeometries(geom), ST_Area(geom) "
                                        "FROM blueprint.basic_farmland WHERE bsm = 'V000002'")
    assert valid and parts == 2 and area == pytest.approx(0.5 * 0.01 * 0.01)


def test_missing_required_field(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="F")
    path = write_vector(tmp_path / "no-dlbm.gpkg", rows, geoms, fields=[f for f in FIELDS if f != "DLBM"] + ["EXTRA"])
    report = refuse(pool, registry, tmp_path, path, base, "field.missing")
    found = issue(report, "field.missing")
    assert found.field == "DLBM" and "DLBM" in found.message and "地类编码" in found.message
    assert "field.unknown" in report.checks("warning")
    assert "DLBM 地类编码" in report.to_text()


def test_required_field_empty(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="E")
    rows[2]["XZQMC"] = ""
    path = write_vector(tmp_path / "empty-value.gpkg", rows, geoms)
    found = issue(refuse(pool, registry, tmp_path, path, base, "field.null"), "field.null")
    assert found.field == "XZQMC" and found.ids == ("E000003",)


def test_unknown_code(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="C")
    rows[1]["DLBM"] = "9999"
    rows[3]["XZQDM"] = "110101"
    path = write_vector(tmp_path / "bad-code.gpkg", rows, geoms)
    report = refuse(pool, registry, tmp_path, path, base, "code.unknown")
    by_field = {i.field: i for i in report.errors if i.check == "code.unknown"}
    assert set(by_field) == {"DLBM", "XZQDM"}
    assert "'9999'" in by_field["DLBM"].message and "C000002" in by_field["DLBM"].message
    assert "gbt21010" in by_field["DLBM"].message and by_field["DLBM"].values == ("9999",)
    assert by_field["XZQDM"].ids == ("C000004",)


def test_bad_values(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="Q")
    rows[0]["ZLDJ"] = "abc"
    rows[1]["JBNTTBBH"] = "TOO-LONG-NUMBER"
    path = write_vector(tmp_path / "bad-values.gpkg", rows, geoms)
    report = refuse(pool, registry, tmp_path, path, base, "field.type")
    assert issue(report, "field.type").field == "ZLDJ" and "'abc'" in issue(report, "field.type").message
    assert issue(report, "field.length").ids == ("Q000002",)


def test_duplicate_bsm_in_file(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="D")
    rows[3]["BSM"] = rows[1]["BSM"]
    path = write_vector(tmp_path / "dup.gpkg", rows, geoms)
    found = issue(refuse(pool, registry, tmp_path, path, base, "bsm.duplicate"), "bsm.duplicate")
    assert "'D000002'" in found.message and "#2" in found.message and "#4" in found.message


def test_duplicate_bsm_against_stored_rows_in_append_mode(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="B")  # the base fixture stored B000001…B000003
    rows[0]["BSM"] = "NEW000001"
    path = write_vector(tmp_path / "dup-append.gpkg", rows, geoms)
    found = issue(refuse(pool, registry, tmp_path, path, base, "bsm.duplicate", mode="append"), "bsm.duplicate")
    assert "already stored" in found.message and found.ids == ("B000002", "B000003")
    # The same file replaces the layer without complaint.
    assert run_intake(pool, registry, path, LAYER, report_path=tmp_path / "rep", progress=False).inserted == 3


def test_empty_geometry(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(3, prefix="O")
    geoms[0] = shapely.Polygon()
    path = write_vector(tmp_path / "empty-geom.geojson", rows, geoms, driver="GeoJSON")
    found = issue(refuse(pool, registry, tmp_path, path, base, "geometry.empty"), "geometry.empty")
    assert found.ids == ("O000001",)


def test_truncated_geopackage(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(50, prefix="K")
    whole = write_vector(tmp_path / "whole.gpkg", rows, geoms).read_bytes()
    path = tmp_path / "truncated.gpkg"
    path.write_bytes(whole[: len(whole) // 2])
    found = issue(refuse(pool, registry, tmp_path, path, base, "file.truncated"), "file.truncated")
    assert "truncated" in found.message and "truncated.gpkg" in found.message


def test_truncated_geojson_and_shapefile(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(5, prefix="H")
    text = write_vector(tmp_path / "whole.geojson", rows, geoms, driver="GeoJSON").read_bytes()
    cut = tmp_path / "cut.geojson"
    cut.write_bytes(text[: len(text) // 2])
    refuse(pool, registry, tmp_path, cut, base, "file.truncated")
    shp = write_vector(tmp_path / "cut.shp", rows, geoms, driver="ESRI Shapefile")
    shp.write_bytes(shp.read_bytes()[:300])
    assert "cut.shp" in issue(refuse(pool, registry, tmp_path, shp, base, "file.truncated"), "file.truncated").message


def test_not_a_gis_file(pool, registry, tmp_path, base):
    png = tmp_path / "picture.gpkg"  # a PNG image under a GeoPackage name
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    assert "PNG" in issue(refuse(pool, registry, tmp_path, png, base, "file.unreadable"), "file.unreadable").message
    text = tmp_path / "notes.txt"
    text.write_text("地块清单，不是 GIS 文件\n", "utf-8")
    assert "not a GIS file" in issue(refuse(pool, registry, tmp_path, text, base, "file.unreadable"),
                                     "file.unreadable").message
    fake = tmp_path / "fake.geojson"
    fake.write_text("hello, world\n", "utf-8")
    refuse(pool, registry, tmp_path, fake, base, "file.unreadable")


def test_all_problems_reported_at_once(pool, registry, tmp_path, base):
    rows, geoms = rows_and_polygons(4, prefix="S")
    rows[0]["DLBM"] = "9999"
    rows[2]["BSM"] = rows[1]["BSM"]
    geoms[3] = shapely.Polygon([(113.20, 28.30), (113.21, 28.31), (113.21, 28.30), (113.20, 28.31)])
    path = write_vector(tmp_path / "many.gpkg", rows, geoms, fields=[f for f in FIELDS if f != "XZQMC"])
    report = refuse(pool, registry, tmp_path, path, base, "code.unknown")
    assert {"code.unknown", "bsm.duplicate", "geometry.invalid", "field.missing"} <= set(report.checks("error"))


# ---- parameters ---------------------------------------------------------------------------------------------
def test_bad_parameters(pool, registry, tmp_path):
    rows, geoms = rows_and_polygons(1)
    path = write_vector(tmp_path / "one.gpkg", rows, geoms)
    with pytest.raises(IntakeUsageError, match="--layer: unknown layer id 'no_such_layer'"):
        run_intake(pool, registry, path, "no_such_layer", report_path=tmp_path / "r")
    with pytest.raises(IntakeUsageError, match="--layer: imagery is a raster layer"):
        run_intake(pool, registry, path, "imagery", report_path=tmp_path / "r")
    with pytest.raises(ValueError, match="--mode must be replace or append"):
        run_intake(pool, registry, path, LAYER, mode="merge", report_path=tmp_path / "r")
    with pytest.raises(IntakeUsageError, match="--srs"):
        run_intake(pool, registry, path, LAYER, srs="EPSG:999999", report_path=tmp_path / "r")
    with pytest.raises(IntakeUsageError, match="FILE: .* does not exist"):
        run_intake(pool, registry, tmp_path / "missing.gpkg", LAYER, report_path=tmp_path / "r")
    assert not list(tmp_path.glob("r.*"))  # usage errors come before any report

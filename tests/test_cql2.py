"""CQL2 → SQL (providers/cql2sql.py): the 351 predicates of the CQL2 abstract test suite (OGC 21-065r2, Annex A)
in cql2-text and cql2-json against the standard's GeoPackage loaded into PostGIS, plus malformed and hostile
input, the bound-parameters-only rule and the CRS handling.

Conformance classes exercised (http://www.opengis.net/spec/cql2/1.0/conf/…): basic-cql2, advanced-comparison-
operators, case-insensitive-comparison, accent-insensitive-comparison, basic-spatial-functions,
basic-spatial-functions-plus, spatial-functions, temporal-functions, property-property, arithmetic.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
from psycopg2 import sql
from psycopg2.extras import execute_values

from lantu.providers.cql2sql import FilterError, Queryable, compile_filter, detect_unaccent

DATA = Path(__file__).resolve().parents[2] / "shared" / "conformance" / "cql2-data"
GPKG = DATA / "ne110m4cql2.gpkg"
COLLECTIONS = ("ne_110m_admin_0_countries", "ne_110m_populated_places_simple", "ne_110m_rivers_lake_centerlines")
SCHEMA = "cql2"
SQL_TYPES = {"string": "text", "integer": "bigint", "number": "double precision", "boolean": "boolean",
             "date": "date", "timestamp": "timestamptz"}


def load_queryables(collection: str) -> dict[str, Queryable]:
    """The collection's queryables (JSON Schema next to the GeoPackage) as the compiler's mapping."""
    doc = json.loads((DATA / f"{collection}.json").read_text(encoding="utf-8"))
    out = {}
    for name, prop in doc["properties"].items():
        if "$ref" in prop:
            kind = "geometry"
        elif prop.get("format") == "date":
            kind = "date"
        elif prop.get("format") == "date-time":
            kind = "timestamp"
        else:
            kind = prop["type"]
        out[name] = Queryable(name=name, column=name, type=kind)
    return out


def read_rows(filename: str) -> list[dict]:
    path = DATA / filename
    if not path.exists():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


TEXT_ROWS = read_rows("expected-counts.csv")
JSON_ROWS = read_rows("expected-counts-json.csv")


def expected(row: dict) -> int:
    """The ATS count, or the corrected count a disputed row's note gives ("the data set has N match…")."""
    if row["note"]:
        match = re.search(r"has (\d+) match", row["note"])
        assert match, f"a note without a count: {row['note']}"
        return int(match.group(1))
    return int(row["expected_count"])


# ---------------------------------------------------------------------------------------------------------------
# the data set, loaded once per module into schema cql2 of the session database


def _py(kind: str, value):
    if value is None:
        return None
    if kind == "string":
        return str(value)
    if kind == "integer":
        return int(value)
    if kind in ("number", "boolean"):
        value = float(value)
        if math.isnan(value):
            return None
        return bool(value) if kind == "boolean" else value
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        if kind == "date":
            return date.fromisoformat(str(value.astype("datetime64[D]")))
        return datetime.fromisoformat(str(value.astype("datetime64[us]"))).replace(tzinfo=UTC)
    raise AssertionError(f"unexpected {kind} value {value!r}")


@pytest.fixture(scope="module")
def cql2_db(pool):
    import pyogrio.raw

    assert GPKG.exists(), f"CQL2 test data not found at {GPKG}"
    queryables = {c: load_queryables(c) for c in COLLECTIONS}
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("CREATE EXTENSION IF NOT EXISTS unaccent")
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE; CREATE SCHEMA {}").format(
            sql.Identifier(SCHEMA), sql.Identifier(SCHEMA)))
        for collection in COLLECTIONS:
            meta, fids, geoms, fields = pyogrio.raw.read(GPKG, layer=collection, return_fids=True)
            props = [q for q in queryables[collection].values() if q.type != "geometry"]
            columns = list(meta["fields"])
            assert sorted(columns) == sorted(q.column for q in props), collection
            table = sql.Identifier(SCHEMA, collection)
            cur.execute(sql.SQL("CREATE TABLE {} (fid bigint PRIMARY KEY, {}, geom geometry(Geometry, 4326))").format(
                table, sql.SQL(", ").join(sql.SQL("{} " + SQL_TYPES[q.type]).format(sql.Identifier(q.column))
                                          for q in props)))
            kinds = [queryables[collection][c].type for c in columns]
            rows = [(int(fid), *[_py(k, f[i]) for k, f in zip(kinds, fields, strict=True)], bytes(geoms[i]))
                    for i, fid in enumerate(fids)]
            execute_values(cur, sql.SQL("INSERT INTO {} (fid, {}, geom) VALUES %s").format(
                table, sql.SQL(", ").join(map(sql.Identifier, columns))).as_string(conn), rows,
                template="(" + ", ".join(["%s"] * (len(columns) + 1)) + ", ST_GeomFromWKB(%s, 4326))")
            cur.execute(sql.SQL("CREATE INDEX ON {} USING gist (geom)").format(table))
            cur.execute(sql.SQL("ANALYZE {}").format(table))
        unaccent = detect_unaccent(conn)
    assert unaccent, "the unaccent extension could not be created"
    return {"pool": pool, "queryables": queryables, "unaccent": unaccent}


def count(db, collection: str, where: sql.Composed, params: list, source: sql.Composable | None = None) -> int:
    source = source or sql.Identifier(SCHEMA, collection)
    with db["pool"].connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {}").format(source, where), params)
        return cur.fetchone()[0]


def sql_text(db, composed: sql.Composed) -> str:
    with db["pool"].connection() as conn:
        return composed.as_string(conn)


def assert_parameters_only(text: str, params: list) -> None:
    """The SQL text has one placeholder per parameter and no value from the request in it."""
    assert text.count("%s") == len(params), (text, params)
    assert "%" not in text.replace("%s", ""), text
    # the only quoted strings Lantu writes itself: the LIKE escape character and the 'UTC' zone
    assert "'" not in text.replace("E'\\\\'", "").replace("'UTC'", ""), text
    for value in params:
        if isinstance(value, str) and len(value) >= 3:
            assert value not in text, (value, text)


# ---------------------------------------------------------------------------------------------------------------
# the abstract test suite's predicates


def _run_row(db, row: dict) -> None:
    collection = row["collection"]
    where, params = compile_filter(row["filter"], row["filter_lang"], db["queryables"][collection],
                                   filter_crs=4326, storage_srid=4326, unaccent_function=db["unaccent"])
    assert_parameters_only(sql_text(db, where), params)
    assert count(db, collection, where, params) == expected(row), row["filter"]


@pytest.mark.parametrize("row", TEXT_ROWS or [None], ids=[r["test_id"] for r in TEXT_ROWS] or ["missing"])
def test_ats_cql2_text(cql2_db, row):
    assert row, f"{DATA / 'expected-counts.csv'} not found"
    _run_row(cql2_db, row)


@pytest.mark.parametrize("row", JSON_ROWS or [None], ids=[r["test_id"] for r in JSON_ROWS] or ["missing"])
def test_ats_cql2_json(cql2_db, row):
    assert row, f"{DATA / 'expected-counts-json.csv'} not found"
    _run_row(cql2_db, row)


def test_ats_tables_complete():
    assert len(TEXT_ROWS) == 351 and len(JSON_ROWS) == 351
    assert len({r["test_id"] for r in TEXT_ROWS}) == 351
    assert sum(1 for r in TEXT_ROWS if r["note"]) == 3


# ---------------------------------------------------------------------------------------------------------------
# malformed and hostile input: always a FilterError, with a message naming what is wrong

COUNTRIES = "ne_110m_admin_0_countries"
PLACES = "ne_110m_populated_places_simple"

BAD_TEXT = [
    # (filter, collection, a fragment the message must contain)
    ("NAME = 'x'; DROP TABLE cql2.ne_110m_admin_0_countries", COUNTRIES, "syntax error at line 1, column 11"),
    ('"NAME\\" OR 1=1 --" = \'x\'', COUNTRIES, "syntax error"),
    ('"NAME OR 1=1 --" = \'x\'', COUNTRIES, "unknown property 'NAME OR 1=1 --'"),
    ('"NA(ME)" = \'x\'', COUNTRIES, "unknown property 'NA(ME)'"),
    ("\"NAME'\" = 'x'", COUNTRIES, "unknown property"),
    ("NAME) OR (1=1", COUNTRIES, "syntax error"),
    ("FOO = 1", COUNTRIES, "queryables are: geom, TYPE, ADM0_A3, NAME"),
    ("NAME = 5", COUNTRIES, "cannot compare property 'NAME' (string) with the number 5"),
    ("POP_EST = 'many'", COUNTRIES, "non-numeric string 'many'"),
    ("POP_EST > NAME", COUNTRIES, "cannot compare"),
    ("\"date\" = DATE('2022-13-45')", PLACES, "invalid date '2022-13-45'"),
    ("\"date\" = DATE('16.04.2022')", PLACES, "invalid date"),
    ("start > TIMESTAMP('yesterday')", PLACES, "invalid timestamp 'yesterday'"),
    ("\"date\" = '2022-04-16'", PLACES, "DATE('YYYY-MM-DD')"),
    ("FOO(NAME) = 'x'", COUNTRIES, "function 'foo' is not supported"),
    ("pg_sleep(10) = 'x'", COUNTRIES, "function 'pg_sleep' is not supported"),
    ("NAME LIKE", COUNTRIES, "ends too early"),
    ("NAME = 'x' AND", COUNTRIES, "ends too early"),
    ("NAME == 'x'", COUNTRIES, "syntax error at line 1, column 7"),
    ("pop_other > 1 ^", PLACES, "syntax error"),
    ("", COUNTRIES, "empty"),
    ("NAME LIKE 'abc\\'", COUNTRIES, "syntax error"),  # \' escapes the quote: the string never ends
    ("POP_EST LIKE 'x%'", COUNTRIES, "LIKE needs a string"),
    ("S_INTERSECTS(geom, POLYGON((0 0, 1 1)))", COUNTRIES, "invalid geometry literal"),
    ("S_INTERSECTS(NAME, POINT(1 2))", COUNTRIES, "need a geometry, not property 'NAME'"),
    ("S_INTERSECTS(geom, BBOX(0, 50, 10, 40))", COUNTRIES, "south edge"),
    ("geom = POINT(1 2)", COUNTRIES, "geometry literal can only be used in spatial functions"),
    ("T_AFTER(NAME, DATE('2022-01-01'))", COUNTRIES, "need a date or timestamp, not property 'NAME'"),
    ("T_AFTER(\"date\", '2022-01-01')", PLACES, "not the string '2022-01-01'"),
    ("T_AFTER(\"date\", INTERVAL('2022-01-01', 'soon'))", PLACES, "invalid timestamp 'soon'"),
    ("\"date\" = INTERVAL('2022-01-01', '..')", PLACES, "INTERVAL can only be used"),
    ("POP_EST / 0 > 1", COUNTRIES, "division by zero"),
    ("POP_EST <> 37 ^ 5892", COUNTRIES, "arithmetic error in 37 ^ 5892"),
    ("POP_EST > 2 ^ 0.5 * (-8) ^ 0.5", COUNTRIES, "arithmetic error"),
    ("S_INTERSECTS(geom, POLYGON((0 0, 10 10, 10 0, 0 10, 0 0)))", COUNTRIES, "literal: Self-intersection"),
    ("NAME + 1 > 1", COUNTRIES, "arithmetic (+) needs numbers"),
    ("CASEI(POP_EST) = 'x'", COUNTRIES, "CASEI needs a string"),
    ("A_CONTAINS(NAME, ('a', 'b'))", COUNTRIES, "array functions are not supported"),
    ("NAME", COUNTRIES, "ends too early"),
]

BAD_JSON = [
    ('{"op": "=", "args": [{"property": "NAME"}, "x"]', COUNTRIES, "not valid JSON"),
    ('["NAME", "x"]', COUNTRIES, "must be a JSON object"),
    ({"op": "=", "args": [{"property": "NAME"}]}, COUNTRIES, "takes 2 arguments, got 1"),
    ({"op": "=", "args": [{"property": 'NAME" OR 1=1 --'}, "x"]}, COUNTRIES, "unknown property"),
    ({"op": "=", "args": [{"property": "NAME"}, None]}, COUNTRIES, "null is not a CQL2 value"),
    ({"op": "drop table", "args": []}, COUNTRIES, "function 'drop table' is not supported"),
    ({"op": "like", "args": [{"property": "NAME"}, "abc\\"]}, COUNTRIES, "ends with the escape character"),
    ({"op": "a_contains", "args": [{"property": "NAME"}, ["a"]]}, COUNTRIES, "array functions (A_CONTAINS)"),
    ({"op": "in", "args": [{"property": "NAME"}, "x"]}, COUNTRIES, "must be an array"),
    ({"op": "s_intersects", "args": [{"property": "geom"}, {"type": "Circle", "coordinates": [1, 2]}]},
     COUNTRIES, "unknown geometry type 'Circle'"),
    ({"op": "s_intersects", "args": [{"property": "geom"}, {"bbox": [0, 1, "x", 3]}]}, COUNTRIES, "BBOX needs"),
    ({"op": "t_after", "args": [{"property": "date"}, {"date": "2022-02-30"}]}, PLACES, "invalid date"),
    ({"op": "between", "args": [{"property": "pop_other"}, 1]}, PLACES, "'between' takes 3 arguments"),
    ({"op": 7, "args": []}, COUNTRIES, "must be a string"),
    ({"filter": "x"}, COUNTRIES, "unrecognised cql2-json object"),
    ({"property": "NAME"}, COUNTRIES, "property 'NAME' is not a condition"),
    ({"op": "casei", "args": [{"property": "NAME"}]}, COUNTRIES, "is not a condition"),
]


@pytest.mark.parametrize("text,collection,message", BAD_TEXT, ids=[b[0][:40] or "empty" for b in BAD_TEXT])
def test_bad_text_filters(text, collection, message):
    with pytest.raises(FilterError) as info:
        compile_filter(text, "cql2-text", load_queryables(collection), unaccent_function="public.unaccent")
    assert message in str(info.value)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize("doc,collection,message", BAD_JSON, ids=[str(b[0])[:40] for b in BAD_JSON])
def test_bad_json_filters(doc, collection, message):
    with pytest.raises(FilterError) as info:
        compile_filter(doc, "cql2-json", load_queryables(collection), unaccent_function="public.unaccent")
    assert message in str(info.value)


def test_unknown_property_lists_first_20_queryables():
    with pytest.raises(FilterError) as info:
        compile_filter("nope = 1", "cql2-text", load_queryables(PLACES))
    message = str(info.value)
    assert "featurecla" in message and "pop_max" in message and "start, … (22 in all)" in message
    assert "boolean" not in message  # the 22nd


def test_unsupported_filter_lang_and_accenti_without_unaccent():
    with pytest.raises(FilterError, match="unsupported filter-lang 'sql'"):
        compile_filter("NAME = 'x'", "sql", load_queryables(COUNTRIES))
    with pytest.raises(FilterError, match="ACCENTI .* is not supported by this server"):
        compile_filter("ACCENTI(NAME) = accenti('x')", "cql2-text", load_queryables(COUNTRIES))


def test_deep_nesting_is_a_filter_error_or_works():
    deep = "NOT (" * 3000 + "NAME = 'x'" + ")" * 3000
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter(deep, "cql2-text", load_queryables(COUNTRIES))
    doc = '{"op": "not", "args": [' * 3000 + '{"op": "=", "args": [{"property": "NAME"}, "x"]}' + "]}" * 3000
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter(doc, "cql2-json", load_queryables(COUNTRIES))
    doc = {"op": "=", "args": [{"property": "NAME"}, "x"]}
    for _ in range(800):
        doc = {"op": "not", "args": [doc]}
    with pytest.raises(FilterError, match="nested too deeply"):
        compile_filter(doc, "cql2-json", load_queryables(COUNTRIES))


def test_mutated_filters_fail_cleanly(cql2_db):
    """Seeded fuzzing of the ATS filters: compiling gives a FilterError or SQL that PostgreSQL runs. Only a data
    exception (SQLSTATE class 22, e.g. an overflow computed from column values) may come from the database."""
    import random

    import psycopg2.errors

    rnd = random.Random(20261124)
    pieces = [*"()'\",;%_\\-+*/^=<> .:", "AND", "OR", "NOT", " div ", "DATE(", "INTERVAL(", "'..'", "BBOX(",
              "POINT(", "1e308", "--", "é", "0", " ", "start", "name", "pop_other", "geom", '"date"']
    rows = TEXT_ROWS + JSON_ROWS
    compiled = 0
    for _ in range(3000):
        row = rnd.choice(rows)
        text = row["filter"]
        for _ in range(rnd.randint(1, 3)):
            i, choice = rnd.randrange(len(text) + 1), rnd.random()
            if choice < 0.4:
                text = text[:i] + rnd.choice(pieces) + text[i:]
            elif choice < 0.7:
                text = text[:i] + text[i + rnd.randint(1, 5):]
            else:
                j = rnd.randrange(len(text) + 1)
                text = text[:i] + text[j:j + 5] + text[i:]
        try:
            where, params = compile_filter(text, row["filter_lang"], cql2_db["queryables"][row["collection"]],
                                           storage_srid=4326, unaccent_function=cql2_db["unaccent"])
        except FilterError:
            continue
        compiled += 1
        try:
            count(cql2_db, row["collection"], where, params)
        except psycopg2.errors.DataException:
            pass
    assert compiled > 50


def test_long_or_chain_compiles(cql2_db):
    names = [f"'n{i}'" for i in range(3000)]
    text = " OR ".join(f"NAME = {n}" for n in names) + " OR NAME = 'Luxembourg'"
    where, params = compile_filter(text, "cql2-text", cql2_db["queryables"][COUNTRIES])
    assert len(params) == 3001
    assert count(cql2_db, COUNTRIES, where, params) == 1


# ---------------------------------------------------------------------------------------------------------------
# hostile values are harmless bound values


@pytest.mark.parametrize("text,expected_count", [
    ("NAME = 'x''; DROP TABLE cql2.ne_110m_admin_0_countries; --'", 0),
    ("NAME = 'x\\'; DROP TABLE cql2.ne_110m_admin_0_countries; --'", 0),
    ("NAME LIKE '%'' OR ''1''=''1'", 0),
    ("NAME LIKE 'Lux\\%'", 0),  # \% is a literal percent sign
    ("NAME LIKE 'Luxembour\\g'", 1),  # \g is g
    ("NAME LIKE '\\\\%'", 0),  # a literal backslash, then anything
    ("NAME IN ('Luxembourg', 'x'') OR 1=1 --')", 1),
    ("CASEI(NAME) = casei('LUXEMBOURG'' OR ''a''=''a')", 0),
    ("POP_EST = '37589262'", 1),  # a numeric string against a number is tolerated
])
def test_hostile_values_are_bound(cql2_db, text, expected_count):
    where, params = compile_filter(text, "cql2-text", cql2_db["queryables"][COUNTRIES])
    assert_parameters_only(sql_text(cql2_db, where), params)
    assert count(cql2_db, COUNTRIES, where, params) == expected_count
    assert count(cql2_db, COUNTRIES, sql.Composed([sql.SQL("TRUE")]), []) == 177  # the table is still there


def test_quote_escapes_in_strings():
    text = r"NAME = 'O''Brien' OR NAME = 'it\'s' OR NAME = 'x\'''' OR NAME LIKE 'a\\%'"
    where, params = compile_filter(text, "cql2-text", load_queryables(COUNTRIES))
    assert params == ["O'Brien", "it's", "x''", r"a\\%"]  # \\ is kept: it is LIKE's escaped backslash


# ---------------------------------------------------------------------------------------------------------------
# CRS handling, index use, table alias


def test_filter_crs_lat_lon_is_flipped(cql2_db):
    q = cql2_db["queryables"][COUNTRIES]
    for text, expected_count in (("S_INTERSECTS(geom, POINT(49.92 7.02))", 1),
                                 ("S_INTERSECTS(geom, BBOX(40, 0, 50, 10))", 8),
                                 ("S_INTERSECTS(geom, BBOX(-90, 150, 90, -150))", 10)):
        where, params = compile_filter(text, "cql2-text", q, filter_crs=4326, filter_crs_latlon=True,
                                       storage_srid=4326)
        assert "ST_FlipCoordinates(" in sql_text(cql2_db, where)
        assert count(cql2_db, COUNTRIES, where, params) == expected_count, text


def test_transform_to_storage_srid_with_an_integer(cql2_db):
    q = cql2_db["queryables"][COUNTRIES]
    source = sql.SQL("(SELECT fid, ST_Transform(geom, 4490) AS geom FROM {}) AS t").format(
        sql.Identifier(SCHEMA, COUNTRIES))
    where, params = compile_filter("S_INTERSECTS(geom, BBOX(0, 40, 10, 50))", "cql2-text", q, storage_srid=4490)
    text = sql_text(cql2_db, where)
    assert "ST_Transform(" in text and 4490 in params and 4326 in params
    assert not any(isinstance(p, str) and "EPSG" in p.upper() for p in params) and "EPSG" not in text.upper()
    assert count(cql2_db, COUNTRIES, where, params, source) == 8
    # the same point given in Web Mercator
    import pyproj

    x, y = pyproj.Transformer.from_crs(4326, 3857, always_xy=True).transform(7.02, 49.92)
    where, params = compile_filter(f"S_INTERSECTS(geom, POINT({x} {y}))", "cql2-text", q, filter_crs=3857,
                                   storage_srid=4490)
    assert count(cql2_db, COUNTRIES, where, params, source) == 1


def test_spatial_literal_uses_the_gist_index(cql2_db):
    """A transformed literal is folded to a constant, so ST_Intersects on the stored column uses the index."""
    import pyproj

    to_3857 = pyproj.Transformer.from_crs(4326, 3857, always_xy=True)
    (x1, x2), (y1, y2) = to_3857.transform([0, 10], [40, 50])
    where, params = compile_filter(f"S_INTERSECTS(geom, BBOX({x1}, {y1}, {x2}, {y2}))", "cql2-text",
                                   cql2_db["queryables"][COUNTRIES], filter_crs=3857, storage_srid=4326)
    assert "ST_Transform(" in sql_text(cql2_db, where)
    query = sql.SQL("EXPLAIN SELECT fid FROM {} WHERE {}").format(sql.Identifier(SCHEMA, COUNTRIES), where)
    with cql2_db["pool"].connection() as conn, conn.cursor() as cur:
        cur.execute("SET LOCAL enable_seqscan = off")
        cur.execute(query, params)
        plan = "\n".join(r[0] for r in cur.fetchall())
    assert "Index" in plan and "ST_Transform" not in plan, plan
    assert count(cql2_db, COUNTRIES, where, params) == 8


def test_table_alias(cql2_db):
    where, params = compile_filter("NAME = 'Luxembourg' AND S_INTERSECTS(geom, POINT(6.1 49.6))", "cql2-text",
                                   cql2_db["queryables"][COUNTRIES], storage_srid=4326, table_alias="c")
    text = sql_text(cql2_db, where)
    assert '"c"."NAME"' in text and '"c"."geom"' in text
    source = sql.SQL("{} AS c").format(sql.Identifier(SCHEMA, COUNTRIES))
    assert count(cql2_db, COUNTRIES, where, params, source) == 1


def test_string_ordering_is_code_point_order(cql2_db):
    """The ATS counts (NAME>='Luxembourg' → 84, name>='København' → 137) are code-point order; a linguistic
    collation gives other counts, so the compiler pins COLLATE "C" whatever the database default is."""
    q = cql2_db["queryables"][PLACES]
    where, params = compile_filter("name >= 'København'", "cql2-text", q)
    assert 'COLLATE "C"' in sql_text(cql2_db, where)
    assert count(cql2_db, PLACES, where, params) == 137


def test_compile_speed():
    q = load_queryables(PLACES)
    text = TEXT_ROWS[100]["filter"] if TEXT_ROWS else "name = 'x'"
    compile_filter(text, "cql2-text", q)
    start = time.perf_counter()
    for _ in range(200):
        compile_filter(text, "cql2-text", q)
    assert (time.perf_counter() - start) / 200 < 0.01

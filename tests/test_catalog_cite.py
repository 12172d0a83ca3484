"""pycsw 2.6.2's CITE suites (``cite``: CSW 2.0.2, ``csw30``: CSW 3.0) through Lantu's CSW path, with the 12
CITE sample records loaded into their own repository table (catalog.cite_records) of the same PostGIS.

Every case of ../shared/conformance/csw-cite/tests-index.csv is compared with its expected response on facts:
root element, exception codes and locators, matched/returned/next counts, record identifiers in order, and
the operations of capabilities documents. Texts, timestamps and URLs are not compared (they name pycsw's test
server, not ours)."""

from __future__ import annotations

import configparser
import csv
import json
from pathlib import Path
from urllib.parse import parse_qsl

import pytest
from lxml import etree

from lantu.catalog import engine, service
from lantu.catalog.build import to_rows
from lantu.providers import catalog_store

TABLE = "cite_records"
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
DC_ID = "{http://purl.org/dc/elements/1.1/}identifier"
ATOM = "{http://www.w3.org/2005/Atom}"
SORT_COLUMNS = {"dc:date": "date", "dc:format": "format", "dc:identifier": "identifier"}
RESULT_ATTRS = ("numberOfRecordsMatched", "numberOfRecordsReturned", "nextRecord")


def kit() -> Path:
    return Path(__file__).resolve().parents[2] / "shared" / "conformance" / "csw-cite"


def cases() -> list[dict]:
    index = kit() / "tests-index.csv"
    if not index.exists():  # collected before the shared_dir fixture can fail the run with a clear message
        return [{"test_id": "csw-cite-kit-missing"}]
    with open(index, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def cite_repository(shared_dir, settings, pool):
    """The 12 CITE records in catalog.cite_records, parsed by pycsw as its own loader does."""
    catalog_store.create_records_table(pool, TABLE)
    repo = engine.repository(settings, f"catalog.{TABLE}")
    files = sorted((shared_dir / "conformance" / "csw-cite" / "cite" / "data").glob("Record_*.xml"))
    assert len(files) == 12
    rows = to_rows([f.read_text("utf-8") for f in files], repo)
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(f"TRUNCATE catalog.{TABLE}")
        catalog_store.upsert_records(cur, rows, TABLE)
        conn.commit()
    assert catalog_store.count_records(pool, TABLE) == 12
    return f"catalog.{TABLE}"


def suite_config(settings, table: str, suite: str) -> dict:
    """Lantu's pycsw configuration on the CITE table with the options the suite's default.cfg sets that
    change answers (page size, transactions, no ISO profile)."""
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(kit() / suite / "default.cfg", encoding="utf-8")
    config = engine.pycsw_config(settings, table=table)
    config["server"].pop("profiles")
    config["server"].pop("maxrecords")
    if cfg.has_option("server", "maxrecords"):
        config["server"]["maxrecords"] = cfg.get("server", "maxrecords")
    config["manager"]["transactions"] = cfg.get("manager", "transactions")
    return config


def _json_facts(data) -> dict:
    facts: dict = {"ids": [], "exceptions": []}

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k.lstrip("@") in RESULT_ATTRS:
                    facts[k.lstrip("@")] = v
                if k.endswith("identifier") and isinstance(v, str):
                    facts["ids"].append(v)
                if k == "@exceptionCode":
                    facts["exceptions"].append((v, node.get("@locator")))
                walk(v, k)
        elif isinstance(node, list):
            for item in node:
                walk(item, key)
    facts["root"] = next(iter(data)) if isinstance(data, dict) else type(data).__name__
    walk(data)
    return facts


def facts(body: bytes) -> dict:
    text = body.lstrip()
    if text.startswith(b"{"):
        return _json_facts(json.loads(text))
    root = etree.fromstring(text, PARSER)
    out: dict = {"root": root.tag, "ids": [], "exceptions": [], "operations": []}
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        local = etree.QName(element).localname
        if element.tag == DC_ID or (element.tag == ATOM + "id" and element.getparent().tag == ATOM + "entry"):
            out["ids"].append((element.text or "").strip())
        elif local == "Exception":
            out["exceptions"].append((element.get("exceptionCode"), element.get("locator")))
        elif local == "Operation" and element.get("name"):
            out["operations"].append(element.get("name"))
        elif local in ("SearchResults", "totalResults") or local.startswith(("totalInserted", "totalUpdated")):
            for attr in RESULT_ATTRS:
                if element.get(attr) is not None:
                    out[attr] = element.get(attr)
            if local == "totalResults":
                out["totalResults"] = element.text
    return out


@pytest.mark.parametrize("case", cases(), ids=[c["test_id"] for c in cases()])
def test_cite_case_agrees_with_the_expected_response(case, cite_repository, settings, shared_dir, pool):
    base = shared_dir / "conformance" / "csw-cite"
    config = suite_config(settings, cite_repository, case["suite"])
    environ = {"SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "HTTP_HOST": "127.0.0.1:8080",
               "SCRIPT_NAME": "", "PATH_INFO": "/csw", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
               "SERVER_PROTOCOL": "HTTP/1.1"}
    if case["method"] == "GET":
        args = dict(parse_qsl(case["request"], keep_blank_values=True))
        answer = service.handle(config, settings, args, case["request"], b"", environ)
    else:
        body = (base / case["request"]).read_bytes()
        answer = service.handle(config, settings, {}, "", body, dict(environ, CONTENT_TYPE="application/xml"))
    expected = facts((base / case["expected"]).read_bytes())
    got = facts(answer.body)
    assert answer.status < 500, answer.body[:500]
    sort_by = sort_property(case, base)
    if sort_by is None:
        # Without SortBy the order of records is the engine's (CSW 2.0.2 §10.8.4.8 leaves it open): SQLite
        # followed an index, PostgreSQL its heap. Same records, any order.
        expected["ids"], got["ids"] = sorted(expected["ids"]), sorted(got["ids"])
    else:
        # With SortBy the order must agree, except where the sort key is NULL: PostgreSQL puts NULLs first in
        # a descending sort, SQLite last, and FES says nothing about NULLs. Those records must be there, and
        # the rest in the same order.
        # When the page is cut (maxRecords), NULLs first or last also change which records make the page:
        # then the keyed records must agree in order as far as both pages go.
        nulls = null_keys(pool, cite_repository, sort_by)
        if got.get("numberOfRecordsReturned") == got.get("numberOfRecordsMatched"):
            assert sorted(got["ids"]) == sorted(expected["ids"])
        keyed_got = [i for i in got["ids"] if i not in nulls]
        keyed_expected = [i for i in expected["ids"] if i not in nulls]
        common = min(len(keyed_got), len(keyed_expected))
        assert common > 0 and keyed_got[:common] == keyed_expected[:common]
        got["ids"] = expected["ids"] = []
    assert got == expected, f"{case['test_id']}: {case['request'][:200]}"


def sort_property(case: dict, base: Path) -> str | None:
    if case["method"] == "GET":
        args = {k.lower(): v for k, v in parse_qsl(case["request"], keep_blank_values=True)}
        return args.get("sortby", "").split(":")[0] or None
    try:
        doc = etree.fromstring((base / case["request"]).read_bytes(), PARSER)
    except etree.XMLSyntaxError:  # the suites' malformed-request cases
        return None
    names = [e.text for e in doc.iter() if isinstance(e.tag, str) and etree.QName(e).localname == "SortProperty"
             for e in e.iter() if etree.QName(e).localname in ("PropertyName", "ValueReference")]
    return names[0] if names else None


def null_keys(pool, table: str, prop: str) -> set[str]:
    column = SORT_COLUMNS[prop]
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT identifier FROM {table} WHERE {column} IS NULL")  # names from SORT_COLUMNS only
        return {row[0] for row in cur.fetchall()}

"""Harvesting remote catalogs and services into ours (``lantu catalog harvest URL --type …``).

CSW sources are listed page by page (summary records sorted by identifier); only records that are new or
whose ``dct:modified`` changed since the last run are fetched in full (ISO 19139 when the source offers it,
else the full csw:Record). Each page is committed with the run's progress, so a run stopped halfway (the
remote went away) leaves the catalog consistent and the next run resumes after the last committed page.
Records the source no longer lists are removed only when a listing completed. Capabilities sources (WMS,
WFS, WMTS) go through pycsw's own parsers, OGC API landing pages through their ``/collections``; both are
small and are stored in one transaction. Every URL passes the SSRF check first."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import requests
from lxml import etree

from lantu.catalog import engine, guard
from lantu.catalog.build import to_rows
from lantu.catalog.ssrf import check_url
from lantu.config.settings import Settings
from lantu.providers import catalog_store as store
from lantu.providers.pool import Pool

TYPES = ("csw", "wms", "wfs", "wmts", "ogcapi")
PAGE = 20
NS = {"csw": "http://www.opengis.net/cat/csw/2.0.2", "dc": "http://purl.org/dc/elements/1.1/",
      "dct": "http://purl.org/dc/terms/", "gmd": "http://www.isotc211.org/2005/gmd"}
CAPABILITIES_TYPES = {"wms": "http://www.opengis.net/wms", "wfs": "http://www.opengis.net/wfs/2.0",
                      "wmts": "http://www.opengis.net/wmts/1.0"}


class HarvestError(RuntimeError):
    """The source could not be harvested (completely); the report says how far the run got."""

    def __init__(self, message: str, report: HarvestReport):
        super().__init__(message)
        self.report = report


@dataclass
class HarvestReport:
    source: str
    type: str
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    resumed_at: int | None = None
    complete: bool = False
    errors: list[str] = field(default_factory=list)

    def line(self) -> str:
        state = "complete" if self.complete else "INTERRUPTED (the next run resumes)"
        resumed = f", resumed at record {self.resumed_at}" if self.resumed_at else ""
        return (f"{self.source} ({self.type}): added {self.added}, updated {self.updated}, removed {self.removed}, "
                f"unchanged {self.unchanged}{resumed} — {state}")


class _Client:
    """HTTP to one source: timeouts, no redirects (a redirect could lead past the SSRF check), size cap."""

    def __init__(self, settings: Settings):
        self.timeout = settings.catalog_peer_timeout_s
        self.session = requests.Session()

    def post_xml(self, url: str, body: str) -> etree._Element:
        answer = self.session.post(url, data=body.encode("utf-8"), timeout=self.timeout, allow_redirects=False,
                                   headers={"Content-Type": "application/xml"})
        root = guard.parse_body(answer.content[: guard.MAX_BODY * 5])
        if root is None or guard.local_name(root) == "ExceptionReport" or answer.status_code != 200:
            raise requests.RequestException(f"HTTP {answer.status_code} from {url}: {answer.content[:200]!r}")
        return root

    def get_json(self, url: str) -> dict:
        answer = self.session.get(url, timeout=self.timeout, allow_redirects=False,
                                  headers={"Accept": "application/json"})
        answer.raise_for_status()
        return answer.json()


def _list_page(client: _Client, url: str, start: int) -> tuple[list[tuple[str, str | None]], int, int]:
    """(identifier, modified) of one page of summary records, the next start (0: done) and the total."""
    body = (f'<csw:GetRecords xmlns:csw="{NS["csw"]}" xmlns:ogc="http://www.opengis.net/ogc" service="CSW" '
            f'version="2.0.2" resultType="results" startPosition="{start}" maxRecords="{PAGE}">'
            f'<csw:Query typeNames="csw:Record"><csw:ElementSetName>summary</csw:ElementSetName><ogc:SortBy>'
            f"<ogc:SortProperty><ogc:PropertyName>dc:identifier</ogc:PropertyName><ogc:SortOrder>ASC</ogc:SortOrder>"
            f"</ogc:SortProperty></ogc:SortBy></csw:Query></csw:GetRecords>")
    root = client.post_xml(url, body)
    results = root.find("csw:SearchResults", NS)
    if results is None:
        raise requests.RequestException(f"{url} answered GetRecords without SearchResults")
    items = [(rec.findtext("dc:identifier", namespaces=NS), rec.findtext("dct:modified", namespaces=NS))
             for rec in results.iterfind("csw:SummaryRecord", NS)]
    return [i for i in items if i[0]], int(results.get("nextRecord", "0") or 0), \
        int(results.get("numberOfRecordsMatched", "0") or 0)


def _fetch_record(client: _Client, url: str, identifier: str) -> str | None:
    """The record's full XML: ISO 19139 when the source has it, else the full csw:Record."""
    for schema, element in (("http://www.isotc211.org/2005/gmd", "gmd:MD_Metadata"), (NS["csw"], "csw:Record")):
        body = (f'<csw:GetRecordById xmlns:csw="{NS["csw"]}" service="CSW" version="2.0.2" '
                f'outputSchema="{schema}"><csw:Id>{_xml_text(identifier)}</csw:Id>'
                f"<csw:ElementSetName>full</csw:ElementSetName></csw:GetRecordById>")
        record = client.post_xml(url, body).find(element, NS)
        if record is not None:
            return etree.tostring(record, encoding="unicode")
    return None


def _xml_text(text: str) -> str:
    from xml.sax.saxutils import escape

    return escape(text)


def _rows_from(xmls: list[str], repo, source: str) -> list[dict]:
    rows = to_rows(xmls, repo)
    for row in rows:
        row["mdsource"] = source  # which source a record came from (removals, listing by source)
    return rows


def _begin(pool: Pool, url: str, kind: str, peer: str | None) -> tuple[dt.datetime, int, int | None]:
    """Start or resume a run: (run_started, first position, resumed_at)."""
    with pool.connection() as conn, conn.cursor() as cur:
        state = store.harvest_source(cur, url, kind, peer)
        if state["resume_position"] and state["run_started"]:
            run_started, start, resumed = state["run_started"], state["resume_position"], state["resume_position"]
        else:
            run_started, start, resumed = dt.datetime.now(dt.UTC), 1, None
        store.harvest_progress(cur, url, run_started, start)
        conn.commit()
    return run_started, start, resumed


def harvest_csw(settings: Settings, pool: Pool, url: str, peer: str | None = None) -> HarvestReport:
    check_url(url, settings.catalog_harvest_allow)
    report = HarvestReport(url, "csw")
    run_started, start, report.resumed_at = _begin(pool, url, "csw", peer)
    client, repo = _Client(settings), engine.repository(settings)
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        known = store.harvest_items(cur, url)
    high_water: str | None = None
    try:
        while start:
            items, next_start, _total = _list_page(client, url, start)
            # our own records coming back through a peer that harvested us are not taken (no loop)
            items = [(i, m) for i, m in items if not i.startswith(settings.catalog_id_prefix + ":")]
            changed = [(i, m) for i, m in items if i not in known or known[i] != m or m is None]
            xmls = {i: _fetch_record(client, url, i) for i, _ in changed}
            rows = _rows_from([x for x in xmls.values() if x], repo, url)
            with pool.connection() as conn, conn.cursor() as cur:
                store.upsert_records(cur, rows)
                store.mark_items(cur, url, dict(items), run_started)
                store.harvest_progress(cur, url, run_started, next_start or None)
                conn.commit()
            report.added += sum(1 for i, _ in changed if i not in known and xmls.get(i))
            report.updated += sum(1 for i, _ in changed if i in known and xmls.get(i))
            report.unchanged += len(items) - len(changed)
            high_water = max([m for _, m in items if m] + ([high_water] if high_water else []), default=None)
            start = next_start
    except (requests.RequestException, ValueError, guard.Refused) as exc:
        report.errors.append(str(exc)[:300])
        raise HarvestError(f"harvest of {url} interrupted: {str(exc)[:200]}", report) from exc
    report.removed = _finish(pool, url, run_started, high_water, report)
    report.complete = True
    return report


def _finish(pool: Pool, url: str, run_started: dt.datetime, high_water: str | None,
            report: HarvestReport) -> int:
    """A complete listing: records the source no longer has go, and the run is closed."""
    with pool.connection() as conn, conn.cursor() as cur:
        gone = store.unseen_items(cur, url, run_started)
        cur.execute("DELETE FROM catalog.records WHERE identifier = ANY(%s) AND mdsource = %s", (gone, url))
        removed = cur.rowcount
        store.forget_items(cur, url, gone)
        store.harvest_done(cur, url, high_water, {k: v for k, v in asdict(report).items() if k != "errors"})
        conn.commit()
    return removed


@contextmanager
def _safe_default_parser():
    """OWSLib (inside pycsw's capabilities parsers) parses with lxml's default parser: for this thread, make
    that one resolve no entities, load no DTD and touch no network (XXE in harvested documents, cf. PyWPS
    CVE-2021-39371), then put the previous one back."""
    previous = etree.get_default_parser()
    etree.set_default_parser(etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    try:
        yield
    finally:
        etree.set_default_parser(previous)


def _capabilities_xmls(settings: Settings, url: str, kind: str) -> list[dict]:
    """Service and layer records that pycsw's own parser builds from a WMS/WFS/WMTS capabilities document."""
    from pycsw.core.metadata import parse_record

    repo = engine.repository(settings)
    identifier = "urn:lantu-harvest:" + hashlib.sha256(url.encode()).hexdigest()[:16]
    with _safe_default_parser():
        parsed = parse_record(repo.context, url, repo, CAPABILITIES_TYPES[kind], identifier)
    rows = []
    for record in parsed:
        row = {k: v for k, v in record.__dict__.items() if not k.startswith("_")}
        row["xml"] = row["xml"].decode("utf-8") if isinstance(row.get("xml"), bytes) else row["xml"]
        row["mdsource"] = url
        rows.append(row)
    return rows


def _ogcapi_xmls(settings: Settings, url: str) -> list[str]:
    """A Dublin Core record per collection of an OGC API landing page."""
    from xml.sax.saxutils import escape

    base = url.rstrip("/")
    collections = _Client(settings).get_json(f"{base}/collections?f=json").get("collections", [])
    out = []
    for coll in collections:
        cid = str(coll.get("id", ""))
        bbox = (((coll.get("extent") or {}).get("spatial") or {}).get("bbox") or [[]])[0]
        box = ""
        if len(bbox) >= 4:
            box = (f'<ows:BoundingBox crs="urn:ogc:def:crs:OGC:1.3:CRS84"><ows:LowerCorner>{bbox[0]} {bbox[1]}'
                   f"</ows:LowerCorner><ows:UpperCorner>{bbox[2]} {bbox[3]}</ows:UpperCorner></ows:BoundingBox>")
        keywords = "".join(f"<dc:subject>{escape(str(k))}</dc:subject>" for k in coll.get("keywords") or [])
        out.append(f'<csw:Record xmlns:csw="{NS["csw"]}" xmlns:dc="{NS["dc"]}" xmlns:dct="{NS["dct"]}" '
                   f'xmlns:ows="http://www.opengis.net/ows"><dc:identifier>{escape(base)}/collections/'
                   f"{escape(cid)}</dc:identifier><dc:title>{escape(str(coll.get('title', cid)))}</dc:title>"
                   f"<dc:type>dataset</dc:type>{keywords}<dct:abstract>{escape(str(coll.get('description', '')))}"
                   f"</dct:abstract><dct:references scheme=\"OGC API - Features\">{escape(base)}/collections/"
                   f"{escape(cid)}</dct:references>{box}</csw:Record>")
    return out


def harvest_document(settings: Settings, pool: Pool, url: str, kind: str) -> HarvestReport:
    """Capabilities or OGC API sources: fetched whole, compared record by record, stored in one transaction."""
    check_url(url, settings.catalog_harvest_allow)
    report = HarvestReport(url, kind)
    run_started, _, _ = _begin(pool, url, kind, None)
    try:
        rows = (_rows_from(_ogcapi_xmls(settings, url), engine.repository(settings), url) if kind == "ogcapi"
                else _capabilities_xmls(settings, url, kind))
    except Exception as exc:  # noqa: BLE001 - OWSLib and pycsw raise anything on a bad document
        report.errors.append(str(exc)[:300])
        raise HarvestError(f"harvest of {url} failed: {str(exc)[:200]}", report) from exc
    digests = {row["identifier"]: hashlib.sha256(row["xml"].encode()).hexdigest() for row in rows}
    with pool.connection() as conn, conn.cursor() as cur:
        known = store.harvest_items(cur, url)
        fresh = [row for row in rows if known.get(row["identifier"]) != digests[row["identifier"]]]
        store.upsert_records(cur, fresh)
        store.mark_items(cur, url, digests, run_started)
        conn.commit()
    report.added = sum(1 for row in fresh if row["identifier"] not in known)
    report.updated = len(fresh) - report.added
    report.unchanged = len(rows) - len(fresh)
    report.removed = _finish(pool, url, run_started, None, report)
    report.complete = True
    return report


def harvest(settings: Settings, pool: Pool, url: str, kind: str, peer: str | None = None) -> HarvestReport:
    if kind not in TYPES:
        raise ValueError(f"--type must be one of {', '.join(TYPES)}")
    if kind == "csw":
        return harvest_csw(settings, pool, url, peer)
    return harvest_document(settings, pool, url, kind)


def sync(settings: Settings, pool: Pool) -> list[HarvestReport | HarvestError]:
    """Harvest every configured peer; a failing peer does not stop the others."""
    results: list[HarvestReport | HarvestError] = []
    for peer in settings.catalog_peers:
        try:
            results.append(harvest_csw(settings, pool, peer.url, peer.name))
        except HarvestError as exc:
            results.append(exc)
    return results


SYNC_LOCK = 7_424_807  # advisory-lock key: one scheduled peer sync at a time across all workers


def scheduled_sync(settings: Settings, pool: Pool) -> list[HarvestReport | HarvestError] | None:
    """``lantu worker``'s peer sync every ``catalog_sync_interval_s``: the time of the last sync is kept in the
    database (catalog.state) and an advisory lock lets one worker of many run it; None when not due."""
    if not settings.catalog_sync_interval_s or not settings.catalog_peers:
        return None
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (SYNC_LOCK,))
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT value FROM catalog.state WHERE key = 'peer_sync_at'")
        row = cur.fetchone()
        now = int(dt.datetime.now(dt.UTC).timestamp())
        if row and now - row[0] < settings.catalog_sync_interval_s:
            return None
        results = sync(settings, pool)
        cur.execute("INSERT INTO catalog.state (key, value) VALUES ('peer_sync_at', %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value", (now,))
        conn.commit()
    return results


def report_json(report: HarvestReport) -> str:
    return json.dumps(asdict(report), ensure_ascii=False)

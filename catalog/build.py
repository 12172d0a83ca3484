"""Keeps the generated records in step with the registry and the data. The records reflect
``lantu.change_log`` up to a stored position; ``refresh`` regenerates the records of layers changed since
then (every record on the first run or with ``full=True``) in one transaction. A record's datestamp (and so
its ``dct:modified``) moves only when its content changed, which is what incremental harvesters and peers
compare."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from lantu.catalog import engine, records
from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.providers import catalog_store as store
from lantu.providers.pool import Pool

COUNTY_LAYER = "admin_divisions"  # the towns: their extent is the county's (services, catalog-only layers)
CHECK_EVERY_S = 1.0


@dataclass(frozen=True)
class RefreshSummary:
    generated: int
    written: int
    removed: int
    position: int


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def process_titles() -> dict[str, tuple[str, str]]:
    """id → (中文 title, English title) of each process (imported lazily: processes pull in heavy modules)."""
    from lantu.processes.catalogue import all_processors

    out = {}
    for proc in all_processors():
        meta = proc.metadata
        title = meta.get("title")
        zh = title.get("zh", meta["id"]) if isinstance(title, dict) else str(title or meta["id"])
        en = title.get("en", meta["id"]) if isinstance(title, dict) else meta["id"]
        out[meta["id"]] = (zh, en)
    return out


def to_rows(xmls: Iterable[str], repo) -> list[dict]:
    """Repository rows derived by pycsw's own parser from each record's XML."""
    from pycsw.core.metadata import parse_record

    rows = []
    for xml in xmls:
        doc = etree.fromstring(xml.encode("utf-8"), etree.XMLParser(resolve_entities=False, no_network=True))
        for parsed in parse_record(repo.context, doc, repo):
            row = {k: v for k, v in parsed.__dict__.items() if not k.startswith("_")}
            # pycsw's parser leaves the XML as bytes (its ORM decodes on insert); the column is text
            row["xml"] = row["xml"].decode("utf-8") if isinstance(row.get("xml"), bytes) else row.get("xml")
            row["wkt_geometry"] = _exact_bbox(doc) or row.get("wkt_geometry")
            rows.append(row)
    return rows


def _exact_bbox(doc: etree._Element) -> str | None:
    """The record's geographic bounding box as WKT at full precision: pycsw 2.6.2 rounds it to 0.01° (about
    1 km), too coarse for a county's layers."""
    ns = {"gmd": "http://www.isotc211.org/2005/gmd", "gco": "http://www.isotc211.org/2005/gco"}
    box = doc.find(".//gmd:identificationInfo//gmd:EX_GeographicBoundingBox", ns)
    if box is None:
        return None
    names = ("westBoundLongitude", "southBoundLatitude", "eastBoundLongitude", "northBoundLatitude")
    try:
        w, s, e, n = (float(box.findtext(f"gmd:{name}/gco:Decimal", namespaces=ns)) for name in names)
    except (TypeError, ValueError):
        return None
    return f"POLYGON(({w} {s}, {w} {n}, {e} {n}, {e} {s}, {w} {s}))"


def _targets(registry: Registry, changed: set[str], everything: bool) -> tuple[list, bool]:
    """Layers to regenerate and whether the service records are regenerated too."""
    if everything:
        return list(registry), True
    return [layer for layer in registry if layer.id in changed], False


def _existing(cur, identifiers: list[str]) -> dict[str, tuple[str, str]]:
    cur.execute("SELECT identifier, xml, date_modified FROM catalog.records WHERE identifier = ANY(%s)",
                (identifiers,))
    return {row[0]: (row[1], row[2]) for row in cur.fetchall()}


def _canonical(xml: str) -> bytes:
    """Exclusive C14N: the stored XML is pycsw's serialisation of ours, equal in content, not in bytes."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=True)
    return etree.tostring(etree.fromstring(xml.encode("utf-8"), parser), method="c14n", exclusive=True)


def _render_all(generated: list[records.Generated], existing: dict[str, tuple[str, str]]) -> list[str]:
    """XML of each record: with its stored datestamp when nothing else changed (then skipped), else now."""
    out = []
    for gen in generated:
        old = existing.get(gen.identifier)
        if old and old[1] and _canonical(records.render(gen.mcf, old[1])) == _canonical(old[0]):
            continue
        out.append(records.render(gen.mcf, _now()))
    return out


def refresh(settings: Settings, registry: Registry, pool: Pool, full: bool = False,
            wait: bool = True) -> RefreshSummary | None:
    """Regenerate what changed (everything with ``full``). With ``wait=False`` a refresh already running in
    another process is left to finish it (None): a request then answers from the records as they are."""
    repo = engine.repository(settings)
    with pool.connection() as conn, conn.cursor() as cur:
        after = store.position(cur, lock=True, wait=wait)  # serialises refreshes of all processes
        if after is None:
            conn.rollback()
            return None
        changed, newest = store.changed_layers(cur, after)
        layers, with_services = _targets(registry, changed, full or after < 0)
        if not layers and not with_services:
            if newest != after:
                store.set_position(cur, newest)
            conn.commit()
            return RefreshSummary(0, 0, 0, newest)
        facts = {layer.id: store.layer_facts(cur, layer.table if layer.is_vector and store.table_exists(
            cur, "blueprint", layer.table) else None, layer.id) for layer in layers}
        county = store.layer_facts(cur, COUNTY_LAYER if store.table_exists(cur, "blueprint", COUNTY_LAYER)
                                   else None, COUNTY_LAYER).extent
        generated = [records.Generated(records.layer_identifier(settings, layer.id), "layer",
                                       records.layer_mcf(settings, layer, facts[layer.id], county))
                     for layer in layers]
        service_types = {}
        if with_services:
            for s in records.services(process_titles()):
                identifier = records.service_identifier(settings, s.name)
                generated.append(records.Generated(identifier, "service", records.service_mcf(settings, s, county)))
                service_types[identifier] = s.protocol
        xmls = _render_all(generated, _existing(cur, [g.identifier for g in generated]))
        rows = to_rows(xmls, repo)
        for row in rows:
            # pygeometa writes MD_DataIdentification only, so pycsw finds no service type in the XML; the
            # column (apiso:ServiceType) is set from what Lantu knows, for clients that filter on it
            if row["identifier"] in service_types:
                row["servicetype"] = service_types[row["identifier"]]
        store.upsert_records(cur, rows)
        removed = _remove_stale(cur, settings, {g.identifier for g in generated}) if with_services else 0
        store.set_position(cur, max(newest, 0))
        conn.commit()
    return RefreshSummary(len(generated), len(xmls), removed, max(newest, 0))


def _remove_stale(cur, settings: Settings, keep: set[str]) -> int:
    """Generated records whose layer or service no longer exists (a full refresh knows every record)."""
    cur.execute("SELECT identifier FROM catalog.records WHERE mdsource = 'local' AND identifier LIKE %s",
                (settings.catalog_id_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + ":%",))
    stale = [row[0] for row in cur.fetchall() if row[0] not in keep]
    return store.delete_records(cur, stale)


class Refresher:
    """Checks the change log at most once a second and refreshes the records when it moved (like the
    collections' extents in server/collections.py), so records follow loads without a restart. The first
    check of a process compares every record (the registry or the settings — public URL, organisation — may
    have changed since the records were written); unchanged records are left as they are."""

    def __init__(self, settings: Settings, registry: Registry, pool_getter):
        self.settings, self.registry, self._pool_getter = settings, registry, pool_getter
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._compared = False

    def maybe_refresh(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < CHECK_EVERY_S:
                return
            self._checked_at = now
            pool = self._pool_getter()
            if not self._compared:
                refresh(self.settings, self.registry, pool, full=True)
                self._compared = True
                return
            with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
                cur.execute("SELECT (SELECT coalesce(max(id), 0) FROM lantu.change_log), "
                            "(SELECT value FROM catalog.state WHERE key = 'change_log_position')")
                newest, position = cur.fetchone()
            if position < 0 or newest > position:
                refresh(self.settings, self.registry, pool, wait=position >= 0)

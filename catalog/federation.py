"""Federation: CSW distributed search over the configured peers, and ``sync`` (harvest every peer).

pycsw 2.6.2's own distributed search asks the peers one after the other with no timeout and forwards the
request with its hopCount unchanged, so two catalogs that name each other ask each other forever. Lantu
does it here instead: the local part runs in pycsw without ``DistributedSearch``; each peer gets the request
with ``hopCount`` lowered by one and a ``requestId`` that marks the search, all peers in parallel with a
timeout; a search id seen before is answered locally only (no loop). A peer that fails or times out leaves
the answer partial, which says so (CSW 3.0: ``status="subset"``; both versions: a comment naming the peer)
instead of failing the whole search."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import requests
from lxml import etree

from lantu.catalog import engine, guard
from lantu.catalog.ssrf import RefusedURL, check_url
from lantu.config.settings import Settings
from lantu.providers import catalog_store
from lantu.providers.pool import get_pool

SEEN_TTL_S = 300.0
SEARCH_ID_PREFIX = "urn:lantu-search:"


def is_distributed(doc: etree._Element | None) -> bool:
    return doc is not None and guard.local_name(doc) == "GetRecords" and _ds(doc) is not None


def _ds(doc: etree._Element) -> etree._Element | None:
    return next((e for e in doc if guard.local_name(e) == "DistributedSearch"), None)


def _hop_count(ds: etree._Element) -> int:
    try:
        return max(int(ds.get("hopCount", "2")), 0)
    except ValueError as exc:
        raise guard.Refused("InvalidParameterValue", "hopCount must be a whole number", "hopCount") from exc


def _peer_body(doc: etree._Element, hop: int, search_id: str) -> bytes:
    forwarded = copy.deepcopy(doc)
    _ds(forwarded).set("hopCount", str(hop))
    forwarded.set("requestId", search_id)
    return etree.tostring(forwarded, xml_declaration=True, encoding="UTF-8")


def _ask(url: str, body: bytes, settings: Settings) -> etree._Element:
    check_url(url, settings.catalog_harvest_allow)
    answer = requests.post(url, data=body, headers={"Content-Type": "application/xml"},
                           timeout=settings.catalog_peer_timeout_s, allow_redirects=False)
    if len(answer.content) > guard.MAX_BODY * 5:
        raise ValueError("answer too large")
    root = guard.parse_body(answer.content)
    if root is None or guard.local_name(root) != "GetRecordsResponse":
        raise ValueError(f"HTTP {answer.status_code}, not a GetRecordsResponse")
    return root


def _results(root: etree._Element) -> etree._Element | None:
    return next((e for e in root if guard.local_name(e) == "SearchResults"), None)


def _identifier(record: etree._Element) -> str | None:
    for element in record.iter():
        if isinstance(element.tag, str) and guard.local_name(element) in ("identifier", "fileIdentifier"):
            text = "".join(element.itertext()).strip()
            if text:
                return text
    return None


def _merge(local: etree._Element, peer_roots: dict[str, etree._Element | Exception], version: str) -> None:
    """Peer records appended to the local results (a record already there — harvested earlier — once only);
    counts added up; a peer that failed is named and makes the answer a subset."""
    results = _results(local)
    if results is None:  # the local part was an exception report: return it as it is
        return
    seen = {_identifier(r) for r in results if isinstance(r.tag, str)}
    failed = []
    for name, root in peer_roots.items():
        remote = _results(root) if isinstance(root, etree._Element) else None
        if remote is None:
            failed.append(name)
            results.append(etree.Comment(f" peer {name} did not answer: {str(root)[:200]} "))
            continue
        fresh = [r for r in remote if isinstance(r.tag, str) and _identifier(r) not in seen]
        duplicates = int(remote.get("numberOfRecordsReturned", "0")) - len(fresh)
        results.set("numberOfRecordsMatched", str(int(results.get("numberOfRecordsMatched", "0"))
                                                  + int(remote.get("numberOfRecordsMatched", "0")) - duplicates))
        results.set("numberOfRecordsReturned", str(int(results.get("numberOfRecordsReturned", "0")) + len(fresh)))
        results.append(etree.Comment(f" {len(fresh)} records from peer {name} "))
        for record in fresh:
            seen.add(_identifier(record))
            results.append(record)
    if failed and version == "3.0.0":
        results.set("status", "subset")


def _emptied(answer: engine.CswAnswer) -> engine.CswAnswer:
    """The local answer without its records: for a search that came back round a loop of peers."""
    root = etree.fromstring(answer.body, guard.PARSER)
    results = _results(root)
    if results is None:
        return answer
    for child in list(results):
        results.remove(child)
    results.set("numberOfRecordsMatched", "0")
    results.set("numberOfRecordsReturned", "0")
    results.set("nextRecord", "0")
    return engine.CswAnswer(answer.status, answer.content_type,
                            etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def distributed_search(config: dict, environ_for: Callable[[bytes, str], dict], body: bytes,
                       doc: etree._Element, settings: Settings) -> engine.CswAnswer:
    version = guard.version_of({}, body)
    ds = _ds(doc)
    hop = _hop_count(ds)
    # Lantu's own search ids mark forwarded searches; a client's requestId is its own business (and may repeat)
    given = doc.get("requestId") or ""
    search_id = given if given.startswith(SEARCH_ID_PREFIX) else SEARCH_ID_PREFIX + uuid.uuid4().hex
    local_doc = copy.deepcopy(doc)
    local_doc.remove(_ds(local_doc))
    local_body = etree.tostring(local_doc, xml_declaration=True, encoding="UTF-8")
    local = engine.answer(config, environ_for(local_body, ""))
    if local.status != 200:
        return local
    if not catalog_store.first_visit(get_pool(settings), search_id, SEEN_TTL_S):
        return _emptied(local)  # this catalog already answered this search: a loop of peers
    if hop <= 1:
        return local
    peers = {peer.name: peer.url for peer in settings.catalog_peers}
    forwarded = _peer_body(doc, hop - 1, search_id)
    with ThreadPoolExecutor(max_workers=max(len(peers), 1)) as pool:
        futures = {name: pool.submit(_ask, url, forwarded, settings) for name, url in peers.items()}
        answers: dict[str, etree._Element | Exception] = {}
        for name, future in futures.items():
            try:
                answers[name] = future.result()
            except (requests.RequestException, RefusedURL, guard.Refused, ValueError) as exc:
                answers[name] = exc if not isinstance(exc, guard.Refused) else ValueError(exc.text)
    root = etree.fromstring(local.body, guard.PARSER)
    _merge(root, answers, version)
    return engine.CswAnswer(200, local.content_type, etree.tostring(root, xml_declaration=True, encoding="UTF-8"))

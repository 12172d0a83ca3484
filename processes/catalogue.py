"""The processes Lantu offers, by id (each a pygeoapi process plugin class)."""

from __future__ import annotations

from importlib import import_module

from lantu.processes.base import LantuProcessor

PROCESS_CLASSES = {
    "conflict-check": "lantu.processes.conflict:ConflictCheck",
    "control-line-check": "lantu.processes.control_line:ControlLineCheck",
    "site-selection": "lantu.processes.site_selection:SiteSelection",
    "ledger": "lantu.processes.ledger:Ledger",
    "indicators": "lantu.processes.indicators:Indicators",
}
_cache: dict[str, LantuProcessor] = {}


def processor(process_id: str) -> LantuProcessor:
    """The processor of an id (KeyError when there is none)."""
    if process_id not in _cache:
        module, cls = PROCESS_CLASSES[process_id].split(":")
        _cache[process_id] = getattr(import_module(module), cls)()
    return _cache[process_id]


def all_processors() -> list[LantuProcessor]:
    return [processor(pid) for pid in PROCESS_CLASSES]

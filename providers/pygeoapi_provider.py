"""Lantu's feature provider for pygeoapi 0.21 (psycopg2, no SQLAlchemy — pycsw pins SQLAlchemy < 2).

pygeoapi instantiates providers from its config by dotted name; the config carries only the collection id,
and the collection's ``FeatureSource`` and pool are bound here when Lantu builds the pygeoapi config.
The queries are the same SQL builders the items route uses, so both paths give identical answers.
"""

from __future__ import annotations

import json

from pygeoapi.provider.base import BaseProvider, ProviderItemNotFoundError, ProviderQueryError

from lantu.providers import crs as crs_mod
from lantu.providers.features import FeatureSource, ItemsQuery, fetch_item, fetch_items
from lantu.providers.pool import Pool

_BINDINGS: dict[str, tuple[FeatureSource, Pool]] = {}
JSON_TYPES = {"string": "string", "integer": "integer", "number": "number", "date": "string",
              "timestamp": "string", "boolean": "boolean"}


def bind(source: FeatureSource, pool: Pool) -> None:
    _BINDINGS[source.id] = (source, pool)


class LantuFeatureProvider(BaseProvider):
    def __init__(self, provider_def: dict):
        super().__init__(provider_def)
        cid = provider_def["data"]["collection"]
        if cid not in _BINDINGS:
            raise ProviderQueryError(f"collection {cid} is not bound to a source")
        self.source, self.pool = _BINDINGS[cid]
        self.id_field = self.source.id_column
        self.time_field = self.source.time_property
        self.get_fields()

    def get_fields(self) -> dict:
        if not self._fields:
            self._fields = {p.name: {"type": JSON_TYPES.get(p.type, "string"), "title": p.title}
                            for p in self.source.properties}
        return self._fields

    def query(self, offset: int = 0, limit: int = 10, resulttype: str = "results", bbox: list | None = None,
              datetime_: str | None = None, properties: list | None = None, sortby: list | None = None,
              select_properties: list | None = None, skip_geometry: bool = False, q: str | None = None,
              filterq=None, crs_transform_spec=None, **kwargs) -> dict:
        if bbox or datetime_ or properties or filterq or q:
            # Filtering goes through Lantu's own items route (CQL2 compiled with bound parameters).
            raise ProviderQueryError("use /collections/{id}/items for filtered queries")
        by_name = self.source.by_name
        sort = tuple((by_name[s["property"]], s.get("order", "+") == "+") for s in (sortby or [])
                     if s["property"] in by_name)
        chosen = tuple(by_name[n] for n in select_properties if n in by_name) if select_properties else None
        result = fetch_items(self.pool, self.source, ItemsQuery(limit=limit, offset=offset, sortby=sort,
                                                                properties=chosen, skip_geometry=skip_geometry))
        features = json.loads(b"[" + result.features + b"]") if resulttype != "hits" else []
        return {"type": "FeatureCollection", "features": features, "numberMatched": result.number_matched,
                "numberReturned": len(features)}

    def get(self, identifier, **kwargs) -> dict:
        text = str(identifier)
        if not (text.isascii() and text.isdigit()):
            raise ProviderItemNotFoundError(f"no feature {text[:40]!r}")
        found = fetch_item(self.pool, self.source, int(text), crs_mod.CRS84)
        if found is None:
            raise ProviderItemNotFoundError(f"no feature {text!r}")
        return json.loads(found)

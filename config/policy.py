"""The access policy: for each layer and action (discover, view, download, edit), who is granted it.

Loaded from ``config/policy.yaml`` (or the file of the ``policy_file`` setting) and checked against the
registry. Decisions are pure functions of (identity, layer, action); the HTTP gate lives in
``server/policy.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from lantu.config.registry import Registry

ACTIONS = ("discover", "view", "download", "edit")
ADMIN_ROLE = "admin"


class PolicyError(ValueError):
    """The policy file names something that does not exist or grants something malformed."""


@dataclass(frozen=True)
class Identity:
    """Who is calling: ``name`` is the account (or token subject), 'anonymous' when nobody."""

    name: str = "anonymous"
    roles: frozenset[str] = frozenset()
    attributes: dict = field(default_factory=dict, hash=False, compare=False)
    authenticated: bool = False

    @property
    def is_admin(self) -> bool:
        return ADMIN_ROLE in self.roles

    @property
    def signature(self) -> str:
        """What decides this caller's rights (for per-role caches): roles, or anonymous/authenticated."""
        return ("admin" if self.is_admin else ",".join(sorted(self.roles)) + ("+auth" if self.authenticated else ""))


ANONYMOUS = Identity()


@dataclass(frozen=True)
class RowFilter:
    field: str
    attribute: str


@dataclass(frozen=True)
class LayerPolicy:
    grants: dict[str, tuple[str, ...]]
    row_filter: RowFilter | None = None


def _check_grants(grants: object, where: str) -> tuple[str, ...]:
    if not isinstance(grants, list):
        raise PolicyError(f"{where}: must be a list of grants")
    for g in grants:
        if not (g in ("public", "authenticated") or (isinstance(g, str) and g.startswith("role:") and len(g) > 5)):
            raise PolicyError(f"{where}: bad grant {g!r} (public, authenticated or role:<name>)")
    return tuple(grants)


def _entry(raw: object, where: str) -> tuple[dict[str, tuple[str, ...]], RowFilter | None]:
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: must be a mapping of action → grants")
    grants, row_filter = {}, None
    for key, value in raw.items():
        if key == "row_filter":
            if not isinstance(value, dict) or set(value) != {"field", "attribute"}:
                raise PolicyError(f"{where}.row_filter: needs field and attribute")
            row_filter = RowFilter(str(value["field"]), str(value["attribute"]))
        elif key in ACTIONS:
            grants[key] = _check_grants(value, f"{where}.{key}")
        else:
            raise PolicyError(f"{where}: unknown action {key!r} (actions: {', '.join(ACTIONS)})")
    return grants, row_filter


class Policy:
    def __init__(self, layers: dict[str, LayerPolicy]):
        self.layers = layers

    def allows(self, who: Identity, layer_id: str, action: str) -> bool:
        if who.is_admin:
            return True
        entry = self.layers.get(layer_id)
        if entry is None:
            return False
        for grant in entry.grants.get(action, ()):
            if grant == "public" or (grant == "authenticated" and who.authenticated):
                return True
            if grant.startswith("role:") and grant[5:] in who.roles:
                return True
        return False

    def row_filter(self, who: Identity, layer_id: str) -> tuple[str, str | None] | None:
        """(field, value) the caller's rows must match; value None means no rows at all."""
        entry = self.layers.get(layer_id)
        if who.is_admin or entry is None or entry.row_filter is None:
            return None
        return entry.row_filter.field, (str(who.attributes[entry.row_filter.attribute])
                                        if entry.row_filter.attribute in who.attributes else None)

    def allowed_layers(self, who: Identity, action: str, layer_ids) -> list[str]:
        return [lid for lid in layer_ids if self.allows(who, lid, action)]


def load_policy(registry: Registry, path: Path | None = None) -> Policy:
    source = str(path) if path else "lantu/config/policy.yaml"
    text = Path(path).read_text("utf-8") if path else \
        resources.files("lantu.config").joinpath("policy.yaml").read_text("utf-8")
    raw = yaml.safe_load(text) or {}
    unknown = set(raw) - {"groups", "layers"}
    if unknown:
        raise PolicyError(f"{source}: unknown key(s) {sorted(unknown)} (groups, layers)")
    groups = {}
    for name, entry in (raw.get("groups") or {}).items():
        if not any(layer.group == name for layer in registry):
            raise PolicyError(f"{source}: groups.{name}: no registry layer is in group {name!r}")
        groups[name] = _entry(entry, f"{source}: groups.{name}")
    overrides = {}
    for lid, entry in (raw.get("layers") or {}).items():
        layer = registry.get(lid)
        if layer is None:
            raise PolicyError(f"{source}: layers.{lid}: no such registry layer")
        grants, row_filter = _entry(entry, f"{source}: layers.{lid}")
        if row_filter and layer.field(row_filter.field) is None:
            raise PolicyError(f"{source}: layers.{lid}.row_filter: {lid} has no field {row_filter.field!r}")
        overrides[lid] = (grants, row_filter)
    layers = {}
    for layer in registry:
        grants, row_filter = dict(groups.get(layer.group, ({}, None))[0]), None
        if layer.id in overrides:
            grants.update(overrides[layer.id][0])
            row_filter = overrides[layer.id][1]
        if grants:
            layers[layer.id] = LayerPolicy(grants, row_filter)
    return Policy(layers)

"""The layer registry: typed models, loading and two-stage validation.

Stage 1 checks each entry's shape (pydantic, extra keys forbidden); stage 2 checks references (field →
code list, unique ids and BSM rules). Every problem is reported with its path, e.g.
``layers.basic_farmland.fields.DLBM.code_list``, and all problems are reported at once.
The registry is immutable: a new registry replaces an old one, nothing mutates it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lantu.config.codelists import CodeList, load_code_lists

FieldType = Literal["string", "integer", "number", "date", "boolean"]
GeometryType = Literal["Point", "LineString", "Polygon"]
LayerKind = Literal["vector", "raster", "catalog"]
ID_PATTERN = r"^[a-z][a-z0-9_]{1,62}$"
FIELD_PATTERN = r"^[A-Z][A-Z0-9_]{0,30}$"
COLOUR_PATTERN = r"^#[0-9A-Fa-f]{6}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FieldDef(_Model):
    code: str = Field(pattern=FIELD_PATTERN)
    name_zh: str = Field(min_length=1)
    type: FieldType
    length: int | None = Field(None, ge=1, le=4000)
    required: bool = False
    code_list: str | None = None
    description: str = ""

    @property
    def column(self) -> str:
        """Database column name: the lower-case field code (PostgreSQL folds identifiers)."""
        return self.code.lower()


class Style(_Model):
    stroke: str = Field("#333333", pattern=COLOUR_PATTERN)
    stroke_width: float = Field(1.0, gt=0, le=20)
    fill: str | None = Field(None, pattern=COLOUR_PATTERN)
    fill_opacity: float = Field(0.5, ge=0, le=1)
    dash: tuple[float, ...] = ()
    hatch: bool = False
    classify_by: str | None = None  # a field whose code list carries colours (land-use maps)
    label_field: str | None = None
    point_symbol: Literal["circle", "square", "triangle", "star"] = "circle"
    point_size: float = Field(8, gt=0, le=64)


class Access(_Model):
    # Placeholder for the security issue: `public` layers are open; others need a role (not enforced yet).
    level: Literal["public", "internal", "restricted"] = "public"
    roles: tuple[str, ...] = ()


class Metadata(_Model):
    abstract_zh: str
    abstract_en: str
    keywords: tuple[str, ...]
    department: str
    update_cycle: str
    seed_ref: str = ""
    synthetic_note: str = "演示数据为合成数据，不得用于生产 (synthetic demo data, not for production)"


class Layer(_Model):
    id: str = Field(pattern=ID_PATTERN)
    seq: int = Field(ge=1)
    name_zh: str = Field(min_length=1)
    title_en: str = Field(min_length=1)
    group: str
    subgroup: str
    kind: LayerKind
    geometry: GeometryType | None = None
    control_line: bool = False
    ysdm: str | None = Field(None, pattern=r"^\d{10}$")
    time_field: str | None = None
    fields: tuple[FieldDef, ...] = ()
    style: Style = Style()
    access: Access = Access()
    metadata: Metadata
    min_zoom: int | None = Field(None, ge=0, le=24)
    max_zoom: int = Field(20, ge=0, le=24)

    @property
    def table(self) -> str:
        """Table name in schema ``blueprint`` (the id is already a safe ASCII identifier)."""
        return self.id

    @property
    def is_vector(self) -> bool:
        return self.kind == "vector"

    def field(self, code: str) -> FieldDef | None:
        return next((f for f in self.fields if f.code == code.upper()), None)


class RegistryError(ValueError):
    """The registry has errors; ``problems`` lists each as ``path: message``."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} registry error(s):\n  " + "\n  ".join(problems))


@dataclass(frozen=True)
class Registry:
    layers: Mapping[str, Layer]
    code_lists: Mapping[str, CodeList]
    source: str

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers.values())

    def __len__(self) -> int:
        return len(self.layers)

    def get(self, layer_id: str) -> Layer | None:
        return self.layers.get(layer_id)

    def vector_layers(self) -> list[Layer]:
        return [layer for layer in self.layers.values() if layer.is_vector]


def _expand_standard_fields(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """Prepend the standard fields (BSM, YSDM, XZQDM, XZQMC, and MJ for polygons) to each vector layer."""
    standard = raw.get("standard_fields", {})
    layers = []
    for entry in raw.get("layers", []):
        entry = dict(entry)
        if entry.get("kind") == "vector":
            own = list(entry.get("fields", []))
            own_codes = {f.get("code") for f in own if isinstance(f, dict)}
            extra = list(standard.get("all", []))
            if entry.get("geometry") == "Polygon":
                extra += standard.get("polygon", [])
            trailing = [f for f in standard.get("trailing", []) if f["code"] not in own_codes]
            entry["fields"] = [f for f in extra if f["code"] not in own_codes] + own + trailing
        layers.append(entry)
    return layers


def _path_of(entry: dict[str, Any], loc: tuple[Any, ...]) -> str:
    """Turn a pydantic location into a registry path with layer ids and field codes, not list indexes."""
    parts: list[str] = [f"layers.{entry.get('id', '?')}"]
    fields = entry.get("fields", [])
    it = iter(loc)
    for part in it:
        if part == "fields":
            index = next(it, None)
            code = fields[index].get("code", index) if isinstance(index, int) and index < len(fields) else index
            parts.append(f"fields.{code}")
        else:
            parts.append(str(part))
    return ".".join(parts)


def _check_references(layers: list[Layer], code_lists: Mapping[str, CodeList]) -> list[str]:
    problems: list[str] = []
    seen: set[str] = set()
    for layer in layers:
        where = f"layers.{layer.id}"
        if layer.id in seen:
            problems.append(f"{where}.id: duplicate layer id")
        seen.add(layer.id)
        codes = [f.code for f in layer.fields]
        for code in {c for c in codes if codes.count(c) > 1}:
            problems.append(f"{where}.fields.{code}: field defined twice")
        for fdef in layer.fields:
            if fdef.code_list and fdef.code_list not in code_lists:
                problems.append(f"{where}.fields.{fdef.code}.code_list: unknown code list {fdef.code_list!r}")
        if layer.kind == "vector":
            if layer.geometry is None:
                problems.append(f"{where}.geometry: a vector layer needs a geometry type")
            for required in ("BSM", "YSDM", "XZQDM", "XZQMC"):
                if required not in codes:
                    problems.append(f"{where}.fields: standard field {required} missing")
        elif layer.geometry is not None:
            problems.append(f"{where}.geometry: only vector layers have a geometry type")
        for ref_name in ("classify_by", "label_field"):
            ref = getattr(layer.style, ref_name)
            if ref and ref not in codes:
                problems.append(f"{where}.style.{ref_name}: no field {ref!r} in this layer")
        if layer.time_field and layer.time_field not in codes:
            problems.append(f"{where}.time_field: no field {layer.time_field!r} in this layer")
    return problems


def parse_registry(raw: dict[str, Any], code_lists: Mapping[str, CodeList], source: str = "<memory>") -> Registry:
    """Validate a registry document; raise RegistryError listing every problem."""
    problems: list[str] = []
    layers: list[Layer] = []
    if not isinstance(raw, dict) or not isinstance(raw.get("layers"), list):
        raise RegistryError([f"{source}: must be a mapping with a 'layers' list"])
    for entry in _expand_standard_fields(raw):
        if not isinstance(entry, dict):
            problems.append(f"layers.?: entry must be a mapping, got {type(entry).__name__}")
            continue
        try:
            layers.append(Layer(**entry))
        except ValidationError as exc:
            problems += [f"{_path_of(entry, e['loc'])}: {e['msg']}" for e in exc.errors()]
    problems += _check_references(layers, code_lists)
    if problems:
        raise RegistryError(problems)
    ordered = sorted(layers, key=lambda layer: layer.seq)
    return Registry(MappingProxyType({layer.id: layer for layer in ordered}), code_lists, source)


def load_registry(path: Path | None = None) -> Registry:
    """Load the registry shipped with Lantu (or the YAML file at ``path``)."""
    if path is None:
        return _default_registry()
    text = Path(path).read_text("utf-8")
    return parse_registry(yaml.safe_load(text), load_code_lists(), str(path))


@cache
def _default_registry() -> Registry:
    text = resources.files("lantu.config").joinpath("registry.yaml").read_text("utf-8")
    return parse_registry(yaml.safe_load(text), load_code_lists(), "lantu/config/registry.yaml")


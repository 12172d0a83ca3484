"""Quality checks for data intake (``lantu load``): small functions that each return a list of issues.

Every check looks at one aspect of a candidate file — the file itself, its CRS, its fields and values, its
geometries — and returns :class:`Issue` objects (severity ``error`` refuses the load, ``warning`` is only
reported). Nothing here touches the database; :mod:`lantu.providers.intake` reads the file, asks for the
rows already stored where a check needs them, runs :func:`run_checks` and writes only when no check
returned an error. Check ids are stable (reports are read by programs too):

=====================  =======  ================================================================
check id               level    meaning
=====================  =======  ================================================================
file.unreadable        error    not a GIS file Lantu reads, or GDAL cannot read it
file.truncated         error    the file is shorter than its own header says (cut off, corrupt)
file.layers            error    several layers and none named like the target layer
file.empty             error    no features at all
file.encoding          warning  shapefile text without a declared code page (decoded as UTF-8 or GBK)
crs.missing            error    no CRS in the file and no ``srs`` given
crs.unknown            error    a CRS definition PROJ cannot interpret
crs.untransformable    error    PROJ has no transformation to EPSG:4490
crs.mismatch           error    the coordinates do not fit the declared CRS (wrong CRS)
crs.assigned           warning  the file had no CRS; ``srs`` was used
crs.override           warning  ``srs`` replaced the CRS the file declares
crs.transformed        warning  not CGCS2000: transformed to EPSG:4490
geometry.empty         error    null or empty geometries
geometry.corrupt       error    geometries that cannot be decoded (e.g. curves)
geometry.type          error    geometry type does not match the layer
geometry.invalid       error    invalid geometries (``make_valid`` repairs them)
geometry.repaired      warning  invalid geometries repaired by ``make_valid``
geometry.outside       error    some features lie outside China / the CRS's area of use
field.missing          error    a required field is not in the file
field.ambiguous        error    two file fields map to one registry field (case-insensitively)
field.unknown          warning  fields the registry does not know (ignored)
field.null             error    a required field is empty
field.type             error    values that do not convert to the registry type
field.length           error    strings longer than the registry allows
code.unknown           error    values not in the field's code list
bsm.duplicate          error    BSM repeated in the file, or (append) already stored in the layer
ysdm.mismatch          warning  YSDM differs from the layer's 要素代码
=====================  =======  ================================================================
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import struct
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import shapely
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError, ProjError

from lantu.config.registry import FieldDef, Layer, Registry

Severity = Literal["error", "warning"]
MAX_LISTED = 20  # ids / values listed per issue; the count says how many there are in all
STORAGE_EPSG = 4490
CHINA_BOX = (73.0, 3.0, 136.0, 54.0)  # lon/lat extent everything loaded must fall in
AREA_OF_USE_MARGIN = 1.0  # degrees of slack around a projected CRS's area of use (zone-edge data)
CGCS2000_EPSG = frozenset({4490, *range(4491, 4555)})  # geographic, 6° and 3° Gauss-Krüger zones
ACCEPTED_GEOMETRY = {"Polygon": {"Polygon", "MultiPolygon"},
                     "LineString": {"LineString", "MultiLineString"},
                     "Point": {"Point", "MultiPoint"}}
_DIMENSION = {"Point": 0, "LineString": 1, "Polygon": 2}
_TYPE_NAMES = {-1: "None", 0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
               5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}


# ---- issues and the report ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Issue:
    check: str
    severity: Severity
    message: str
    field: str | None = None  # registry field code the issue is about
    count: int = 0  # features (or values) affected in all
    ids: tuple[str, ...] = ()  # the first MAX_LISTED feature ids (BSM, or #n = n-th feature in the file)
    values: tuple[str, ...] = ()  # the first MAX_LISTED offending values (codes, field names, …)
    details: tuple[str, ...] = ()  # per-feature detail lines, e.g. the GEOS validity reason

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def error(check: str, message: str, **kw: Any) -> Issue:
    return Issue(check, "error", message, **kw)


def warning(check: str, message: str, **kw: Any) -> Issue:
    return Issue(check, "warning", message, **kw)


def listing(items: Sequence[Any], limit: int = MAX_LISTED, quote: bool = False) -> str:
    """``a, b, c and 12 more`` — lists in messages are capped and say how many were left out."""
    shown = [repr(str(x)) if quote else str(x) for x in items[:limit]]
    text = ", ".join(shown)
    if len(items) > limit:
        text += f" and {len(items) - limit} more"
    return text


def _capped(items: Iterable[Any]) -> tuple[str, ...]:
    return tuple(str(x) for x in list(items)[:MAX_LISTED])


@dataclass
class QcReport:
    """Everything QC found about one intake, plus (after loading) what was written."""

    layer: str
    layer_name_zh: str
    source: str
    mode: str
    options: dict[str, Any] = field(default_factory=dict)
    file: dict[str, Any] = field(default_factory=dict)  # driver, layer in the file, crs, fields, …
    features: int = 0
    issues: list[Issue] = field(default_factory=list)
    status: str = "checked"  # checked → refused | loaded | failed
    result: dict[str, Any] | None = None
    field_names: dict[str, str] = field(default_factory=dict)  # field code → 中文名, for the text report
    created_at: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))

    SCHEMA = "lantu-intake-qc/1"

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, issues: Iterable[Issue]) -> None:
        self.issues.extend(issues)

    def checks(self, severity: Severity | None = None) -> list[str]:
        return [i.check for i in self.issues if severity is None or i.severity == severity]

    def summary(self) -> str:
        """One line: status, counts, and the first error."""
        head = f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        if self.errors:
            first = self.errors[0]
            return f"{head}; first: [{first.check}] {first.message}"
        return head

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.SCHEMA,
            "created_at": self.created_at,
            "layer": {"id": self.layer, "name_zh": self.layer_name_zh},
            "source": self.source,
            "mode": self.mode,
            "options": self.options,
            "file": self.file,
            "features": self.features,
            "status": self.status,
            "ok": self.ok,
            "counts": {"errors": len(self.errors), "warnings": len(self.warnings)},
            "issues": [i.to_dict() for i in self.issues],
            "result": self.result,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=2, default=str)

    def _field_label(self, code: str | None) -> str:
        if not code:
            return ""
        name = self.field_names.get(code)
        return f"{code} {name}" if name else code

    def to_text(self) -> str:
        status_zh = {"loaded": "已入库", "refused": "未通过质检，未入库", "failed": "入库失败，未写入",
                     "checked": "质检完成"}.get(self.status, "")
        lines = [
            "Lantu data intake QC report / 数据入库质检报告",
            "=" * 60,
            f"layer 图层:    {self.layer} {self.layer_name_zh}",
            f"file 文件:     {self.source}",
        ]
        if self.file:
            info = self.file
            bits = [str(info[k]) for k in ("driver",) if info.get(k)]
            if info.get("layer_name"):
                bits.append(f"layer {info['layer_name']!r}")
            if info.get("crs"):
                bits.append(f"CRS {info['crs']}")
            if info.get("geometry_type"):
                bits.append(str(info["geometry_type"]))
            if bits:
                lines.append(f"              {'; '.join(bits)}")
        lines += [
            f"features 要素: {self.features}",
            f"mode 方式:     {self.mode}" + "".join(f", {k}={v}" for k, v in self.options.items() if v),
            f"time 时间:     {self.created_at}",
            f"status 结果:   {self.status.upper()} ({status_zh}) — {len(self.errors)} error(s) 错误, "
            f"{len(self.warnings)} warning(s) 警告",
        ]
        if self.result:
            lines.append("written 写入:  " + ", ".join(f"{k}={v}" for k, v in self.result.items()))
        for title, items in (("ERRORS 错误", self.errors), ("WARNINGS 警告", self.warnings)):
            if not items:
                continue
            lines += ["", title, "-" * 60]
            for issue in items:
                label = self._field_label(issue.field)
                lines.append(f"[{issue.check}]{' ' + label if label else ''}")
                lines.append(f"    {issue.message}")
                if issue.details:
                    lines += [f"      - {d}" for d in issue.details]
                elif issue.ids and issue.ids[0] not in issue.message:
                    more = f" (+{issue.count - len(issue.ids)} more)" if issue.count > len(issue.ids) else ""
                    lines.append(f"    features 要素: {', '.join(issue.ids)}{more}")
        if not self.issues:
            lines += ["", "No problems found. 未发现问题。"]
        return "\n".join(lines) + "\n"


# ---- feature labels -----------------------------------------------------------------------------------
def feature_labels(bsm: Sequence[Any] | None, n: int) -> list[str]:
    """How features are named in issues: their BSM when they have one, else ``#n`` (1-based position)."""
    labels = [f"#{i + 1}" for i in range(n)]
    if bsm is not None:
        texts = [_blank_to_none(v) for v in bsm]
        seen = Counter(_to_string(t) for t in texts if t is not None)
        for i, text in enumerate(texts):
            if text is not None:
                text = _to_string(text)
                labels[i] = text if seen[text] == 1 else f"{text} (#{i + 1})"  # a repeated BSM names no one
    return labels


def _blank_to_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.datetime64) and np.isnat(value):
        return None
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _pick(labels: Sequence[str], indexes: Iterable[int]) -> list[str]:
    return [labels[i] for i in indexes]


# ---- file-level checks ---------------------------------------------------------------------------------
SUPPORTED_SUFFIXES = {".gpkg": "GPKG", ".shp": "ESRI Shapefile", ".zip": "zip", ".geojson": "GeoJSON",
                      ".json": "GeoJSON"}
_MAGIC = [(b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"),
          (b"GIF8", "a GIF image"), (b"II*\x00", "a TIFF image (raster)"), (b"MM\x00*", "a TIFF image (raster)"),
          (b"PK\x03\x04", "a zip archive"), (b"SQLite format 3\x00", "an SQLite/GeoPackage database"),
          (b"\xd0\xcf\x11\xe0", "an MS Office document"), (b"{\\rtf", "an RTF document")]


def sniff(head: bytes) -> str | None:
    """What the first bytes of a file say it is, for messages (``a PNG image``), or None."""
    for magic, what in _MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"\x00\x00\x27\x0a":
        return "an ESRI shapefile (.shp)"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] in (b"{", b"["):
        return "JSON text"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head[:512]):
        return "plain text"
    return None


def check_suffix(name: str, head: bytes) -> list[Issue]:
    """The file must be GeoPackage, Shapefile (or a zip of one) or GeoJSON, by name and by content."""
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    what = sniff(head)
    expected = "GeoPackage (.gpkg), Shapefile (.shp or .zip) or GeoJSON (.geojson/.json)"
    if suffix not in SUPPORTED_SUFFIXES:
        found = f" It looks like {what}." if what else ""
        return [error("file.unreadable", f"{name} is not a GIS file Lantu can load: the suffix {suffix or '(none)'} "
                      f"is not one of {expected}.{found}")]
    if not head:
        return [error("file.unreadable", f"{name} is empty (0 bytes), not a GIS file")]
    mismatch = {".gpkg": "an SQLite/GeoPackage database", ".zip": "a zip archive",
                ".shp": "an ESRI shapefile (.shp)", ".geojson": "JSON text", ".json": "JSON text"}[suffix]
    if what != mismatch:
        found = f"it is {what}" if what else "its content is not what the suffix says"
        return [error("file.unreadable", f"{name} is not a valid {SUPPORTED_SUFFIXES[suffix]} file: {found}, "
                      "not a GIS file Lantu can load")]
    return []


def check_sqlite_size(name: str, head: bytes, size: int) -> list[Issue]:
    """A GeoPackage is an SQLite database: its header says how many pages it has; fewer means truncated."""
    if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
        return []
    page_size = struct.unpack(">H", head[16:18])[0]
    page_size = 65536 if page_size == 1 else page_size
    change_counter, pages = struct.unpack(">II", head[24:32])
    valid_for = struct.unpack(">I", head[92:96])[0]
    if page_size < 512:
        return [error("file.truncated", f"{name} is corrupt: its SQLite header is damaged")]
    if size % page_size:
        return [error("file.truncated", f"{name} is truncated or corrupt: its size ({size} bytes) is not a "
                      f"whole number of {page_size}-byte database pages")]
    if pages and change_counter == valid_for and size < pages * page_size:
        return [error("file.truncated", f"{name} is truncated: its header says {pages * page_size} bytes "
                      f"({pages} pages) but the file has only {size} bytes")]
    return []


def check_shapefile_part(name: str, head: bytes, size: int) -> list[Issue]:
    """.shp/.shx store their length in the header, .dbf its record count and size: compare with the file."""
    suffix = name.rsplit(".", 1)[-1].lower()
    expected = None
    if suffix in ("shp", "shx") and len(head) >= 28:
        if struct.unpack(">i", head[0:4])[0] != 9994:
            return [error("file.unreadable", f"{name} is not a shapefile component (bad header)")]
        expected = struct.unpack(">i", head[24:28])[0] * 2
    elif suffix == "dbf" and len(head) >= 12:
        records, header_len, record_len = struct.unpack("<IHH", head[4:12])
        expected = header_len + records * record_len
    elif suffix in ("shp", "shx", "dbf"):
        return [error("file.truncated", f"{name} is truncated: {size} bytes, shorter than its header")]
    if expected is not None and size < expected:
        return [error("file.truncated", f"{name} is truncated: its header says {expected} bytes but the file "
                      f"has only {size} bytes")]
    return []


def check_json_complete(name: str, tail: bytes) -> list[Issue]:
    """A GeoJSON document ends with ``}``; anything else means the file was cut off."""
    text = tail.rstrip(b" \t\r\n\x00")
    if text and not text.endswith((b"}", b"]")):
        return [error("file.truncated", f"{name} is truncated: the JSON text stops in mid-document")]
    return []


def gdal_unreadable(name: str, exc: Exception) -> Issue:
    message = str(exc).strip().split("; It might help")[0]
    message = message.replace("\n", " ")
    if "not recognized as being in a supported file format" in message:
        return error("file.unreadable", f"{name} is not a GIS file GDAL recognises ({message})")
    if "malformed" in message or "Unterminated" in message or "truncated" in message.lower():
        return error("file.truncated", f"{name} is truncated or corrupt: {message}")
    return error("file.unreadable", f"{name} cannot be read: {message}")


def choose_layer(name: str, layers: Sequence[tuple[str, str | None]], layer_id: str) -> tuple[str | None, list[Issue]]:
    """The file's layer to load: the only spatial one, or the one named like the target layer."""
    spatial = [(n, g) for n, g in layers if g]
    candidates = spatial or list(layers)
    if not candidates:
        return None, [error("file.empty", f"{name} holds no layers")]
    if len(candidates) == 1:
        return candidates[0][0], []
    for layer_name, _ in candidates:
        if layer_name.lower() == layer_id.lower():
            return layer_name, []
    names = ", ".join(f"{n} ({g or 'no geometry'})" for n, g in candidates)
    return None, [error("file.layers", f"{name} holds {len(candidates)} layers and none is named {layer_id!r}: "
                        f"{names}; rename the one to load to {layer_id!r} or extract it", values=_capped(
                            n for n, _ in candidates), count=len(candidates))]


# ---- CRS ----------------------------------------------------------------------------------------------
def crs_label(crs: CRS) -> str:
    code = crs.to_epsg()
    return f"EPSG:{code} ({crs.name})" if code else crs.name


def is_cgcs2000(crs: CRS) -> bool:
    """EPSG:4490, the CGCS2000 Gauss-Krüger zones, or any other CRS on the China 2000 datum."""
    code = crs.to_epsg()
    if code in CGCS2000_EPSG:
        return True
    geodetic = crs.geodetic_crs
    datum = geodetic.datum.name if geodetic is not None and geodetic.datum is not None else ""
    norm = re.sub(r"[^a-z0-9]", "", datum.lower())
    return "china2000" in norm or "cgcs2000" in norm


def resolve_crs(declared: str | None, srs: str | None) -> tuple[CRS | None, list[Issue]]:
    """The CRS the coordinates are in: the file's, or ``srs`` when given. ``srs`` must already parse."""
    issues: list[Issue] = []
    file_crs = None
    if declared:
        try:
            file_crs = CRS.from_user_input(declared)
        except CRSError as exc:
            if not srs:
                return None, [error("crs.unknown", f"the file's CRS cannot be interpreted by PROJ ({exc}); "
                                    "give the right one with --srs EPSG:n")]
    if srs:
        given = CRS.from_user_input(srs)
        if file_crs is None:
            what = "has no CRS" if not declared else "has a CRS PROJ cannot interpret"
            issues.append(warning("crs.assigned", f"the file {what}; using {crs_label(given)} as given by --srs"))
        elif not given.equals(file_crs, ignore_axis_order=True):
            issues.append(warning("crs.override", f"the file declares {crs_label(file_crs)}; using "
                                  f"{crs_label(given)} as given by --srs instead"))
        return given, issues
    if file_crs is None:
        return None, [error("crs.missing", "the file has no coordinate reference system (no .prj / SRS); "
                            "Lantu will not guess: give it with --srs, e.g. --srs EPSG:4490 for CGCS2000 "
                            "lon/lat or --srs EPSG:4547 for CGCS2000 3-degree GK CM 114E")]
    return file_crs, issues


def to_storage_transformer(crs: CRS) -> tuple[Transformer | None, list[Issue]]:
    """A lon/lat (always_xy) transformer to EPSG:4490; None when the CRS already is it."""
    target = CRS.from_epsg(STORAGE_EPSG)
    if crs.equals(target, ignore_axis_order=True):
        return None, []
    try:
        transformer = Transformer.from_crs(crs, target, always_xy=True)
    except (CRSError, ProjError) as exc:
        return None, [error("crs.untransformable", f"PROJ has no transformation from {crs_label(crs)} to "
                            f"EPSG:4490 ({exc})")]
    if is_cgcs2000(crs):
        return transformer, []
    accuracy = transformer.accuracy
    how = f"accuracy {accuracy} m" if accuracy and accuracy > 0 else "accuracy unknown"
    ballpark = "Ballpark" in transformer.description or not accuracy or accuracy < 0
    note = ""
    if ballpark:
        note = ("; PROJ only has a ballpark transformation (no datum shift): fine for WGS 84 (under 1 m), "
                "but Beijing 1954 / Xian 1980 data can be off by 100 m or more — convert those with the "
                "official parameters first")
    return transformer, [warning("crs.transformed", f"the file is in {crs_label(crs)}, not CGCS2000; its "
                                 f"coordinates were transformed to EPSG:4490 ({how}){note}")]


def transform_geometries(geoms: np.ndarray, transformer: Transformer | None) -> np.ndarray:
    if transformer is None:
        return geoms

    def _apply(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1], errcheck=False)
        return np.column_stack([x, y])

    return shapely.transform(geoms, _apply)


def _gk_hint(minx: float, maxx: float, miny: float, maxy: float) -> str:
    """Recognise lon/lat degrees or zone-prefixed Gauss-Krüger eastings in projected data."""
    if -180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90:
        return (" The coordinates look like longitude/latitude degrees, not metres: if they are CGCS2000 "
                "lon/lat, load with --srs EPSG:4490.")
    if minx >= 1e7 and maxx < 1e8:
        zone = int(minx // 1_000_000)
        if 25 <= zone <= 45:
            return (f" The x values carry a Gauss-Krüger zone prefix ({zone}): the matching CRS is "
                    f"EPSG:{4513 + zone - 25} (CGCS2000 3-degree GK zone {zone}).")
        if 13 <= zone <= 23:
            return (f" The x values carry a Gauss-Krüger zone prefix ({zone}): the matching CRS is "
                    f"EPSG:{4491 + zone - 13} (CGCS2000 6-degree GK zone {zone}).")
    return ""


def check_crs_fit(crs: CRS, source: np.ndarray, stored: np.ndarray, labels: Sequence[str]) -> list[Issue]:
    """After transforming to EPSG:4490 the data must lie in China and in the declared CRS's area of use."""
    present = ~(shapely.is_missing(stored) | shapely.is_empty(stored))
    if not present.any():
        return []
    bounds = shapely.bounds(stored)
    west, south, east, north = CHINA_BOX
    where = "China (lon 73–136°E, lat 3–54°N)"
    area = crs.area_of_use
    if crs.is_projected and area is not None:
        m = AREA_OF_USE_MARGIN
        west, south = max(west, area.west - m), max(south, area.south - m)
        east, north = min(east, area.east + m), min(north, area.north + m)
        where = (f"the area of use of {crs_label(crs)} (lon {area.west:g}–{area.east:g}°E, "
                 f"lat {area.south:g}–{area.north:g}°N, ±{m:g}°) within China")
    with np.errstate(invalid="ignore"):
        inside = (np.isfinite(bounds).all(axis=1) & (bounds[:, 0] >= west) & (bounds[:, 2] <= east)
                  & (bounds[:, 1] >= south) & (bounds[:, 3] <= north))
    outside = np.flatnonzero(present & ~inside)
    if not len(outside):
        return []
    ids = _pick(labels, outside)
    if len(outside) == int(present.sum()):
        src = shapely.total_bounds(source[present])
        finite = bounds[present][np.isfinite(bounds[present]).all(axis=1)]
        got = "no valid lon/lat at all"
        if len(finite):
            got = (f"lon {finite[:, 0].min():.4f}…{finite[:, 2].max():.4f}, lat {finite[:, 1].min():.4f}…"
                   f"{finite[:, 3].max():.4f}")
        hint = _gk_hint(*src) if crs.is_projected else ""
        if crs.is_geographic and (abs(src[0]) > 180 or abs(src[2]) > 180 or abs(src[1]) > 90 or abs(src[3]) > 90):
            hint = (" The coordinates look like projected metres, not degrees: declare the projected CRS with "
                    "--srs (长沙县 uses EPSG:4547, CGCS2000 3-degree GK CM 114E).")
        return [error("crs.mismatch", f"the coordinates do not fit the declared CRS {crs_label(crs)}: file "
                      f"extent x {src[0]:.6g}…{src[2]:.6g}, y {src[1]:.6g}…{src[3]:.6g} becomes {got} in "
                      f"EPSG:4490, outside {where}.{hint}", count=len(outside), ids=_capped(ids))]
    return [error("geometry.outside", f"{len(outside)} feature(s) lie outside {where} after transforming to "
                  f"EPSG:4490: {listing(ids)}", count=len(outside), ids=_capped(ids))]


# ---- fields and values --------------------------------------------------------------------------------
def _fname(fdef: FieldDef) -> str:
    return f"{fdef.code} ({fdef.name_zh})"


def match_fields(layer: Layer, file_fields: Sequence[str], *, shapefile: bool = False
                 ) -> tuple[dict[str, int], list[Issue]]:
    """Map registry field codes to file column indexes (case-insensitive; shapefile names cut at 10)."""
    issues: list[Issue] = []
    by_code: dict[str, list[int]] = defaultdict(list)
    unknown: list[str] = []
    for index, name in enumerate(file_fields):
        key = str(name).strip().upper()
        fdef = layer.field(key)
        if fdef is None and shapefile and len(key) == 10:
            longer = [f for f in layer.fields if len(f.code) > 10 and f.code[:10] == key]
            fdef = longer[0] if len(longer) == 1 else None
        if fdef is None:
            unknown.append(str(name))
        else:
            by_code[fdef.code].append(index)
    mapping: dict[str, int] = {}
    for code, indexes in by_code.items():
        if len(indexes) > 1:
            names = [str(file_fields[i]) for i in indexes]
            issues.append(error("field.ambiguous", f"fields {listing(names, quote=True)} all map to registry "
                                f"field {_fname(layer.field(code))}; keep only one", field=code,
                                values=_capped(names), count=len(names)))
        else:
            mapping[code] = indexes[0]
    missing = [f for f in layer.fields if f.required and f.code not in by_code]
    for fdef in missing:
        issues.append(error("field.missing", f"required field {_fname(fdef)} is missing from the file "
                            f"(file fields: {listing(list(file_fields)) or 'none'})", field=fdef.code))
    if unknown:
        issues.append(warning("field.unknown", f"{len(unknown)} field(s) not in the registry of {layer.id} are "
                              f"ignored: {listing(unknown, quote=True)}", values=_capped(unknown),
                              count=len(unknown)))
    return mapping, issues


class _Bad(ValueError):
    pass


_DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%Y年%m月%d日")
_TRUE = {"true", "t", "yes", "y", "1", "是"}
_FALSE = {"false", "f", "no", "n", "0", "否"}


def _to_string(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, np.datetime64):
        return str(value.astype("datetime64[D]"))
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return str(value).strip()


def _to_integer(value: Any) -> int:
    if isinstance(value, bool | np.bool_):
        raise _Bad
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        if math.isfinite(value) and float(value).is_integer():
            return int(value)
        raise _Bad
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return int(text.split(".")[0])
    raise _Bad


def _to_number(value: Any) -> float:
    if isinstance(value, bool | np.bool_):
        raise _Bad
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise _Bad from exc
    if not math.isfinite(number):
        raise _Bad
    return number


def _to_date(value: Any) -> dt.date:
    if isinstance(value, np.datetime64):
        return value.astype("datetime64[D]").item()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    text = text.split("T")[0].split(" ")[0] if re.match(r"\d{4}-\d{2}-\d{2}[T ]", text) else text
    for fmt in _DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise _Bad


def _to_boolean(value: Any) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = _to_string(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _Bad


_CONVERTERS: dict[str, Callable[[Any], Any]] = {"string": _to_string, "integer": _to_integer, "number": _to_number,
                                                "date": _to_date, "boolean": _to_boolean}
_INT_RANGE = (-(2**63), 2**63 - 1)


def convert_field(fdef: FieldDef, column: Sequence[Any], labels: Sequence[str]) -> tuple[list[Any], list[Issue]]:
    """Convert one file column to the registry type; blank strings become null."""
    convert = _CONVERTERS[fdef.type]
    out: list[Any] = [None] * len(column)
    bad: list[tuple[int, Any]] = []
    too_long: list[tuple[int, str]] = []
    for i, raw in enumerate(column):
        value = _blank_to_none(raw)
        if value is None:
            continue
        try:
            converted = convert(value)
        except (_Bad, ValueError, TypeError, OverflowError):
            bad.append((i, raw))
            continue
        if fdef.type == "integer" and not _INT_RANGE[0] <= converted <= _INT_RANGE[1]:
            bad.append((i, raw))
            continue
        if fdef.type == "string":
            if converted == "":
                continue
            if fdef.length and len(converted) > fdef.length:
                too_long.append((i, converted))
        out[i] = converted
    issues = []
    if bad:
        ids = _pick(labels, (i for i, _ in bad))
        shown = [f"{v!r} ({labels[i]})" for i, v in bad]
        issues.append(error("field.type", f"field {_fname(fdef)} must hold {fdef.type} values; {len(bad)} "
                            f"value(s) cannot be converted: {listing(shown)}", field=fdef.code, count=len(bad),
                            ids=_capped(ids), values=_capped(str(v) for _, v in bad)))
    if too_long:
        ids = _pick(labels, (i for i, _ in too_long))
        longest = max(len(v) for _, v in too_long)
        issues.append(error("field.length", f"field {_fname(fdef)} allows at most {fdef.length} characters; "
                            f"{len(too_long)} value(s) are longer (up to {longest}): {listing(ids)}",
                            field=fdef.code, count=len(too_long), ids=_capped(ids),
                            values=_capped(v for _, v in too_long)))
    return out, issues


def check_required(fdef: FieldDef, values: Sequence[Any], labels: Sequence[str]) -> list[Issue]:
    if not fdef.required:
        return []
    empty = [i for i, v in enumerate(values) if v is None]
    if not empty:
        return []
    ids = _pick(labels, empty)
    return [error("field.null", f"required field {_fname(fdef)} is empty in {len(empty)} feature(s): "
                  f"{listing(ids)}", field=fdef.code, count=len(empty), ids=_capped(ids))]


def check_codes(fdef: FieldDef, values: Sequence[Any], labels: Sequence[str], registry: Registry) -> list[Issue]:
    """Values of a code-list field must be codes of that list."""
    if not fdef.code_list:
        return []
    code_list = registry.code_lists[fdef.code_list]
    unknown: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(values):
        if value is not None and str(value) not in code_list:
            unknown[str(value)].append(i)
    if not unknown:
        return []
    rows = sorted(i for idx in unknown.values() for i in idx)
    ids = _pick(labels, rows)
    codes = list(unknown)
    shown = [f"{c!r} ({listing(_pick(labels, unknown[c]), limit=5)})" for c in codes]
    hints = [c for c in codes if c.isdigit() and "0" + c in code_list]
    hint = (f" Leading zeros lost? With a leading 0 these are codes of the list: "
            f"{listing(['0' + c for c in hints], quote=True)}." if hints else "")
    return [error("code.unknown", f"field {_fname(fdef)} holds {len(codes)} code(s) not in code list "
                  f"{code_list.id} ({code_list.title}): {listing(shown)}.{hint}", field=fdef.code,
                  count=len(rows), ids=_capped(ids), values=_capped(codes))]


def check_bsm_unique(bsm: Sequence[Any], labels: Sequence[str]) -> list[Issue]:
    """BSM (标识码) is unique within a layer: no value may repeat in the file."""
    positions: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(bsm):
        if value is not None:
            positions[str(value)].append(i)
    dups = {v: idx for v, idx in positions.items() if len(idx) > 1}
    if not dups:
        return []
    shown = [f"{v!r} ×{len(idx)} (features {', '.join(f'#{i + 1}' for i in idx[:5])})" for v, idx in dups.items()]
    return [error("bsm.duplicate", f"BSM (标识码) must be unique; {len(dups)} value(s) occur more than once in "
                  f"the file: {listing(shown)}", field="BSM", count=len(dups), ids=_capped(dups),
                  values=_capped(dups))]


def check_bsm_existing(bsm: Sequence[Any], stored: Iterable[str], layer: Layer) -> list[Issue]:
    """Append mode: BSM values already stored in the layer table."""
    taken = sorted(set(stored) & {str(v) for v in bsm if v is not None})
    if not taken:
        return []
    return [error("bsm.duplicate", f"append: {len(taken)} BSM (标识码) value(s) are already stored in layer "
                  f"{layer.id}: {listing(taken, quote=True)}; use --mode replace or give new BSM values",
                  field="BSM", count=len(taken), ids=_capped(taken), values=_capped(taken))]


def check_ysdm(layer: Layer, values: Sequence[Any], labels: Sequence[str]) -> list[Issue]:
    if not layer.ysdm:
        return []
    other = [i for i, v in enumerate(values) if v is not None and str(v) != layer.ysdm]
    if not other:
        return []
    found = sorted({str(values[i]) for i in other})
    return [warning("ysdm.mismatch", f"YSDM (要素代码) of {layer.id} is {layer.ysdm}; {len(other)} feature(s) "
                    f"hold {listing(found, quote=True)} (kept as given)", field="YSDM", count=len(other),
                    ids=_capped(_pick(labels, other)), values=_capped(found))]


# ---- geometries ---------------------------------------------------------------------------------------
def decode_geometries(wkb: Sequence[bytes | None], labels: Sequence[str]) -> tuple[np.ndarray, list[Issue]]:
    """WKB → shapely (2D). Undecodable geometries (curves, garbage) become None and are reported."""
    raw = np.asarray(wkb, dtype=object)
    geoms = shapely.from_wkb(raw, on_invalid="ignore")
    given = np.array([w is not None for w in raw], dtype=bool)
    corrupt = np.flatnonzero(given & shapely.is_missing(geoms))
    geoms = shapely.force_2d(geoms)
    if not len(corrupt):
        return geoms, []
    ids = _pick(labels, corrupt)
    return geoms, [error("geometry.corrupt", f"{len(corrupt)} geometry(ies) cannot be decoded (curved or "
                         f"corrupt geometries; linearise curves first): {listing(ids)}", count=len(corrupt),
                         ids=_capped(ids))]


def check_empty(geoms: np.ndarray, labels: Sequence[str]) -> list[Issue]:
    empty = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not len(empty):
        return []
    ids = _pick(labels, empty)
    return [error("geometry.empty", f"{len(empty)} feature(s) have no geometry (null or empty): {listing(ids)}",
                  count=len(empty), ids=_capped(ids))]


def check_geometry_type(layer: Layer, geoms: np.ndarray, labels: Sequence[str]) -> list[Issue]:
    """Polygon layers take (Multi)Polygon, line layers (Multi)LineString, point layers Point (or a one-point
    MultiPoint)."""
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    type_ids = shapely.get_type_id(geoms)
    accepted = ACCEPTED_GEOMETRY[layer.geometry]
    names = np.array([_TYPE_NAMES.get(int(t), str(t)) for t in type_ids], dtype=object)
    ok = np.isin(names, list(accepted))
    if layer.geometry == "Point":
        ok &= ~((names == "MultiPoint") & (shapely.get_num_geometries(geoms) != 1))
    wrong = np.flatnonzero(present & ~ok)
    if not len(wrong):
        return []
    found = Counter(names[wrong])
    multi = " (MultiPoint with more than one point)" if layer.geometry == "Point" and "MultiPoint" in found else ""
    ids = _pick(labels, wrong)
    return [error("geometry.type", f"layer {layer.id} takes {'/'.join(sorted(accepted))} geometries; "
                  f"{len(wrong)} feature(s) hold "
                  f"{', '.join(f'{t} ×{n}' for t, n in found.most_common())}{multi}: {listing(ids)}",
                  count=len(wrong), ids=_capped(ids), values=_capped(found))]


def keep_dimension(geom: shapely.Geometry, dimension: int) -> shapely.Geometry | None:
    """Only the parts of ``geom`` with the layer's dimension, as a single or multi geometry (or None)."""
    parts = shapely.get_parts(shapely.get_parts(geom))
    parts = [p for p in parts if shapely.get_dimensions(p) == dimension and not p.is_empty]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    return {0: shapely.MultiPoint, 1: shapely.MultiLineString, 2: shapely.MultiPolygon}[dimension](parts)


def check_validity(layer: Layer, geoms: np.ndarray, labels: Sequence[str], *, make_valid: bool = False
                   ) -> tuple[np.ndarray, list[Issue]]:
    """Invalid geometries (GEOS rules) are errors; with ``make_valid`` they are repaired (warning)."""
    present = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    invalid = np.flatnonzero(present & ~shapely.is_valid(geoms))
    if not len(invalid):
        return geoms, []
    reasons = shapely.is_valid_reason(geoms[invalid])
    details = tuple(f"{labels[i]}: {r}" for i, r in zip(invalid[:MAX_LISTED], reasons[:MAX_LISTED], strict=False))
    ids = _pick(labels, invalid)
    if not make_valid:
        return geoms, [error("geometry.invalid", f"{len(invalid)} invalid geometry(ies): "
                             f"{listing([f'{labels[i]} ({r})' for i, r in zip(invalid, reasons, strict=True)], 5)}"
                             "; fix them or load with --make-valid", count=len(invalid), ids=_capped(ids),
                             details=details)]
    fixed = geoms.copy()
    repaired = shapely.make_valid(geoms[invalid])
    dimension = _DIMENSION[layer.geometry]
    lost: list[int] = []
    for i, geom in zip(invalid, repaired, strict=True):
        kept = keep_dimension(geom, dimension)
        if kept is None:
            lost.append(int(i))
        fixed[i] = kept
    issues = [warning("geometry.repaired", f"{len(invalid)} invalid geometry(ies) were repaired by "
                      f"--make-valid (parts of lower dimension dropped): {listing(ids)}", count=len(invalid),
                      ids=_capped(ids), details=details)]
    if lost:
        lost_ids = _pick(labels, lost)
        issues.append(error("geometry.invalid", f"{len(lost)} invalid geometry(ies) cannot be repaired: nothing "
                            f"of the layer's dimension is left: {listing(lost_ids)}", count=len(lost),
                            ids=_capped(lost_ids)))
    return fixed, issues


def normalise_geometries(layer: Layer, geoms: np.ndarray) -> np.ndarray:
    """One-point MultiPoints of point layers become Points (the writer makes polygons/lines Multi)."""
    if layer.geometry != "Point":
        return geoms
    out = geoms.copy()
    multi = np.flatnonzero(shapely.get_type_id(geoms) == 4)
    if len(multi):
        out[multi] = shapely.get_geometry(geoms[multi], 0)
    return out


# ---- all checks on one file ---------------------------------------------------------------------------
@dataclass
class CheckedData:
    """What QC hands to the writer: typed rows and EPSG:4490 geometries (valid only when no errors)."""

    rows: list[dict[str, Any]]
    geometries: np.ndarray
    labels: list[str]
    bsm: list[Any]
    crs: CRS | None
    issues: list[Issue]
    fields: dict[str, str]  # registry code → the file's field name


def run_checks(layer: Layer, registry: Registry, *, field_names: Sequence[str], columns: Sequence[Sequence[Any]],
               wkb: Sequence[bytes | None], declared_crs: str | None, srs: str | None = None,
               make_valid: bool = False, shapefile: bool = False,
               step: Callable[[str], None] | None = None) -> CheckedData:
    """Run every feature-level check; ``step`` is told the name of each stage (progress display)."""
    tick = step or (lambda _name: None)
    n = len(wkb)
    issues: list[Issue] = []
    if n == 0:
        issues.append(error("file.empty", "the file holds no features; nothing to load (an empty replace "
                            "would wipe the layer)"))
    mapping, field_issues = match_fields(layer, field_names, shapefile=shapefile)
    issues += field_issues
    tick("fields")

    values: dict[str, list[Any]] = {}
    bsm_raw = columns[mapping["BSM"]] if "BSM" in mapping else None
    labels = feature_labels(bsm_raw, n)
    for fdef in layer.fields:
        if fdef.code not in mapping:
            continue
        converted, conv_issues = convert_field(fdef, columns[mapping[fdef.code]], labels)
        values[fdef.code] = converted
        issues += conv_issues
        issues += check_required(fdef, converted, labels)
        issues += check_codes(fdef, converted, labels, registry)
        tick(fdef.code)
    bsm = values.get("BSM", [None] * n)
    issues += check_bsm_unique(bsm, labels)
    if "YSDM" in values:
        issues += check_ysdm(layer, values["YSDM"], labels)

    geoms, geom_issues = decode_geometries(wkb, labels)
    issues += geom_issues
    issues += check_empty(geoms, labels)
    issues += check_geometry_type(layer, geoms, labels)
    type_ok = not any(i.check == "geometry.type" for i in issues)
    if type_ok:
        geoms, valid_issues = check_validity(layer, geoms, labels, make_valid=make_valid)
        issues += valid_issues
        geoms = normalise_geometries(layer, geoms)
    tick("geometry")

    crs, crs_issues = resolve_crs(declared_crs, srs)
    issues += crs_issues
    stored = geoms
    if crs is not None:
        transformer, tr_issues = to_storage_transformer(crs)
        issues += tr_issues
        if not any(i.severity == "error" for i in tr_issues):
            stored = transform_geometries(geoms, transformer)
            issues += check_crs_fit(crs, geoms, stored, labels)
    tick("crs")

    rows = [{code: column[i] for code, column in values.items()} for i in range(n)]
    fields = {code: str(field_names[i]) for code, i in mapping.items()}
    return CheckedData(rows, stored, labels, bsm, crs, issues, fields)


def field_names_zh(layer: Layer) -> dict[str, str]:
    return {f.code: f.name_zh for f in layer.fields}

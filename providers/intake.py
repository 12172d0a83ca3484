"""Data intake (``lantu load``): read a GIS file, run QC, and load it into a layer — all or nothing.

Reads GeoPackage, Shapefile (plain or zipped) and GeoJSON through pyogrio, runs every check of
:mod:`lantu.providers.qc` before anything is written, writes the QC report (JSON and readable text) and —
only when no check found an error — transforms the geometries to EPSG:4490 (x = lon) and writes them
with :func:`lantu.providers.writer.write_features` in one transaction (which also records the load in
``lantu.change_log``). A refused or failed load leaves the layer exactly as it was.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
from psycopg2 import sql
from pyogrio import raw as ogr_raw
from pyproj import CRS
from pyproj.exceptions import CRSError
from tqdm import tqdm

from lantu.config.registry import Layer, Registry
from lantu.providers import qc, writer
from lantu.providers.pool import Pool
from lantu.providers.tables import table_id

MODES = ("replace", "append")
PROGRESS_THRESHOLD = 10_000  # features above which a progress bar is shown (unless progress=False)
READ_CHUNK = 50_000
_CHUNKABLE = {"GPKG", "ESRI Shapefile"}  # drivers with cheap random access (GeoJSON re-parses per open)
_INNER_SUFFIXES = (".shp", ".gpkg", ".geojson", ".json")


class IntakeError(Exception):
    """Base of intake failures; ``str()`` is a one-line reason (the CLI prints it and exits 1)."""


class IntakeUsageError(IntakeError, ValueError):
    """A bad parameter (layer id, mode, srs, file path); the message names the parameter."""


class IntakeRefused(IntakeError):
    """QC found errors: nothing was written. ``report`` holds every issue, ``report_paths`` where it is."""

    def __init__(self, report: qc.QcReport, report_paths: tuple[Path, Path] | None = None):
        self.report = report
        self.report_paths = report_paths
        where = f"; report: {report_paths[1]}" if report_paths else ""
        super().__init__(f"QC refused {report.source} for layer {report.layer}, nothing written: "
                         f"{report.summary()}{where}")


class IntakeFailed(IntakeError):
    """QC passed but the database write failed; the transaction was rolled back, nothing was written."""

    def __init__(self, report: qc.QcReport, cause: BaseException, report_paths: tuple[Path, Path] | None = None):
        self.report = report
        self.report_paths = report_paths
        reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        where = f"; report: {report_paths[1]}" if report_paths else ""
        super().__init__(f"loading {report.source} into {report.layer} failed, nothing written: {reason}{where}")


@dataclass(frozen=True)
class IntakeResult:
    layer: str
    mode: str
    features: int
    inserted: int
    deleted: int
    change_id: int
    bbox: tuple[float, float, float, float] | None
    report: qc.QcReport
    report_json: Path
    report_text: Path

    def __str__(self) -> str:
        warn = f", {len(self.report.warnings)} warning(s)" if self.report.warnings else ""
        return (f"loaded {self.features} feature(s) into {self.layer} ({self.report.layer_name_zh}), mode "
                f"{self.mode}: {self.inserted} inserted, {self.deleted} deleted; change {self.change_id}{warn}; "
                f"report {self.report_text}")


@dataclass
class FileData:
    """One layer of a file as read by pyogrio."""

    gdal_path: str
    driver: str
    layer_name: str
    crs: str | None
    geometry_type: str | None
    field_names: list[str]
    columns: list[Sequence[Any]]
    wkb: list[bytes | None]
    declared_count: int
    encoding: str | None


# ---- parameters ---------------------------------------------------------------------------------------
def _check_parameters(registry: Registry, layer_id: str, mode: str, srs: str | None, path: Path) -> Layer:
    layer = registry.get(layer_id)
    if layer is None:
        close = [lid for lid in registry.layers if layer_id and (layer_id in lid or lid in layer_id)][:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `lantu layers list`)"
        raise IntakeUsageError(f"--layer: unknown layer id {layer_id!r}{hint}")
    if not layer.is_vector:
        raise IntakeUsageError(f"--layer: {layer_id} is a {layer.kind} layer ({layer.name_zh}); only vector "
                               "layers can be loaded from a GIS file")
    if mode not in MODES:
        raise IntakeUsageError(f"--mode must be replace or append, not {mode!r}")
    if srs is not None:
        try:
            CRS.from_user_input(srs)
        except CRSError as exc:
            raise IntakeUsageError(f"--srs: {srs!r} is not a CRS PROJ knows (use e.g. EPSG:4490): {exc}") from exc
    if not path.exists():
        raise IntakeUsageError(f"FILE: {path} does not exist")
    if path.is_dir():
        raise IntakeUsageError(f"FILE: {path} is a directory; give the .gpkg, .shp, .zip or .geojson file")
    return layer


# ---- reading ------------------------------------------------------------------------------------------
def _head(path: Path, n: int = 512) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _tail(path: Path, n: int = 64) -> bytes:
    with path.open("rb") as fh:
        size = fh.seek(0, 2)
        fh.seek(max(0, size - n))
        return fh.read()


def _shapefile_siblings(shp: Path) -> list[qc.Issue]:
    issues: list[qc.Issue] = []
    siblings = {p.suffix.lower(): p for p in shp.parent.glob(shp.stem + ".*")}
    for ext in (".shp", ".shx", ".dbf"):
        part = siblings.get(ext)
        if part is None:
            if ext != ".shp":
                issues.append(qc.error("file.unreadable", f"{shp.name}: the shapefile's {ext} part is missing "
                                       f"(a shapefile needs .shp, .shx and .dbf, and .prj for its CRS)"))
            continue
        issues += qc.check_shapefile_part(part.name, _head(part, 100), part.stat().st_size)
    return issues


def _zip_target(path: Path, layer_id: str) -> tuple[str | None, list[qc.Issue]]:
    """The GDAL path of the GIS file inside a zip (shapefile, GeoPackage or GeoJSON)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir() and "__MACOSX" not in i.filename]
            targets = [i for i in infos if i.filename.lower().endswith(_INNER_SUFFIXES)]
            if not targets:
                names = qc.listing([i.filename for i in infos]) or "nothing"
                return None, [qc.error("file.unreadable", f"{path.name} holds no .shp, .gpkg or .geojson file "
                                       f"(it holds {names})")]
            if len(targets) > 1:
                named = [i for i in targets if Path(i.filename).stem.lower() == layer_id.lower()]
                if len(named) != 1:
                    names = [i.filename for i in targets]
                    return None, [qc.error("file.layers", f"{path.name} holds {len(targets)} GIS files and none "
                                           f"is named {layer_id!r}: {qc.listing(names)}; name the one to load "
                                           f"{layer_id}.shp (or zip it alone)", values=qc._capped(names),
                                           count=len(names))]
                targets = named
            target = targets[0]
            issues: list[qc.Issue] = []
            if target.filename.lower().endswith(".shp"):
                stem = target.filename[:-4]
                parts = {i.filename[len(stem):].lower(): i for i in infos if i.filename.startswith(stem)
                         and len(i.filename) == len(stem) + 4}
                for ext in (".shp", ".shx", ".dbf"):
                    info = parts.get(ext)
                    if info is None:
                        issues.append(qc.error("file.unreadable", f"{path.name}: the shapefile's {ext} part "
                                               f"({Path(stem).name}{ext}) is missing from the zip"))
                        continue
                    with zf.open(info) as fh:
                        head = fh.read(100)
                    issues += qc.check_shapefile_part(info.filename, head, info.file_size)
            elif target.filename.lower().endswith(".gpkg"):
                with zf.open(target) as fh:
                    head = fh.read(100)
                issues += qc.check_sqlite_size(target.filename, head, target.file_size)
    except zipfile.BadZipFile as exc:
        return None, [qc.error("file.truncated", f"{path.name} is a damaged or truncated zip archive ({exc})")]
    return f"/vsizip/{path.resolve()}/{target.filename}", issues


def _locate(path: Path, layer_id: str) -> tuple[str | None, list[qc.Issue]]:
    """File-level checks that need no GDAL; returns the path to give GDAL (None when unreadable)."""
    head = _head(path)
    issues = qc.check_suffix(path.name, head)
    if issues:
        return None, issues
    suffix = path.suffix.lower()
    if suffix == ".zip":
        return _zip_target(path, layer_id)
    if suffix == ".gpkg":
        issues = qc.check_sqlite_size(path.name, head, path.stat().st_size)
    elif suffix == ".shp":
        issues = _shapefile_siblings(path)
    else:
        issues = qc.check_json_complete(path.name, _tail(path))
    return (None if any(i.severity == "error" for i in issues) else str(path)), issues


def _read_layer(gdal_path: str, name: str, layer_id: str, show_progress: bool | None
                ) -> tuple[FileData | None, list[qc.Issue]]:
    try:
        listed = pyogrio.list_layers(gdal_path)
        layer_name, issues = qc.choose_layer(name, [(str(n), g) for n, g in listed], layer_id)
        if layer_name is None:
            return None, issues
        info = pyogrio.read_info(gdal_path, layer=layer_name)
        if info["driver"] not in ("GPKG", "ESRI Shapefile", "GeoJSON"):
            return None, [qc.error("file.unreadable", f"{name} is read by GDAL's {info['driver']} driver; Lantu "
                                   "loads GeoPackage, Shapefile and GeoJSON only")]
        declared = int(info.get("features", -1))
        show = declared > PROGRESS_THRESHOLD if show_progress is None else bool(show_progress)
        chunked = info["driver"] in _CHUNKABLE and declared > READ_CHUNK
        columns: list[list[Any]] = [[] for _ in info["fields"]]
        wkb: list[bytes | None] = []
        with tqdm(total=max(declared, 0), desc=f"reading {name}", unit="feat", disable=not show,
                  leave=False) as bar:
            offset = 0
            while True:
                kwargs = {"skip_features": offset, "max_features": READ_CHUNK} if chunked else {}
                meta, _fids, geometry, field_data = ogr_raw.read(gdal_path, layer=layer_name, **kwargs)
                got = len(geometry) if geometry is not None else (len(field_data[0]) if field_data else 0)
                wkb.extend(list(geometry) if geometry is not None else [None] * got)
                for col, data in zip(columns, field_data, strict=True):
                    col.extend(data.tolist() if isinstance(data, np.ndarray) else list(data))
                bar.update(got)
                offset += got
                if not chunked or got < READ_CHUNK:
                    break
    except (RuntimeError, ValueError, OSError) as exc:  # pyogrio's errors are RuntimeErrors
        return None, [qc.gdal_unreadable(name, exc)]
    if declared >= 0 and len(wkb) < declared:
        issues.append(qc.error("file.truncated", f"{name} is truncated or corrupt: it declares {declared} "
                               f"features but only {len(wkb)} could be read"))
    data = FileData(gdal_path, info["driver"], layer_name, info.get("crs"), info.get("geometry_type"),
                    [str(f) for f in info["fields"]], columns, wkb, declared, info.get("encoding"))
    issues += _redecode_dbf_text(data, name)
    return data, issues


def _redecode_dbf_text(data: FileData, name: str) -> list[qc.Issue]:
    """A shapefile without .cpg whose .dbf declares no code page is read as ISO-8859-1 by GDAL; Chinese
    shapefiles like that are UTF-8 or GBK. Re-decode the text (UTF-8 first, then GB18030) and say so."""
    if data.driver != "ESRI Shapefile" or (data.encoding or "").upper() not in ("ISO-8859-1", "LATIN1", "CP1252"):
        return []
    texts = [v for col in data.columns for v in col if isinstance(v, str) and not v.isascii()]
    texts += [f for f in data.field_names if not f.isascii()]
    if not texts:
        return []
    for codec, label in (("utf-8", "UTF-8"), ("gb18030", "GBK/GB18030")):
        try:
            for text in texts:
                text.encode("latin-1").decode(codec)
        except (UnicodeEncodeError, UnicodeDecodeError):
            continue

        def fix(value: Any, codec: str = codec) -> Any:
            return value.encode("latin-1").decode(codec) if isinstance(value, str) and not value.isascii() else value

        data.columns = [[fix(v) for v in col] for col in data.columns]
        data.field_names = [fix(f) for f in data.field_names]
        data.encoding = label
        return [qc.warning("file.encoding", f"{name}: the shapefile has no .cpg and its .dbf declares no code "
                           f"page; its text was decoded as {label}. Add a .cpg file (containing {label.split('/')[0]}) "
                           "to make this explicit")]
    return [qc.warning("file.encoding", f"{name}: the shapefile has no .cpg and its text is neither UTF-8 nor GBK; "
                       "it was read as ISO-8859-1 and Chinese text may be garbled — add a .cpg file")]


# ---- reports ------------------------------------------------------------------------------------------
def _report_paths(report_path: Path | str | None, reports_dir: Path | str | None, layer_id: str) -> tuple[Path, Path]:
    if report_path:
        base = Path(report_path)
        if base.is_dir():
            base = base / _report_name(layer_id)
        elif base.suffix.lower() in (".json", ".txt"):
            base = base.with_suffix("")
    else:
        if reports_dir is None:
            from lantu.config.settings import load_settings

            reports_dir = load_settings().home / "reports"
        base = Path(reports_dir) / _report_name(layer_id)
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".txt")


def _report_name(layer_id: str) -> str:
    return f"intake-{layer_id}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"


def write_report(report: qc.QcReport, paths: tuple[Path, Path]) -> tuple[Path, Path]:
    json_path, text_path = paths
    json_path.parent.mkdir(parents=True, exist_ok=True)
    text_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(report.to_json() + "\n", "utf-8")
    text_path.write_text(report.to_text(), "utf-8")
    return paths


# ---- database -----------------------------------------------------------------------------------------
def _stored_bsm(pool: Pool, layer: Layer, bsm: Sequence[Any]) -> list[str]:
    values = sorted({str(v) for v in bsm if v is not None})
    if not values:
        return []
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT bsm FROM {} WHERE bsm = ANY(%s)").format(table_id(layer)), (values,))
        return [row[0] for row in cur.fetchall()]


# ---- the intake ---------------------------------------------------------------------------------------
def check_file(registry: Registry, path: Path | str, layer_id: str, *, mode: str = "replace",
               srs: str | None = None, make_valid: bool = False, progress: bool | None = None,
               stored_bsm: Callable[[Sequence[Any]], Sequence[str]] | None = None
               ) -> tuple[qc.QcReport, qc.CheckedData | None]:
    """Read and check a file without writing anything (``stored_bsm`` looks up BSMs already stored)."""
    path = Path(path).absolute()
    layer = _check_parameters(registry, layer_id, mode, srs, path)
    report = qc.QcReport(layer.id, layer.name_zh, str(path), mode, options={"srs": srs, "make_valid": make_valid},
                         field_names=qc.field_names_zh(layer))
    gdal_path, issues = _locate(path, layer.id)
    report.add(issues)
    if gdal_path is None:
        return report, None
    data, issues = _read_layer(gdal_path, path.name, layer.id, progress)
    report.add(issues)
    if data is None:
        return report, None
    report.features = len(data.wkb)
    report.file = {"driver": data.driver, "layer_name": data.layer_name, "crs": data.crs,
                   "geometry_type": data.geometry_type, "declared_features": data.declared_count,
                   "encoding": data.encoding, "fields": data.field_names}
    show = len(data.wkb) > PROGRESS_THRESHOLD if progress is None else bool(progress)
    with tqdm(total=len(layer.fields) + 3, desc="checking", unit="step", disable=not show, leave=False) as bar:
        checked = qc.run_checks(layer, registry, field_names=data.field_names, columns=data.columns, wkb=data.wkb,
                                declared_crs=data.crs, srs=srs, make_valid=make_valid,
                                shapefile=data.driver == "ESRI Shapefile", step=lambda _name: bar.update(1))
    report.add(checked.issues)
    report.file["field_mapping"] = checked.fields
    if checked.crs is not None:
        report.file["crs_used"] = qc.crs_label(checked.crs)
    if mode == "append" and stored_bsm is not None:
        report.add(qc.check_bsm_existing(checked.bsm, stored_bsm(checked.bsm), layer))
    return report, checked


def run_intake(pool: Pool, registry: Registry, path: Path | str, layer_id: str, *, mode: str = "replace",
               srs: str | None = None, make_valid: bool = False, who: str = "lantu load",
               report_path: Path | str | None = None, reports_dir: Path | str | None = None,
               progress: bool | None = None) -> IntakeResult:
    """Check ``path`` and load it into ``layer_id`` in one transaction, or raise and write nothing.

    Raises :class:`IntakeUsageError` for bad parameters (before anything is read), :class:`IntakeRefused`
    when QC finds errors (report written, database untouched) and :class:`IntakeFailed` when the write
    itself fails (rolled back). ``progress``: None = a bar above 10 000 features, True/False = always/never.
    """
    path = Path(path).absolute()
    layer = _check_parameters(registry, layer_id, mode, srs, path)
    paths = _report_paths(report_path, reports_dir, layer.id)
    report, checked = check_file(registry, path, layer.id, mode=mode, srs=srs, make_valid=make_valid,
                                 progress=progress, stored_bsm=lambda bsm: _stored_bsm(pool, layer, bsm))
    if not report.ok or checked is None:
        report.status = "refused"
        write_report(report, paths)
        raise IntakeRefused(report, paths)
    details = {"report": str(paths[0]), "features": report.features, "crs": report.file.get("crs_used"),
               "make_valid": make_valid, "warnings": report.checks("warning")}
    try:
        with pool.connection() as conn:
            result = writer.write_features(conn, layer, checked.rows, checked.geometries, mode=mode, who=who,
                                           source=str(path), details=details)
            writer.analyze(conn, layer)
    except Exception as exc:
        report.status = "failed"
        report.result = {"error": (str(exc).strip().splitlines() or [type(exc).__name__])[0]}
        write_report(report, paths)
        raise IntakeFailed(report, exc, paths) from exc
    report.status = "loaded"
    report.result = {"inserted": result.inserted, "deleted": result.deleted, "change_id": result.change_id,
                     "bbox": list(result.bbox) if result.bbox else None}
    write_report(report, paths)
    return IntakeResult(layer.id, mode, report.features, result.inserted, result.deleted, result.change_id,
                        result.bbox, report, *paths)


def read_gis_file(path: Path | str, name: str = "site") -> tuple[list[bytes | None], str | None, list[str]]:
    """A small GIS file (an uploaded project site) read with the loader's own file checks: its geometries
    as WKB, its CRS as ``EPSG:n`` (None when it has none) and the loader's error messages, if any."""
    path = Path(path)
    gdal_path, issues = _locate(path, name)
    data = None
    if gdal_path is not None:
        data, more = _read_layer(gdal_path, path.name, name, show_progress=False)
        issues = [*issues, *more]
    problems = [i.message for i in issues if i.severity == "error"]
    if data is None or problems:
        return [], None, problems or [f"{path.name} could not be read"]
    epsg = None
    if data.crs:
        from pyproj import CRS

        code = CRS.from_user_input(data.crs).to_epsg()
        epsg = f"EPSG:{code}" if code else data.crs
    return data.wkb, epsg, []

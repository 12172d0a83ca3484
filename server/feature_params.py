"""Query parameters of ``/collections/{id}/items`` → an ``ItemsQuery`` (OGC API – Features Parts 1–3).

Each bad value raises ``InvalidParameter`` naming the parameter; nothing reaches SQL unchecked.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping

from psycopg2 import sql

from lantu.config.settings import Settings
from lantu.providers import crs as crs_mod
from lantu.providers.cql2sql import FilterError, Queryable, compile_filter
from lantu.providers.features import FeatureSource, ItemsQuery, Property, Where
from lantu.server.errors import InvalidParameter

# Parameters the items endpoint defines; anything else that is not a queryable is a 400
# (/req/core/query-param-unknown).
ITEMS_PARAMS = {"f", "limit", "offset", "bbox", "bbox-crs", "datetime", "properties", "sortby", "crs", "filter",
                "filter-lang", "filter-crs", "skipGeometry", "lang"}
ITEM_PARAMS = {"f", "crs", "properties", "lang"}
FILTER_LANGS = ("cql2-text", "cql2-json")


def parse_int(name: str, raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    if not re.fullmatch(r"\+?\d{1,12}", raw.strip()):
        raise InvalidParameter(f"{name} must be a whole number between {low} and {high}, not {raw[:40]!r}",
                               locator=name)
    value = int(raw)
    if not low <= value <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, not {value}", locator=name)
    return value


def parse_crs(name: str, raw: str | None, default: crs_mod.OutputCrs = crs_mod.CRS84) -> crs_mod.OutputCrs:
    if raw is None:
        return default
    resolved = crs_mod.resolve(raw)
    if resolved is None:
        raise InvalidParameter(f"{name} {raw[:80]!r} is not offered; use one of the collection's `crs` list "
                               f"(CRS84, EPSG 4490, 4326, 3857, 4513–4554)", locator=name)
    return resolved


def parse_bbox(raw: str, bbox_crs: crs_mod.OutputCrs, src: FeatureSource) -> Where:
    parts = raw.split(",")
    try:
        numbers = [float(p) for p in parts]
    except ValueError:
        raise InvalidParameter("bbox must be 4 or 6 comma-separated numbers", locator="bbox") from None
    if len(numbers) not in (4, 6) or not all(math.isfinite(n) for n in numbers):
        raise InvalidParameter(f"bbox must be 4 or 6 finite numbers, got {len(numbers)}", locator="bbox")
    if len(numbers) == 6:  # 3D box: the heights are not used for 2D data
        numbers = [numbers[0], numbers[1], numbers[3], numbers[4]]
    a1, b1, a2, b2 = numbers
    if bbox_crs.swap_axes:  # EPSG order: lat/lon or north/east
        a1, b1, a2, b2 = b1, a1, b2, a2
    if b1 > b2 or (not bbox_crs.is_geographic and a1 > a2):
        raise InvalidParameter("bbox lower corner must not be above or right of the upper corner", locator="bbox")
    if bbox_crs.is_geographic and not (-90 <= b1 <= 90 and -90 <= b2 <= 90):
        raise InvalidParameter("bbox latitude outside -90..90 (for EPSG:4490 and 4326 the order is lat,lon)",
                               locator="bbox")
    if not src.spatial:
        raise InvalidParameter(f"bbox: {src.id} has no geometry (a non-spatial collection)", locator="bbox")
    geom = sql.Identifier(src.geometry_column)
    if bbox_crs.is_geographic:
        envelope = sql.SQL("ST_MakeEnvelope(%s, %s, %s, %s, {})").format(sql.Literal(src.srid))
        return Where(sql.SQL("{} && {env} AND ST_Intersects({}, {env})").format(geom, geom, env=envelope),
                     (a1, b1, a2, b2) * 2)
    # Projected bbox: its edges are straight in that CRS, so densify before transforming to storage.
    envelope = sql.SQL("ST_Transform(ST_Segmentize(ST_MakeEnvelope(%s, %s, %s, %s, {}), %s), {})").format(
        sql.Literal(bbox_crs.srid), sql.Literal(src.srid))
    step = max(a2 - a1, b2 - b1) / 32 or 1.0
    return Where(sql.SQL("ST_Intersects({}, {})").format(geom, envelope), (a1, b1, a2, b2, step))


def _instant(text: str, end: bool) -> dt.datetime | None:
    if text in ("..", ""):
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
            return moment.replace(tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidParameter(f"datetime {text[:40]!r} is not an RFC 3339 date or date-time",
                               locator="datetime") from None


def parse_datetime(raw: str, src: FeatureSource) -> Where | None:
    parts = raw.split("/")
    if len(parts) > 2 or raw.strip() in ("", "/", "../.."):
        if raw.strip() == "../..":
            return None  # fully open interval: every feature
        raise InvalidParameter("datetime must be an instant or an interval start/end ('..' for open)",
                               locator="datetime")
    start = _instant(parts[0], end=False)
    stop = _instant(parts[1], end=True) if len(parts) == 2 else _instant(parts[0], end=True)
    if start and stop and start > stop:
        raise InvalidParameter("datetime interval ends before it starts", locator="datetime")
    if src.time_property is None:
        return None  # the collection has no temporal property: datetime selects everything (Part 1, 7.15.4)
    column = sql.Identifier(src.by_name[src.time_property].column)
    clauses, params = [], []
    if start:
        clauses.append(sql.SQL("{} >= %s").format(column))
        params.append(start.date() if len(parts) == 2 or len(parts[0]) == 10 else start)
    if stop:
        clauses.append(sql.SQL("{} <= %s").format(column))
        params.append(stop.date() if len(parts) == 2 or len(parts[0]) == 10 else stop)
    return Where(sql.SQL(" AND ").join(clauses), tuple(params))


def parse_property_list(name: str, raw: str, src: FeatureSource) -> tuple[Property, ...]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n not in src.by_name]
    if unknown:
        raise InvalidParameter(f"{name}: unknown propert{'y' if len(unknown) == 1 else 'ies'} "
                               f"{', '.join(repr(u[:40]) for u in unknown[:5])}; see /collections/{src.id}/queryables",
                               locator=name)
    return tuple(src.by_name[n] for n in dict.fromkeys(names))


def parse_sortby(raw: str, src: FeatureSource) -> tuple[tuple[Property, bool], ...]:
    keys = []
    for token in (t.strip() for t in raw.split(",")):
        if not token:
            continue
        ascending = not token.startswith("-")
        name = token.lstrip("+-").strip()
        if name.upper().endswith((" ASC", " DESC")):  # "NAME DESC" form
            name, direction = name.rsplit(" ", 1)
            ascending = direction.upper() == "ASC"
        if name not in src.by_name:
            raise InvalidParameter(f"sortby: unknown property {name[:40]!r}; see /collections/{src.id}/queryables",
                                   locator="sortby")
        keys.append((src.by_name[name], ascending))
    return tuple(keys)


def queryables_of(src: FeatureSource) -> dict[str, Queryable]:
    found = {p.name: Queryable(p.name, p.column, p.type) for p in src.properties}
    if src.spatial:
        found["geometry"] = Queryable("geometry", src.geometry_column, "geometry")
    return found


def parse_filter(args: Mapping[str, str], src: FeatureSource, unaccent: str | None = None) -> Where | None:
    text = args.get("filter")
    lang = args.get("filter-lang", "cql2-text")
    if lang not in FILTER_LANGS:
        raise InvalidParameter(f"filter-lang must be cql2-text or cql2-json, not {lang[:40]!r}", locator="filter-lang")
    filter_crs = parse_crs("filter-crs", args.get("filter-crs"))
    if text is None:
        if "filter-crs" in args or "filter-lang" in args:
            raise InvalidParameter("filter-lang / filter-crs given without filter", locator="filter")
        return None
    try:
        clause, params = compile_filter(text, lang, queryables_of(src), filter_crs=filter_crs.srid,
                                        filter_crs_latlon=filter_crs.swap_axes, storage_srid=src.srid,
                                        unaccent_function=unaccent)
    except FilterError as exc:
        raise InvalidParameter(f"filter: {exc}", locator="filter") from None
    return Where(clause, tuple(params))


def parse_items_query(args: Mapping[str, str], src: FeatureSource, settings: Settings,
                      unaccent: str | None = None) -> ItemsQuery:
    unknown = [k for k in args if k not in ITEMS_PARAMS and k not in src.by_name]
    if unknown:
        raise InvalidParameter(f"unknown query parameter {unknown[0][:40]!r}", locator=unknown[0][:40])
    where: list[Where] = []
    if args.get("bbox") is not None:
        where.append(parse_bbox(args["bbox"], parse_crs("bbox-crs", args.get("bbox-crs")), src))
    elif "bbox-crs" in args:
        parse_crs("bbox-crs", args.get("bbox-crs"))
    if args.get("datetime") is not None:
        condition = parse_datetime(args["datetime"], src)
        if condition:
            where.append(condition)
    for name in (k for k in args if k in src.by_name):  # property=value (Part 1, 7.15.5)
        where.append(Where(sql.SQL("{}::text = %s").format(sql.Identifier(src.by_name[name].column)), (args[name],)))
    condition = parse_filter(args, src, unaccent)
    if condition:
        where.append(condition)
    skip = args.get("skipGeometry", "false").lower()
    if skip not in ("true", "false"):
        raise InvalidParameter("skipGeometry must be true or false", locator="skipGeometry")
    return ItemsQuery(
        limit=parse_int("limit", args.get("limit"), settings.default_limit, 1, settings.max_limit),
        offset=parse_int("offset", args.get("offset"), 0, 0, 10**12),
        where=tuple(where),
        sortby=parse_sortby(args["sortby"], src) if args.get("sortby") else (),
        properties=parse_property_list("properties", args["properties"], src) if "properties" in args else None,
        crs=parse_crs("crs", args.get("crs")),
        skip_geometry=skip == "true")

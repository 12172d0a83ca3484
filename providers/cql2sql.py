"""CQL2 (OGC 21-065, OGC API – Features Part 3) filters → a PostgreSQL/PostGIS ``WHERE`` condition.

Parsing is pygeofilter's: its cql2-text Lark grammar and transformer, its cql2-json walker and its AST. This
module only *translates* that AST into a :class:`psycopg2.sql.Composed` plus a list of parameters:

* identifiers come only from the collection's :class:`Queryable` mapping, through ``sql.Identifier``;
* every value from the request — strings, numbers, booleans, dates, timestamps, LIKE patterns, IN lists,
  geometries (as WKB) and even the SRIDs — is a ``%s`` placeholder with its value in the parameter list.
  Nothing from the request is ever pasted into the SQL text.

pygeofilter 0.4.0 (the newest release) does not cover all of CQL2 1.0, so the text grammar is pygeofilter's
own ``grammar.lark`` with a small overlay of ``%override``/``%extend`` rules (see ``_GRAMMAR_OVERLAY``) and the
JSON tree is normalised before pygeofilter's walker sees it (see ``_json_prepare``). Each addition is listed
there with the CQL2 construct it is for; everything else is pygeofilter unchanged.

Semantics worth knowing:

* String ordering (``<``, ``<=``, ``>``, ``>=``, BETWEEN) uses ``COLLATE "C"`` (code-point order), which is
  what the CQL2 abstract test suite expects (e.g. ``NAME>='Luxembourg'`` → 84 countries) and does not depend
  on the database's default locale. ``=``/``<>``/IN/LIKE use the column's own (deterministic) collation.
* CASEI → ``lower()``; ACCENTI → the ``unaccent`` extension's function, only when the caller passes its name
  (see :func:`detect_unaccent`); without it ACCENTI is a :class:`FilterError` ("not supported").
* LIKE uses CQL2's wildcards ``%`` and ``_`` with ``\\`` as the escape character.
* ``/`` is real division, ``div`` integer division (truncating), ``%`` modulo, ``^`` power. A literal zero
  divisor is a FilterError; a zero coming from the data yields NULL (the row does not match).
* Geometry literals are in ``filter_crs`` (an EPSG code; 4326 with lon/lat meaning = CRS84 by default); with
  ``filter_crs_latlon=True`` their axes are swapped with ``ST_FlipCoordinates``. They are transformed to
  ``storage_srid`` with ``ST_Transform(geom, <int>)`` and the stored column is the first argument of the
  PostGIS predicate, so GiST indexes apply. A BBOX whose west edge is east of its east edge (in a geographic
  filter CRS) wraps across the antimeridian.
* Temporal operands are instants (a date/timestamp property or literal) or intervals (``INTERVAL(a, b)``,
  bounds being literals, ``'..'`` for an open end, or properties). The T_* functions follow CQL2's table
  (Allen's interval algebra); open ends are ±infinity.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, ClassVar

import lark
from psycopg2 import sql
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as _pgf_json_parse
from pygeofilter.parsers.cql2_text import parser as _pgf_text

__all__ = ["Queryable", "FilterError", "compile_filter", "parse_filter", "detect_unaccent", "QUERYABLE_TYPES"]

QUERYABLE_TYPES = ("string", "integer", "number", "boolean", "date", "timestamp", "geometry")
MAX_FILTER_LENGTH = 256 * 1024


@dataclass(frozen=True)
class Queryable:
    """One filterable property of a collection."""

    name: str  # the name clients use (e.g. "NAME", "DLBM", "pop_est")
    column: str  # the table column
    type: str  # one of QUERYABLE_TYPES

    def __post_init__(self):
        if self.type not in QUERYABLE_TYPES:
            raise ValueError(f"queryable {self.name!r}: type {self.type!r} is not one of {QUERYABLE_TYPES}")


class FilterError(ValueError):
    """The filter is malformed, uses something unsupported or does not fit the queryables (HTTP 400)."""


# --------------------------------------------------------------------------------------------------------------
# AST nodes pygeofilter 0.4.0 lacks (CQL2 1.0 names; pygeofilter maps T_INTERSECTS to TimeOverlaps, which is a
# different relation, and has no T_DISJOINT, ^, % or div).


@dataclass
class TimeIntersects(ast.TemporalPredicate):
    op: ClassVar[str] = "T_INTERSECTS"


@dataclass
class Power(ast.Arithmetic):
    op: ClassVar[str] = "^"


@dataclass
class Modulo(ast.Arithmetic):
    op: ClassVar[str] = "%"


@dataclass
class IntDiv(ast.Arithmetic):
    op: ClassVar[str] = "div"


@dataclass
class IntervalExpr(ast.Node):
    """INTERVAL(start, end): each bound a date/timestamp string, '..', a date/datetime or a property."""

    start: Any
    end: Any

    def get_sub_nodes(self):
        return [self.start, self.end]

    def get_template(self):
        return "INTERVAL({}, {})"


@dataclass
class BBoxLiteral(ast.Node):
    """A CQL2 BBOX literal: 4 (2D) or 6 (3D) numbers, west, south, [min z,] east, north, [max z]."""

    coords: list

    def get_template(self):
        return f"BBOX({self.coords})"


TEMPORAL_FUNCTIONS: dict[str, type[ast.TemporalPredicate]] = {
    "t_after": ast.TimeAfter,
    "t_before": ast.TimeBefore,
    "t_contains": ast.TimeContains,
    "t_disjoint": ast.TimeDisjoint,
    "t_during": ast.TimeDuring,
    "t_equals": ast.TimeEquals,
    "t_finishedby": ast.TimeEndedBy,
    "t_finishes": ast.TimeEnds,
    "t_intersects": TimeIntersects,
    "t_meets": ast.TimeMeets,
    "t_metby": ast.TimeMetBy,
    "t_overlappedby": ast.TimeOverlappedBy,
    "t_overlaps": ast.TimeOverlaps,
    "t_startedby": ast.TimeBegunBy,
    "t_starts": ast.TimeBegins,
    # pre-1.0 names still in pygeofilter's grammar
    "t_begins": ast.TimeBegins,
    "t_begunby": ast.TimeBegunBy,
    "t_ends": ast.TimeEnds,
    "t_endedby": ast.TimeEndedBy,
}
SPATIAL_FUNCTIONS: dict[str, type[ast.SpatialComparisonPredicate]] = {
    "s_intersects": ast.GeometryIntersects,
    "s_equals": ast.GeometryEquals,
    "s_disjoint": ast.GeometryDisjoint,
    "s_touches": ast.GeometryTouches,
    "s_within": ast.GeometryWithin,
    "s_overlaps": ast.GeometryOverlaps,
    "s_crosses": ast.GeometryCrosses,
    "s_contains": ast.GeometryContains,
}
ARRAY_FUNCTIONS = ("a_equals", "a_contains", "a_containedby", "a_overlaps")

# --------------------------------------------------------------------------------------------------------------
# cql2-text: pygeofilter's grammar + overlay, pygeofilter's transformer + the callbacks the overlay needs.

_GRAMMAR_OVERLAY = r"""
// NOT applies to a parenthesised boolean expression, not only to a single predicate
// (CQL2: booleanFactor = ["NOT"] booleanPrimary; booleanPrimary = ... | "(" booleanExpression ")").
%override ?condition_1: predicate
            | "NOT"i predicate                                         -> not_
            | "NOT"i "(" condition ")"                                 -> not_
            | "(" condition ")"

// CQL2 1.0 temporal functions are called like functions: T_AFTER(a, b) (pygeofilter only has `a T_AFTER b`).
%extend ?temporal_predicate: _temporal_function "(" expression "," expression ")" -> prefix_temporal_predicate
!_temporal_function: "T_AFTER"i | "T_BEFORE"i | "T_CONTAINS"i | "T_DISJOINT"i | "T_DURING"i | "T_EQUALS"i
                   | "T_FINISHEDBY"i | "T_FINISHES"i | "T_INTERSECTS"i | "T_MEETS"i | "T_METBY"i
                   | "T_OVERLAPPEDBY"i | "T_OVERLAPS"i | "T_STARTEDBY"i | "T_STARTS"i

// arithmeticOperatorMultDiv = "*" | "/" | "%" | "div";  powerTerm = arithmeticFactor ["^" arithmeticFactor]
%override ?product: power
        | product "*" power                                            -> mul
        | product "/" power                                            -> div
        | product "%" power                                            -> mod
        | product "DIV"i power                                         -> intdiv
?power: atom
      | atom "^" atom                                                  -> pow

// DATE/TIMESTAMP/INTERVAL in any letter case; INTERVAL bounds may be '..' or properties. The strings are
// validated by the transformer (a bad date is a FilterError naming it, not a syntax error).
%override ?date: "DATE"i "(" SINGLE_QUOTED ")"                         -> date_literal
%override ?timestamp: "TIMESTAMP"i "(" SINGLE_QUOTED ")"               -> timestamp_literal
%override ?interval: "INTERVAL"i "(" expression "," expression ")"     -> interval_literal

// character literals may contain an escaped quote: '' or \'
%override SINGLE_QUOTED: /'(?:[^'\\]|''|\\.)*'/s

// identifiers of one character and with non-ASCII letters (CQL2 identifierStart/identifierPart)
%override attribute: /[^\W\d][\w:.]*/
                   | DOUBLE_QUOTED
"""


_QUOTE_ESCAPES = re.compile(r"\\\\|\\'|''")


@lark.v_args(meta=False, inline=True)
class _TextTransformer(_pgf_text.CQLTransformer):
    def SINGLE_QUOTED(self, token):
        # the same pairs as the terminal's regex, left to right: '' and \' are a quote, \\ stays (LIKE needs it)
        return _QUOTE_ESCAPES.sub(lambda m: m.group() if m.group() == "\\\\" else "'", token[1:-1])

    def date_literal(self, text):
        return _parse_date(text)

    def timestamp_literal(self, text):
        return _parse_timestamp(text)

    def interval_literal(self, start, end):
        return IntervalExpr(start, end)

    def prefix_temporal_predicate(self, op, lhs, rhs):
        return TEMPORAL_FUNCTIONS[str(op).lower()](lhs, rhs)

    def binary_temporal_predicate(self, lhs, op, rhs):
        return TEMPORAL_FUNCTIONS[str(op).lower()](lhs, rhs)

    def mod(self, lhs, rhs):
        return Modulo(lhs, rhs)

    def intdiv(self, lhs, rhs):
        return IntDiv(lhs, rhs)

    def pow(self, lhs, rhs):
        return Power(lhs, rhs)

    def neg(self, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
        return ast.Sub(0, value)

    def function(self, func_name, *expressions):
        name = func_name.name.lower()
        if name == "bbox":
            return BBoxLiteral(list(expressions))
        return super().function(func_name, *expressions)


_parser_lock = threading.Lock()
_text_parser: lark.Lark | None = None


def _get_text_parser() -> lark.Lark:
    global _text_parser
    with _parser_lock:
        if _text_parser is None:
            parsers_dir = os.path.dirname(os.path.dirname(_pgf_text.__file__))
            with open(os.path.join(os.path.dirname(_pgf_text.__file__), "grammar.lark"), encoding="utf-8") as fh:
                grammar = fh.read()
            level = lark.logger.level
            lark.logger.setLevel(logging.WARNING)  # pygeofilter sets lark's logger to DEBUG
            try:
                _text_parser = lark.Lark(grammar + _GRAMMAR_OVERLAY, parser="lalr", maybe_placeholders=False,
                                         transformer=_TextTransformer(), import_paths=[parsers_dir])
            finally:
                lark.logger.setLevel(level)
        return _text_parser


def _parse_text(text: str):
    try:
        return _get_text_parser().parse(text)
    except FilterError:
        raise
    except lark.exceptions.VisitError as exc:
        if isinstance(exc.orig_exc, FilterError):
            raise exc.orig_exc from None
        raise FilterError(f"invalid filter: {_short(str(exc.orig_exc))}") from None
    except lark.exceptions.UnexpectedEOF:
        raise FilterError("CQL2 syntax error: the filter ends too early") from None
    except lark.exceptions.UnexpectedCharacters as exc:
        raise FilterError(f"CQL2 syntax error at line {exc.line}, column {exc.column}: unexpected "
                          f"{_short(text[exc.pos_in_stream:exc.pos_in_stream + 20])!r}") from None
    except lark.exceptions.UnexpectedToken as exc:
        tok = exc.token
        if tok.type == "$END":
            raise FilterError("CQL2 syntax error: the filter ends too early") from None
        hint = ""
        if re.match(r"(?i)a_(equals|contains|containedby|overlaps)$", str(tok)) or re.search(
                r"(?i)\bA_(EQUALS|CONTAINS|CONTAINEDBY|OVERLAPS)\s*\(", text):
            hint = " (array functions are not supported)"
        raise FilterError(f"CQL2 syntax error at line {exc.line}, column {exc.column}: unexpected "
                          f"{_short(str(tok))!r}{hint}") from None
    except lark.exceptions.LarkError as exc:
        raise FilterError(f"CQL2 syntax error: {_short(str(exc).splitlines()[0] if str(exc) else '')}") from None
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    except Exception as exc:  # anything pygeofilter's callbacks raise on odd input
        raise FilterError(f"invalid filter: {_short(str(exc))}") from None


# --------------------------------------------------------------------------------------------------------------
# cql2-json: normalise what pygeofilter 0.4.0's walker gets wrong or lacks, then let it build the AST.

_JSON_DELEGATED = {"=", "<>", "<", "<=", ">", ">=", "and", "or", "not", "isnull", "like", "in", "+", "-", "*", "/"}
_JSON_BINARY = {"=", "<>", "<", "<=", ">", ">=", "like", "in", "+", "-", "*", "/", "^", "%", "div",
                *SPATIAL_FUNCTIONS, *TEMPORAL_FUNCTIONS, *ARRAY_FUNCTIONS}
_GEOJSON_TYPES = {"Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                  "GeometryCollection"}


def _json_prepare(node, depth: int = 0):
    """Bottom-up: the children first, then this node; what pygeofilter handles stays a dict for its walker."""
    if depth > 500:
        raise FilterError("the filter is nested too deeply")
    if isinstance(node, (bool, int, str)):
        return node
    if isinstance(node, float):
        if not math.isfinite(node):
            raise FilterError("numbers must be finite")
        return node
    if node is None:
        raise FilterError("null is not a CQL2 value (use the isNull operator)")
    if isinstance(node, list):
        return [_json_prepare(item, depth + 1) for item in node]
    if not isinstance(node, dict):
        raise FilterError(f"unexpected JSON value of type {type(node).__name__}")
    if "op" in node:
        return _json_op(node, depth)
    if "property" in node:
        name = node["property"]
        if not isinstance(name, str) or not name:
            raise FilterError("a property reference needs a non-empty string: {\"property\": \"name\"}")
        return ast.Attribute(name)
    if "date" in node:
        return _parse_date(_json_str(node["date"], "date"))
    if "timestamp" in node:
        return _parse_timestamp(_json_str(node["timestamp"], "timestamp"))
    if "interval" in node:
        bounds = node["interval"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise FilterError("an interval needs exactly two bounds: {\"interval\": [start, end]}")
        return IntervalExpr(*[_json_prepare(b, depth + 1) for b in bounds])
    if "bbox" in node:
        coords = node["bbox"]
        if not isinstance(coords, list):
            raise FilterError("a bbox needs an array of 4 or 6 numbers")
        return BBoxLiteral(coords)
    if "type" in node:
        if node["type"] not in _GEOJSON_TYPES:
            raise FilterError(f"unknown geometry type {_short(str(node['type']))!r}")
        return values.Geometry(node)
    raise FilterError(f"unrecognised cql2-json object with keys {sorted(map(str, node))[:6]}")


def _json_str(value, what: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"a {what} needs a string value")
    return value


def _json_op(node: dict, depth: int):
    op = node["op"]
    if not isinstance(op, str):
        raise FilterError("\"op\" must be a string")
    args = node.get("args", [])
    if not isinstance(args, list):
        raise FilterError(f"the args of {_short(op)!r} must be an array")
    key = op.lower()
    if key in ARRAY_FUNCTIONS:
        raise FilterError(f"array functions ({op.upper()}) are not supported")
    if key in _JSON_BINARY and len(args) != 2:
        raise FilterError(f"{_short(op)!r} takes 2 arguments, got {len(args)}")
    if key in ("not", "isnull", "casei", "accenti") and len(args) != 1:
        raise FilterError(f"{_short(op)!r} takes 1 argument, got {len(args)}")
    if key in ("and", "or") and len(args) < 2:
        raise FilterError(f"{_short(op)!r} takes at least 2 arguments, got {len(args)}")
    if key == "in" and not isinstance(args[1], list):
        raise FilterError("the second argument of 'in' must be an array")
    prepared = [_json_prepare(arg, depth + 1) for arg in args]
    if key == "between":
        if len(prepared) == 2 and isinstance(prepared[1], list) and len(prepared[1]) == 2:  # pre-1.0 form
            prepared = [prepared[0], *prepared[1]]
        if len(prepared) != 3:
            raise FilterError(f"'between' takes 3 arguments, got {len(args)}")
        return ast.Between(prepared[0], prepared[1], prepared[2], False)
    if key == "casei":
        return ast.Function("lower", prepared)
    if key == "accenti":
        return ast.Function("accenti", prepared)
    if key in TEMPORAL_FUNCTIONS:
        return TEMPORAL_FUNCTIONS[key](*prepared)
    if key in ("^", "%", "div"):
        return {"^": Power, "%": Modulo, "div": IntDiv}[key](*prepared)
    if key in _JSON_DELEGATED or key in SPATIAL_FUNCTIONS:
        canonical = "isNull" if key == "isnull" else key
        try:
            return _pgf_json_parse({"op": canonical, "args": prepared})
        except FilterError:
            raise
        except Exception as exc:
            raise FilterError(f"invalid {_short(op)!r} expression: {_short(str(exc))}") from None
    # CQL2 JSON writes any other function call as {"op": name, "args": [...]}
    return ast.Function(key, prepared)


def _parse_json(filter_):
    if isinstance(filter_, (str, bytes)):
        try:
            filter_ = json.loads(filter_)
        except RecursionError:
            raise FilterError("the filter is nested too deeply") from None
        except ValueError as exc:
            raise FilterError(f"the cql2-json filter is not valid JSON: {_short(str(exc))}") from None
    if isinstance(filter_, bool):
        return ast.Include(not filter_)
    if not isinstance(filter_, dict):
        raise FilterError("a cql2-json filter must be a JSON object")
    try:
        return _json_prepare(filter_)
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None


def parse_filter(filter_: str | dict, lang: str):
    """The pygeofilter AST of a CQL2 filter (FilterError on anything malformed)."""
    lang_key = (lang or "").strip().lower()
    if lang_key not in ("cql2-text", "cql2-json"):
        raise FilterError(f"unsupported filter-lang {_short(str(lang))!r} (use cql2-text or cql2-json)")
    if isinstance(filter_, (str, bytes)) and len(filter_) > MAX_FILTER_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    if lang_key == "cql2-json":
        return _parse_json(filter_)
    if isinstance(filter_, bytes):
        try:
            filter_ = filter_.decode("utf-8")
        except UnicodeDecodeError:
            raise FilterError("the filter is not valid UTF-8") from None
    if not isinstance(filter_, str):
        raise FilterError("a cql2-text filter must be a string")
    if not filter_.strip():
        raise FilterError("the filter is empty")
    return _parse_text(filter_)


# --------------------------------------------------------------------------------------------------------------
# literals

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})?$")


def _parse_date(text: str) -> date:
    if not isinstance(text, str) or not _DATE_RE.match(text):
        raise FilterError(f"invalid date {_short(str(text))!r} (expected YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FilterError(f"invalid date {_short(text)!r}") from None


def _parse_timestamp(text: str) -> datetime:
    match = _TIMESTAMP_RE.match(text) if isinstance(text, str) else None
    if not match:
        raise FilterError(f"invalid timestamp {_short(str(text))!r} (expected YYYY-MM-DDThh:mm:ssZ)")
    normal = text.replace("t", "T").replace("z", "Z").replace(" ", "T", 1)
    if match.group(1) and len(match.group(1)) > 7:  # Python keeps microseconds
        normal = normal.replace(match.group(1), match.group(1)[:7], 1)
    try:
        value = datetime.fromisoformat(normal.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"invalid timestamp {_short(text)!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)  # CQL2 timestamps are UTC


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------------------
# translation


@dataclass
class _Frag:
    sql: sql.Composable
    params: list
    type: str  # a Queryable type, or "interval"
    desc: str  # for error messages
    literal: Any = None  # the Python value of a plain literal (for coercions and checks)
    is_literal: bool = False


_GROUPS = {"string": "string", "integer": "numeric", "number": "numeric", "boolean": "boolean",
           "date": "temporal", "timestamp": "temporal", "geometry": "geometry"}
_COMPARISON_SQL = {ast.ComparisonOp.EQ: "=", ast.ComparisonOp.NE: "<>", ast.ComparisonOp.LT: "<",
                   ast.ComparisonOp.LE: "<=", ast.ComparisonOp.GT: ">", ast.ComparisonOp.GE: ">="}
_SPATIAL_SQL = {
    ast.GeometryIntersects: "ST_Intersects({}, {})",
    ast.GeometryDisjoint: "NOT ST_Intersects({}, {})",  # same meaning as ST_Disjoint
    ast.GeometryEquals: "ST_Equals({}, {})",
    ast.GeometryTouches: "ST_Touches({}, {})",
    ast.GeometryWithin: "ST_Within({}, {})",
    ast.GeometryOverlaps: "ST_Overlaps({}, {})",
    ast.GeometryCrosses: "ST_Crosses({}, {})",
    ast.GeometryContains: "ST_Contains({}, {})",
}
# a = (as, ae), b = (bs, be): the conjunction of comparisons that defines each relation (T_DISJOINT: OR)
_TEMPORAL_RELATIONS: dict[type, tuple[str, list[tuple[str, str, str]]]] = {
    ast.TimeAfter: ("AND", [("as", ">", "be")]),
    ast.TimeBefore: ("AND", [("ae", "<", "bs")]),
    ast.TimeContains: ("AND", [("as", "<", "bs"), ("ae", ">", "be")]),
    ast.TimeDisjoint: ("OR", [("as", ">", "be"), ("ae", "<", "bs")]),
    ast.TimeDuring: ("AND", [("as", ">", "bs"), ("ae", "<", "be")]),
    ast.TimeEquals: ("AND", [("as", "=", "bs"), ("ae", "=", "be")]),
    ast.TimeEndedBy: ("AND", [("as", "<", "bs"), ("ae", "=", "be")]),  # T_FINISHEDBY
    ast.TimeEnds: ("AND", [("as", ">", "bs"), ("ae", "=", "be")]),  # T_FINISHES
    TimeIntersects: ("AND", [("as", "<=", "be"), ("ae", ">=", "bs")]),
    ast.TimeMeets: ("AND", [("ae", "=", "bs")]),
    ast.TimeMetBy: ("AND", [("as", "=", "be")]),
    ast.TimeOverlappedBy: ("AND", [("as", ">", "bs"), ("as", "<", "be"), ("ae", ">", "be")]),
    ast.TimeOverlaps: ("AND", [("as", "<", "bs"), ("ae", ">", "bs"), ("ae", "<", "be")]),
    ast.TimeBegunBy: ("AND", [("as", "=", "bs"), ("ae", ">", "be")]),  # T_STARTEDBY
    ast.TimeBegins: ("AND", [("as", "=", "bs"), ("ae", "<", "be")]),  # T_STARTS
}
_TEMPORAL_NAMES = {ast.TimeEndedBy: "T_FINISHEDBY", ast.TimeEnds: "T_FINISHES", ast.TimeBegunBy: "T_STARTEDBY",
                   ast.TimeBegins: "T_STARTS", ast.TimeMetBy: "T_METBY", ast.TimeOverlappedBy: "T_OVERLAPPEDBY"}
_SPATIAL_NAMES = {cls: name.upper() for name, cls in SPATIAL_FUNCTIONS.items()}


def _fmt(template: str, *frags: _Frag) -> tuple[sql.Composed, list]:
    """Fill ``{}`` slots left to right; the parameters follow in the same order."""
    params: list = []
    for frag in frags:
        params.extend(frag.params)
    return sql.SQL(template).format(*[f.sql for f in frags]), params


def _join(frags: list[_Frag], sep: str) -> tuple[sql.Composed, list]:
    params: list = []
    for frag in frags:
        params.extend(frag.params)
    return sql.SQL(sep).join([f.sql for f in frags]), params


class _Compiler:
    def __init__(self, queryables: Mapping[str, Queryable], filter_crs: int, filter_crs_latlon: bool,
                 storage_srid: int, table_alias: str | None, unaccent_function: str | None):
        self.queryables = queryables
        self.filter_crs = int(filter_crs)
        self.filter_crs_latlon = bool(filter_crs_latlon)
        self.storage_srid = int(storage_srid)
        self.table_alias = table_alias
        self.unaccent_function = unaccent_function

    # ---- conditions ------------------------------------------------------------------------------------------

    def condition(self, node) -> _Frag:
        if isinstance(node, (ast.And, ast.Or)):
            return self._combination(node)
        if isinstance(node, ast.Not):
            inner = self.condition(node.sub_node)
            return _Frag(*_fmt("(NOT {})", inner), "boolean", "NOT")
        if isinstance(node, ast.Comparison):
            return self._comparison(node)
        if isinstance(node, ast.Between):
            return self._between(node)
        if isinstance(node, ast.Like):
            return self._like(node)
        if isinstance(node, ast.In):
            return self._in(node)
        if isinstance(node, ast.IsNull):
            operand = self.value(node.lhs, allow_geometry=True)
            return _Frag(*_fmt("({} IS NOT NULL)" if node.not_ else "({} IS NULL)", operand), "boolean", "IS NULL")
        if isinstance(node, ast.SpatialComparisonPredicate):
            return self._spatial(node)
        if isinstance(node, ast.BBox):
            if node.crs:
                raise FilterError("BBOX with a CRS argument is not supported (use filter-crs)")
            box = BBoxLiteral([node.minx, node.miny, node.maxx, node.maxy])
            return self._spatial(ast.GeometryIntersects(node.lhs, box))
        if isinstance(node, ast.Relate):
            if not isinstance(node.pattern, str) or not re.fullmatch(r"[TF*012]{9}", node.pattern):
                raise FilterError("RELATE needs a 9-character DE-9IM pattern of T, F, *, 0, 1, 2")
            a, b = self._geometry(node.lhs), self._geometry(node.rhs)
            pattern = _Frag(sql.Placeholder(), [node.pattern], "string", "pattern")
            return _Frag(*_fmt("ST_Relate({}, {}, {})", a, b, pattern), "boolean", "RELATE")
        if isinstance(node, ast.TemporalPredicate):
            return self._temporal(node)
        if isinstance(node, ast.ArrayPredicate):
            raise FilterError(f"array functions ({node.op.value}) are not supported")
        if isinstance(node, ast.Include):
            return _Frag(sql.SQL("FALSE" if node.not_ else "TRUE"), [], "boolean", "constant")
        if isinstance(node, bool):
            return _Frag(sql.SQL("TRUE" if node else "FALSE"), [], "boolean", "constant")
        if isinstance(node, ast.Function):
            self._check_function(node)
        if isinstance(node, ast.SpatialDistancePredicate):
            raise FilterError(f"{node.op.name} is not supported")
        raise FilterError(f"{self._describe(node)} is not a condition")

    def _combination(self, node) -> _Frag:
        cls = type(node)
        operands, stack = [], [node]
        while stack:  # flatten a long chain of ANDs or ORs without recursion
            item = stack.pop()
            if type(item) is cls:
                stack.append(item.rhs)
                stack.append(item.lhs)
            else:
                operands.append(self.condition(item))
        word = " AND " if cls is ast.And else " OR "
        composed, params = _join(operands, word)
        return _Frag(sql.Composed([sql.SQL("("), composed, sql.SQL(")")]), params, "boolean", word.strip())

    def _comparison(self, node: ast.Comparison) -> _Frag:
        op = _COMPARISON_SQL[node.op]
        a, b = self.value(node.lhs), self.value(node.rhs)
        a, b, group = self._comparable(a, b, op)
        if group == "string" and op in ("<", "<=", ">", ">="):
            return _Frag(*_fmt('(({}) COLLATE "C" ' + op + " {})", a, b), "boolean", op)
        return _Frag(*_fmt("({} " + op + " {})", a, b), "boolean", op)

    def _between(self, node: ast.Between) -> _Frag:
        a, low, high = self.value(node.lhs), self.value(node.low), self.value(node.high)
        a, low, group = self._comparable(a, low, "BETWEEN")
        a, high, group = self._comparable(a, high, "BETWEEN")
        collate = ' COLLATE "C"' if group == "string" else ""
        template = "(({})" + collate + " BETWEEN {} AND {})"
        if node.not_:
            template = "(NOT " + template + ")"
        return _Frag(*_fmt(template, a, low, high), "boolean", "BETWEEN")

    def _in(self, node: ast.In) -> _Frag:
        if not isinstance(node.sub_nodes, list) or not node.sub_nodes:
            raise FilterError("IN needs a non-empty list")
        a = self.value(node.lhs)
        items = []
        for item in node.sub_nodes:
            a, frag, _ = self._comparable(a, self.value(item), "IN")
            items.append(frag)
        listed, params = _join(items, ", ")
        template = "(NOT ({} IN ({})))" if node.not_ else "({} IN ({}))"
        return _Frag(*_fmt(template, a, _Frag(listed, params, a.type, "list")), "boolean", "IN")

    def _like(self, node: ast.Like) -> _Frag:
        a = self.value(node.lhs)
        pattern = self.value(node.pattern)
        for frag, what in ((a, "LIKE needs a string on its left"), (pattern, "a LIKE pattern must be a string")):
            if frag.type != "string":
                raise FilterError(f"{what}, not {frag.desc}")
        raw = _innermost_literal(node.pattern)
        if isinstance(raw, str) and (len(raw) - len(raw.rstrip("\\"))) % 2 == 1:
            raise FilterError(f"the LIKE pattern {_short(raw)!r} ends with the escape character \\")
        if node.nocase:  # ILIKE (ECQL) — not produced by the CQL2 parsers, kept for completeness
            template = "(lower({}) LIKE lower({}) ESCAPE E'\\\\')"
        else:
            template = "({} LIKE {} ESCAPE E'\\\\')"
        if node.not_:
            template = "(NOT " + template + ")"
        return _Frag(*_fmt(template, a, pattern), "boolean", "LIKE")

    def _comparable(self, a: _Frag, b: _Frag, op: str) -> tuple[_Frag, _Frag, str]:
        """Check that two operands can be compared; coerce a numeric string literal against a number."""
        for frag in (a, b):
            if frag.type == "geometry":
                raise FilterError(f"{frag.desc} is a geometry and cannot be used with {op!r} "
                                  "(use the spatial functions S_INTERSECTS, S_EQUALS, …)")
            if frag.type == "interval":
                raise FilterError(f"an INTERVAL cannot be used with {op!r} (use the temporal functions T_*)")
        ga, gb = _GROUPS[a.type], _GROUPS[b.type]
        if ga == gb:
            if ga == "temporal" and a.type != b.type:
                a, b = self._as_timestamp(a), self._as_timestamp(b)
            return a, b, ga
        # a number property against a numeric string is tolerated, anything else is an error
        if ga == "numeric" and gb == "string" and b.is_literal:
            return a, self._numeric_string(b, a), ga
        if gb == "numeric" and ga == "string" and a.is_literal:
            return self._numeric_string(a, b), b, gb
        if "temporal" in (ga, gb) and "string" in (ga, gb):
            temporal = a if ga == "temporal" else b
            raise FilterError(f"cannot compare {temporal.desc} with a string; write DATE('YYYY-MM-DD') or "
                              "TIMESTAMP('YYYY-MM-DDThh:mm:ssZ')")
        raise FilterError(f"cannot compare {a.desc} with {b.desc} ({op})")

    def _numeric_string(self, frag: _Frag, other: _Frag) -> _Frag:
        text = frag.literal.strip()
        try:
            number: int | float = int(text) if re.fullmatch(r"[+-]?\d+", text) else float(text)
        except ValueError:
            raise FilterError(f"{other.desc} is numeric and cannot be compared with the non-numeric string "
                              f"{_short(frag.literal)!r}") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise FilterError(f"{other.desc} cannot be compared with {_short(frag.literal)!r}")
        return self._literal(number)

    # ---- values ----------------------------------------------------------------------------------------------

    def value(self, node, allow_geometry: bool = False) -> _Frag:
        if isinstance(node, ast.Attribute):
            return self._property(node.name)
        if isinstance(node, (bool, int, float, str, date)):
            return self._literal(node)
        if isinstance(node, ast.Function):
            return self._function(node)
        if isinstance(node, ast.Arithmetic):
            return self._arithmetic(node)
        if isinstance(node, (values.Geometry, values.Envelope, BBoxLiteral)):
            frag = self._geometry(node)
            if not allow_geometry:
                raise FilterError("a geometry literal can only be used in spatial functions (S_INTERSECTS, …)")
            return frag
        if isinstance(node, IntervalExpr):
            raise FilterError("an INTERVAL can only be used in the temporal functions (T_AFTER, …)")
        raise FilterError(f"{self._describe(node)} cannot be used as a value")

    def _property(self, name: str) -> _Frag:
        queryable = self.queryables.get(name) if isinstance(name, str) else None
        if queryable is None:
            names = list(self.queryables)
            listed = ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")
            raise FilterError(f"unknown property {_short(str(name))!r}; the queryables are: {listed or '(none)'}")
        ident = (sql.Identifier(self.table_alias, queryable.column) if self.table_alias
                 else sql.Identifier(queryable.column))
        return _Frag(ident, [], queryable.type, f"property {queryable.name!r} ({queryable.type})")

    def _literal(self, value) -> _Frag:
        if isinstance(value, bool):
            kind, desc = "boolean", str(value).lower()
        elif isinstance(value, int):
            kind, desc = "integer", f"the number {value}"
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise FilterError("numbers must be finite")
            kind, desc = "number", f"the number {value:g}"
        elif isinstance(value, str):
            kind, desc = "string", f"the string {_short(value, 40)!r}"
        elif isinstance(value, datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=UTC)
            kind, desc = "timestamp", f"TIMESTAMP('{value.isoformat()}')"
        elif isinstance(value, date):
            kind, desc = "date", f"DATE('{value.isoformat()}')"
        else:  # pragma: no cover - guarded by the callers
            raise FilterError(f"unsupported literal {self._describe(value)}")
        return _Frag(sql.Placeholder(), [value], kind, desc, literal=value, is_literal=True)

    def _check_function(self, node: ast.Function) -> None:
        name = str(node.name).lower()
        if name in SPATIAL_FUNCTIONS or name in TEMPORAL_FUNCTIONS:
            raise FilterError(f"{name.upper()} takes exactly 2 arguments")
        if name in ARRAY_FUNCTIONS:
            raise FilterError(f"array functions ({name.upper()}) are not supported")
        if name not in ("lower", "casei", "accenti"):
            raise FilterError(f"function {_short(str(node.name))!r} is not supported "
                              "(supported: CASEI, ACCENTI, the S_*, T_* functions)")

    def _function(self, node: ast.Function) -> _Frag:
        self._check_function(node)
        name = str(node.name).lower()
        label = "CASEI" if name in ("lower", "casei") else "ACCENTI"
        if len(node.arguments) != 1:
            raise FilterError(f"{label} takes exactly one argument")
        arg = self.value(node.arguments[0])
        if arg.type != "string":
            raise FilterError(f"{label} needs a string, not {arg.desc}")
        if label == "CASEI":
            composed, params = _fmt("lower({})", arg)
        else:
            if not self.unaccent_function:
                raise FilterError("ACCENTI (accent-insensitive comparison) is not supported by this server: "
                                  "the PostgreSQL extension unaccent is not installed")
            func = sql.Identifier(*self.unaccent_function.split("."))
            composed = sql.Composed([func, sql.SQL("("), arg.sql, sql.SQL(")")])
            params = list(arg.params)
        return _Frag(composed, params, "string", f"{label}({arg.desc})")

    def _arithmetic(self, node: ast.Arithmetic) -> _Frag:
        a, b = self.value(node.lhs), self.value(node.rhs)
        symbol = {ast.Add: "+", ast.Sub: "-", ast.Mul: "*", ast.Div: "/", Power: "^", Modulo: "%",
                  IntDiv: "div"}.get(type(node))
        if symbol is None:
            raise FilterError(f"unsupported arithmetic operator {self._describe(node)}")
        for frag in (a, b):
            if _GROUPS.get(frag.type) != "numeric":
                raise FilterError(f"arithmetic ({symbol}) needs numbers, not {frag.desc}")
        if symbol in ("/", "%", "div") and b.is_literal and b.literal == 0:
            raise FilterError(f"division by zero ({symbol} 0)")
        if a.is_literal and b.is_literal:  # constant: computed here, so overflows are a FilterError, not a 500
            return self._literal(_fold(symbol, a.literal, b.literal))
        integer = a.type == b.type == "integer"
        templates = {
            "+": ("({} + {})", integer),
            "-": ("({} - {})", integer),
            "*": ("({} * {})", integer),
            "/": ("(CAST({} AS double precision) / NULLIF(CAST({} AS double precision), 0))", False),
            "%": ("mod(CAST({} AS numeric), NULLIF(CAST({} AS numeric), 0))", integer),
            "div": ("div(CAST({} AS numeric), NULLIF(CAST({} AS numeric), 0))", True),
            "^": ("power(CAST({} AS double precision), CAST({} AS double precision))", False),
        }
        template, is_int = templates[symbol]
        return _Frag(*_fmt(template, a, b), "integer" if is_int else "number", f"an arithmetic expression ({symbol})")

    # ---- spatial ---------------------------------------------------------------------------------------------

    def _spatial(self, node: ast.SpatialComparisonPredicate) -> _Frag:
        template = _SPATIAL_SQL.get(type(node))
        if template is None:
            raise FilterError(f"{self._describe(node)} is not supported")
        a, b = self._geometry(node.lhs), self._geometry(node.rhs)
        return _Frag(*_fmt(template, a, b), "boolean", _SPATIAL_NAMES.get(type(node), "spatial"))

    def _geometry(self, node) -> _Frag:
        import numpy
        import shapely
        import shapely.geometry

        if isinstance(node, ast.Attribute):
            frag = self._property(node.name)
            if frag.type != "geometry":
                raise FilterError(f"spatial functions need a geometry, not {frag.desc}")
            return frag
        if isinstance(node, ast.Function) and str(node.name).lower() == "bbox":
            node = BBoxLiteral(list(node.arguments))
        try:
            if isinstance(node, BBoxLiteral):
                geom = self._bbox(node.coords)
            elif isinstance(node, (values.Geometry, values.Envelope)):
                geom = shapely.geometry.shape(node.__geo_interface__)
            else:
                raise FilterError(f"spatial functions need a geometry, not {self._describe(node)}")
            coords = shapely.get_coordinates(geom)
            if not coords.size or not bool(numpy.isfinite(coords).all()):
                raise FilterError("a geometry literal needs finite coordinates")
            if not shapely.is_valid(geom):
                raise FilterError(f"invalid geometry literal: {_short(shapely.is_valid_reason(geom))}")
            wkb = shapely.to_wkb(geom)
        except FilterError:
            raise
        except Exception as exc:  # shapely/GEOS on malformed coordinates
            raise FilterError(f"invalid geometry literal: {_short(str(exc))}") from None
        frag = _Frag(sql.SQL("ST_GeomFromWKB({}, {})").format(sql.Placeholder(), sql.Placeholder()),
                     [wkb, self.filter_crs], "geometry", "a geometry literal")
        if self.filter_crs_latlon:
            frag = _Frag(*_fmt("ST_FlipCoordinates({})", frag), "geometry", frag.desc)
        if self.filter_crs != self.storage_srid:
            srid = _Frag(sql.Placeholder(), [self.storage_srid], "integer", "srid")
            frag = _Frag(*_fmt("ST_Transform({}, {})", frag, srid), "geometry", frag.desc)
        return frag

    def _bbox(self, coords: list):
        import shapely
        import shapely.geometry

        if len(coords) not in (4, 6) or not all(
                isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in coords):
            raise FilterError("BBOX needs 4 (or 6) finite numbers: west, south, east, north")
        x1, y1, x2, y2 = (coords[0], coords[1], coords[2], coords[3]) if len(coords) == 4 else \
            (coords[0], coords[1], coords[3], coords[4])
        if self.filter_crs_latlon:  # the numbers are in the CRS's axis order: lat, lon, lat, lon
            (x1, y1), (x2, y2) = (y1, x1), (y2, x2)
        if y1 > y2:
            raise FilterError("BBOX: the south edge is north of the north edge")
        if x1 > x2:
            if not _is_geographic(self.filter_crs):
                raise FilterError("BBOX: the west edge is east of the east edge")
            # crosses the antimeridian: two boxes
            boxes = [shapely.geometry.box(x1, y1, 180, y2), shapely.geometry.box(-180, y1, x2, y2)]
            geom = shapely.geometry.MultiPolygon(boxes)
        else:
            geom = shapely.geometry.box(x1, y1, x2, y2)
        if self.filter_crs_latlon:  # back to the CRS's axis order; ST_FlipCoordinates undoes it in SQL
            geom = shapely.transform(geom, lambda xy: xy[:, ::-1])
        return geom

    # ---- temporal --------------------------------------------------------------------------------------------

    def _temporal(self, node: ast.TemporalPredicate) -> _Frag:
        relation = _TEMPORAL_RELATIONS.get(type(node))
        name = _TEMPORAL_NAMES.get(type(node), type(node).__name__)
        if relation is None:
            raise FilterError(f"the temporal operator {name} is not supported")
        a_start, a_end = self._temporal_operand(node.lhs)
        b_start, b_end = self._temporal_operand(node.rhs)
        if len({f.type for f in (a_start, a_end, b_start, b_end)}) > 1:
            a_start, a_end, b_start, b_end = (self._as_timestamp(f) for f in (a_start, a_end, b_start, b_end))
        parts = {"as": a_start, "ae": a_end, "bs": b_start, "be": b_end}
        joiner, comparisons = relation
        terms = [_Frag(*_fmt("({} " + op + " {})", parts[x], parts[y]), "boolean", op) for x, op, y in comparisons]
        composed, params = _join(terms, f" {joiner} ")
        return _Frag(sql.Composed([sql.SQL("("), composed, sql.SQL(")")]), params, "boolean", name)

    def _temporal_operand(self, node) -> tuple[_Frag, _Frag]:
        if isinstance(node, IntervalExpr):
            start = self._interval_bound(node.start, is_start=True)
            end = self._interval_bound(node.end, is_start=False)
            kind = {f.type for f in (start, end) if f is not None}
            kind_name = kind.pop() if len(kind) == 1 else "timestamp"
            start = start or self._infinity("-infinity", kind_name)
            end = end or self._infinity("infinity", kind_name)
            if start.type != end.type:
                start, end = self._as_timestamp(start), self._as_timestamp(end)
            return start, end
        if isinstance(node, (date, ast.Attribute)):
            frag = self._literal(node) if isinstance(node, date) else self._property(node.name)
            if frag.type not in ("date", "timestamp"):
                raise FilterError(f"temporal functions need a date or timestamp, not {frag.desc}")
            return frag, frag
        if isinstance(node, str):
            raise FilterError(f"temporal functions need DATE('…'), TIMESTAMP('…') or INTERVAL(…), not the string "
                              f"{_short(node)!r}")
        raise FilterError(f"temporal functions need a date, timestamp or interval, not {self._describe(node)}")

    def _interval_bound(self, bound, is_start: bool) -> _Frag | None:
        if isinstance(bound, str):
            if bound == "..":
                return None
            return self._literal(_parse_date(bound) if _DATE_RE.match(bound) else _parse_timestamp(bound))
        if isinstance(bound, date):
            return self._literal(bound)
        if isinstance(bound, ast.Attribute):
            frag = self._property(bound.name)
            if frag.type not in ("date", "timestamp"):
                raise FilterError(f"an INTERVAL bound must be a date or timestamp, not {frag.desc}")
            return frag
        raise FilterError(f"an INTERVAL bound must be a date/timestamp string, '..' or a property, not "
                          f"{self._describe(bound)}")

    @staticmethod
    def _infinity(value: str, kind: str) -> _Frag:
        cast = "date" if kind == "date" else "timestamptz"
        return _Frag(sql.SQL("CAST({} AS " + cast + ")").format(sql.Placeholder()), [value], kind, "'..'")

    @staticmethod
    def _as_timestamp(frag: _Frag) -> _Frag:
        if frag.type != "date":
            return frag
        return _Frag(*_fmt("(CAST({} AS timestamp) AT TIME ZONE 'UTC')", frag), "timestamp", frag.desc)

    # ---- messages --------------------------------------------------------------------------------------------

    @staticmethod
    def _describe(node) -> str:
        if isinstance(node, ast.Attribute):
            return f"property {_short(str(node.name))!r}"
        if isinstance(node, ast.Function):
            return f"function {_short(str(node.name))}()"
        if isinstance(node, (str, int, float)):
            return _short(repr(node))
        if isinstance(node, list):
            return "a list"
        return {ast.Not: "NOT"}.get(type(node), _TEMPORAL_NAMES.get(type(node), type(node).__name__))


def _fold(symbol: str, x, y):
    """Evaluate literal arithmetic with PostgreSQL's semantics (div and % truncate towards zero)."""
    both_int = isinstance(x, int) and isinstance(y, int)
    try:
        if symbol == "+":
            result = x + y
        elif symbol == "-":
            result = x - y
        elif symbol == "*":
            result = x * y
        elif symbol == "/":
            result = float(x) / float(y)
        elif symbol in ("div", "%"):
            if both_int:
                quotient = abs(x) // abs(y) * (1 if (x >= 0) == (y > 0) else -1)
            else:
                quotient = math.trunc(float(x) / float(y))
            result = quotient if symbol == "div" else (x - y * quotient if both_int else math.fmod(x, y))
        else:  # "^": PostgreSQL's power(double precision, double precision)
            result = math.pow(float(x), float(y))
    except (OverflowError, ValueError, ZeroDivisionError) as exc:
        raise FilterError(f"arithmetic error in {x!r} {symbol} {y!r}: {_short(str(exc))}") from None
    if isinstance(result, float) and not math.isfinite(result) or isinstance(result, int) and abs(result) > 10**300:
        raise FilterError(f"arithmetic overflow in {x!r} {symbol} {y!r}")
    return result


def _innermost_literal(node):
    while isinstance(node, ast.Function) and len(node.arguments) == 1:
        node = node.arguments[0]
    return node


_geographic_cache: dict[int, bool] = {}


def _is_geographic(epsg: int) -> bool:
    if epsg not in _geographic_cache:
        try:
            import pyproj

            _geographic_cache[epsg] = bool(pyproj.CRS.from_epsg(epsg).is_geographic)
        except Exception:  # an unknown code: treat as projected (no antimeridian wrap)
            _geographic_cache[epsg] = False
    return _geographic_cache[epsg]


def compile_filter(filter_: str | dict, lang: str, queryables: Mapping[str, Queryable], *,
                   filter_crs: int = 4326, storage_srid: int = 4490, table_alias: str | None = None,
                   filter_crs_latlon: bool = False, unaccent_function: str | None = None,
                   ) -> tuple[sql.Composed, list]:
    """Translate a CQL2 filter into a SQL condition and its parameters.

    ``lang`` is ``'cql2-text'`` or ``'cql2-json'`` (for JSON, a str is parsed with ``json.loads``).
    ``filter_crs`` is the EPSG code of geometry literals (4326 = CRS84 lon/lat by default);
    ``filter_crs_latlon`` says their axis order is lat/lon (e.g. filter-crs EPSG:4326 or EPSG:4490 given
    explicitly). ``storage_srid`` is the SRID of the geometry column. ``table_alias`` qualifies every column.
    ``unaccent_function`` is the (optionally schema-qualified) name of the unaccent extension's function —
    see :func:`detect_unaccent`; ``None`` makes ACCENTI a FilterError.

    Use as ``cur.execute(SQL("SELECT … WHERE {}").format(where), params)``. Raises :class:`FilterError`.
    """
    if not isinstance(filter_crs, int) or isinstance(filter_crs, bool) or not isinstance(storage_srid, int):
        raise TypeError("filter_crs and storage_srid must be integer EPSG codes")
    tree = parse_filter(filter_, lang)
    compiler = _Compiler(queryables, filter_crs, filter_crs_latlon, storage_srid, table_alias, unaccent_function)
    try:
        frag = compiler.condition(tree)
    except FilterError:
        raise
    except RecursionError:
        raise FilterError("the filter is nested too deeply") from None
    except Exception as exc:  # never let an internal error escape as a 500
        raise FilterError(f"invalid filter: {_short(str(exc))}") from exc
    composed = frag.sql if isinstance(frag.sql, sql.Composed) else sql.Composed([frag.sql])
    return composed, list(frag.params)


def detect_unaccent(conn) -> str | None:
    """The schema-qualified name of ``unaccent(text)`` if the extension is installed in this database."""
    with conn.cursor() as cur:
        cur.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                    "WHERE e.extname = 'unaccent'")
        row = cur.fetchone()
    return f"{row[0]}.unaccent" if row else None

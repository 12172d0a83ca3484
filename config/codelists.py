"""Official classification code lists, read from the CSV files in ``config/codelists/``.

The files are copies of ``../shared/code-lists`` (see ``codelists/SOURCES.md`` for where each row comes
from). Rows whose source or note says ``recalled`` were not verified against the official text; they are
kept, flagged ``recalled=True``, and every place that shows a code says so.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType

# Typical handling of each 差异图斑 class (cylx codes A/B/C), written into the XTYJ field of the 差异图斑 layer.
DIFF_ADVICE = {
    "A": "城规有、土规无：在规划期内确需建设的，以B类图斑释放的规模腾挪调入；否则城规调整为非建设用地",
    "B": "土规有、城规无：已批已供或现状建设的纳入城规建设用地；否则调出土规建设用地规模用于A类腾挪",
    "C": "城规建设占永久基本农田：城规让位于永久基本农田保护，调整为非建设用地",
}


@dataclass(frozen=True)
class Code:
    code: str
    name_zh: str
    parent: str = ""
    is_construction: bool | None = None  # None where the class is mixed or the notion does not apply
    recalled: bool = False


@dataclass(frozen=True)
class CodeList:
    id: str
    title: str
    source_file: str
    codes: Mapping[str, Code]

    def __contains__(self, code: object) -> bool:
        return code in self.codes

    def name(self, code: str) -> str:
        return self.codes[code].name_zh

    @property
    def any_recalled(self) -> bool:
        return any(c.recalled for c in self.codes.values())


# id → (title, file, table filter or None, code column, construction column)
_FILE_LISTS: dict[str, tuple[str, str, tuple[str, ...] | None, str, str | None]] = {
    "gbt21010": ("GB/T 21010-2017 土地利用现状分类", "gbt21010-2017.csv", None, "code", "三大类"),
    "gb50137": ("GB 50137-2011 城市用地分类", "gb50137-2011.csv", None, "code", "is_construction"),
    "ydyh2023": ("国土空间调查、规划、用途管制用地用海分类 (2023)", "ydyh-2023.csv", None, "code",
                 "is_construction"),
    "tdgh_ghyt": ("土地利用总体规划 规划用途 (TD/T 1025-2010)", "tdgh-yt-2010.csv", ("ghyt",), "code",
                  "is_construction"),
    "tdgh_tdytq": ("土地用途区 (TD/T 1025-2010)", "tdgh-yt-2010.csv", ("tdytq",), "code", "is_construction"),
    "tdgh_jsydgzq": ("建设用地管制区 (TD/T 1025-2010)", "tdgh-yt-2010.csv", ("jsydgzq",), "code",
                     "is_construction"),
    "ghfq": ("规划分区", "sanqu-sanxian.csv", ("ghfq", "ghfq_zxcq"), "code", None),
    # These two tables have no codes: the Chinese name is the value stored.
    "sanqu": ("三类空间", "sanqu-sanxian.csv", ("sanqu",), "name_zh", None),
    "kzx": ("控制线类型", "sanqu-sanxian.csv", ("kzx",), "name_zh", None),
    "cylx": ("差异图斑类型", "diff-classes.csv", None, "class_id", None),
    "xzqdm": ("长沙县行政区划代码 (NBS 2022)", "changsha-county-towns.csv", None, "code12", None),
}


def _construction(value: str | None) -> bool | None:
    if value in ("yes", "建设用地"):
        return True
    if value in ("no", "农用地", "未利用地"):
        return False
    return None


def _read_rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("lantu.config").joinpath("codelists", filename).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


def _file_list(list_id: str) -> CodeList:
    title, filename, tables, code_col, constr_col = _FILE_LISTS[list_id]
    codes: dict[str, Code] = {}
    for row in _read_rows(filename):
        if tables and row.get("table") not in tables:
            continue
        recalled = "recalled" in (row.get("source", "") + " " + row.get("note", "")).lower()
        code = row[code_col]
        codes[code] = Code(code, row.get("name_zh", ""), row.get("parent", "") or "",
                           _construction(row.get(constr_col)) if constr_col else None, recalled)
        if list_id == "xzqdm":  # towns are also written with their 9-digit code
            codes[row["code9"]] = codes[code]
    if list_id == "xzqdm":
        codes["430121"] = Code("430121", "长沙县")
    return CodeList(list_id, title, filename, MappingProxyType(codes))


def inline_list(list_id: str, title: str, values: Mapping[str, str]) -> CodeList:
    """A short enumeration defined in the registry itself (e.g. road grades)."""
    codes = {str(k): Code(str(k), str(v)) for k, v in values.items()}
    return CodeList(list_id, title, "registry.yaml", MappingProxyType(codes))


@cache
def load_code_lists() -> Mapping[str, CodeList]:
    """Every code list: the CSV-backed ones and the inline enumerations of registry.yaml."""
    import yaml

    lists = {list_id: _file_list(list_id) for list_id in _FILE_LISTS}
    text = resources.files("lantu.config").joinpath("registry.yaml").read_text("utf-8")
    for list_id, spec in (yaml.safe_load(text).get("code_lists") or {}).items():
        lists[list_id] = inline_list(list_id, spec["title"], spec["values"])
    return MappingProxyType(lists)

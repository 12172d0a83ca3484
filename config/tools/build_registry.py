"""One-off generator of config/registry.yaml from ../shared/blueprint-layers.csv and fields.csv.

The committed registry.yaml is the source of truth afterwards (Lantu must run without ../shared); this
script documents how it was first derived and can regenerate it after a CSV change:

    .venv/bin/python config/tools/build_registry.py ../shared > config/registry.yaml
"""

import csv
import sys
from pathlib import Path

import yaml

# Fields that are not in fields.csv: (name_zh, type, length, code list). Lantu's own choices, documented as such.
EXTRA_FIELDS = {
    "KJLX": ("空间类型", "string", 20, "sanqu"), "HXLX": ("红线类型", "string", 30, "hxlx"),
    "ZTGNQLX": ("主体功能区类型", "string", 20, "ztgnq"), "XMLX": ("项目类型", "string", 20, "xmlx"),
    "JSND": ("建设年度", "integer", None, None), "DLDJ": ("道路等级", "string", 10, "dldj"),
    "SSLX": ("设施类型", "string", 30, None), "SSMC": ("设施名称", "string", 100, None),
    "FWBJ": ("服务半径（米）", "number", None, None), "HXKD": ("红线宽度（米）", "number", None, None),
    "SYMC": ("水域名称", "string", 100, None), "LDLX": ("绿地林地类型", "string", 30, None),
    "BHJB": ("保护级别", "string", 20, "bhjb"), "MC": ("名称", "string", 100, None),
    "BHFWLX": ("保护范围类型", "string", 20, "bhfwlx"), "JZND": ("建造年代", "integer", None, None),
    "GBPC": ("公布批次", "string", 20, None), "JB": ("级别", "string", 20, "jb"),
    "GM": ("规模", "string", 50, None), "GJ": ("管径（毫米）", "integer", None, None),
    "GC": ("管材", "string", 20, None), "PSTZ": ("排水体制", "string", 10, "pstz"),
    "DYDJ": ("电压等级", "string", 10, "dydj"), "HLS": ("回路数", "integer", None, None),
    "GKS": ("管孔数", "integer", None, None), "YLJB": ("压力级别", "string", 10, "yljb"),
    "FZLX": ("防灾类型", "string", 20, "fzlx"), "JSDW": ("建设单位", "string", 100, None),
    "XMZT": ("项目状态", "string", 10, "xmzt"), "XZYJSH": ("选址意见书号", "string", 50, None),
    "YDMJ": ("用地面积（平方米）", "number", None, None), "GDFS": ("供地方式", "string", 10, "gdfs"),
    "GDSJ": ("供地时间", "date", None, None), "TDYT": ("土地用途", "string", 6, "ydyh2023"),
    "YDDM": ("用地代码", "string", 10, "gb50137"), "YDMC": ("用地名称", "string", 50, None),
    "JZWMC": ("建筑物名称", "string", 100, None), "JZCS": ("建筑层数", "integer", None, None),
    "JZJG": ("建筑结构", "string", 10, "jzjg"), "ZHLX": ("灾害类型", "string", 10, "zhlx"),
    "WXDJ": ("险情等级", "string", 10, "wxdj"), "WXRS": ("威胁人数", "integer", None, None),
    "YFCD": ("易发程度", "string", 10, "yfcd"), "XHRL": ("蓄洪容量（万立方米）", "number", None, None),
    "SZ": ("优势树种", "string", 30, None), "LDBHDJ": ("林地保护等级", "string", 10, "ldbhdj"),
    "DJ": ("等级", "string", 10, None), "TTS": ("泊位数", "integer", None, None),
    "HDMC": ("航道名称", "string", 100, None), "HDDJ": ("航道等级", "string", 10, None),
    "TS": ("套数", "integer", None, None), "LX": ("类型", "string", 30, None),
    "XXLX": ("学校类型", "string", 20, None), "XWS": ("学位数", "integer", None, None),
    "YYDJ": ("医院等级", "string", 10, None), "CWS": ("床位数", "integer", None, None),
    "JXLX": ("界线类型", "string", 20, "jxlx"), "JXXZ": ("界线性质", "string", 20, "jxxz"),
    "WXYDJ": ("危险源等级", "string", 10, "wxydj"), "QYMC": ("企业名称", "string", 100, None),
    "TYSHXYDM": ("统一社会信用代码", "string", 18, None), "WHPLX": ("危化品类型", "string", 30, None),
    "LXBM": ("路线编码", "string", 10, None), "LXMC": ("路线名称", "string", 100, None),
    "JSDJ": ("技术等级", "string", 10, None), "XLMC": ("线路名称", "string", 100, None),
    "DWMC": ("单位名称", "string", 100, None), "PWLX": ("排污类型", "string", 20, "pwlx"),
    "CYLX": ("差异类型", "string", 10, "cylx"), "CGYD": ("城规用地代码", "string", 10, "gb50137"),
    "TGYT": ("土规管制区代码", "string", 3, "tdgh_jsydgzq"), "XTZT": ("协调状态", "string", 10, "xtzt"),
    "XTYJ": ("协调意见", "string", 255, None), "ZLDJ": ("耕地质量等别", "integer", None, None),
    "YDYHFLDM": ("用地用海分类代码", "string", 6, "ydyh2023"), "GZQLXMC": ("管制区类型名称", "string", 50, None),
}
CODE_LIST_OF = {"DLBM": "gbt21010", "GZQLXDM": "tdgh_jsydgzq", "GHFQDM": "ghfq", "KZXLX": "kzx",
                "XZQDM": "xzqdm", "QSXZ": "qsxz"}
TYPES = {"Char": "string", "Float": "number", "Int": "integer", "Date": "date"}
INLINE_LISTS = {
    "hxlx": ("生态保护红线类型", ["生态功能极重要区", "生态极敏感脆弱区", "其他"]),
    "ztgnq": ("主体功能区类型", ["城市化发展区", "农产品主产区", "重点生态功能区"]),
    "xmlx": ("项目类型", ["交通", "水利", "能源", "产业", "公共服务", "市政"]),
    "dldj": ("道路等级", ["高速公路", "快速路", "主干路", "次干路", "支路", "一级公路", "二级公路"]),
    "bhjb": ("保护级别", ["全国重点", "省级", "市级", "县级", "未定级"]),
    "bhfwlx": ("保护范围类型", ["核心保护范围", "建设控制地带"]),
    "jb": ("级别", ["国家级", "省级", "市级", "县级"]),
    "pstz": ("排水体制", ["雨水", "污水", "合流"]),
    "dydj": ("电压等级", ["500kV", "220kV", "110kV", "35kV", "10kV"]),
    "yljb": ("燃气压力级别", ["高压", "次高压", "中压", "低压"]),
    "fzlx": ("防灾类型", ["消防", "人防", "防洪", "抗震", "应急避难"]),
    "xmzt": ("项目状态", ["谋划", "储备", "生成", "审批中", "已批"]),
    "gdfs": ("供地方式", ["划拨", "出让", "租赁"]),
    "jzjg": ("建筑结构", ["钢混", "砖混", "钢", "砖木", "其他"]),
    "zhlx": ("地质灾害类型", ["滑坡", "崩塌", "泥石流", "地面塌陷"]),
    "wxdj": ("险情等级", ["特大型", "大型", "中型", "小型"]),
    "yfcd": ("地质灾害易发程度", ["高易发", "中易发", "低易发"]),
    "ldbhdj": ("林地保护等级", ["I级", "II级", "III级", "IV级"]),
    "jxlx": ("界线类型", ["县界", "乡镇界"]),
    "jxxz": ("界线性质", ["已定界", "未定界"]),
    "wxydj": ("危险源等级", ["一级", "二级", "三级", "四级"]),
    "pwlx": ("排污类型", ["废水", "废气", "废水废气", "固废"]),
    "xtzt": ("差异图斑协调状态", ["待协调", "协调中", "已协调"]),
}
# 权属性质 codes as 三调 databases write them (recalled, not checked against the 规程 text).
QSXZ = {"10": "国有土地所有权", "20": "集体土地所有权", "30": "集体土地使用权"}
# YSDM values that a public tool states (GHBOX, see codelists/SOURCES.md); the rest get a Lantu-local
# placeholder 99000000NN (NN = registry seq) that is not an official code.
KNOWN_YSDM = {"green_line": "2090020232", "yellow_line": "2090020234", "blue_line": "2090020233",
              "purple_line": "2090020233", "functional_area_plan": "2090020610",
              "planned_land_use": "2090020620", "main_function_zone": "2090020130"}
CONTROL_STYLES = {
    "eco_red_line": {"stroke": "#E60000", "fill": "#FF4D4D", "stroke_width": 2.0, "fill_opacity": 0.3},
    "eco_control_line": {"stroke": "#2E8B57", "fill": "#8FD19E", "stroke_width": 1.5},
    "basic_farmland": {"stroke": "#A0781E", "fill": "#F2D98C", "hatch": True, "stroke_width": 1.2},
    "urban_dev_boundary": {"stroke": "#9932CC", "stroke_width": 2.5, "dash": [10, 4], "fill_opacity": 0},
    "construction_scale_boundary": {"stroke": "#FF8C00", "fill": "#FFD8A8", "classify_by": "GZQLXDM"},
    "blue_line": {"stroke": "#0066FF", "fill": "#99C2FF", "stroke_width": 2.0},
    "green_line": {"stroke": "#00A650", "fill": "#A8E6BE", "stroke_width": 2.0},
    "purple_line": {"stroke": "#8B00FF", "fill": "#D9B3FF", "stroke_width": 2.0},
    "yellow_line": {"stroke": "#E6B800", "fill": "#FFF0A0", "stroke_width": 2.0},
    "road_red_line": {"stroke": "#FF0000", "dash": [8, 4], "stroke_width": 1.5},
    "planned_land_use": {"stroke": "#808080", "fill": "#FFFF99", "classify_by": "YDDM", "fill_opacity": 0.8},
    "current_land_use": {"stroke": "#808080", "fill": "#FFE4B5", "classify_by": "YDDM", "fill_opacity": 0.8},
    "land_use_survey": {"stroke": "#999999", "fill": "#C8E6A0", "classify_by": "DLBM", "fill_opacity": 0.8,
                        "stroke_width": 0.5},
    "discrepancy_patches": {"stroke": "#FF00FF", "fill": "#FF99FF", "classify_by": "CYLX"},
}
GROUP_COLOURS = {"planning": "#4169E1", "projects": "#DC143C", "status": "#2F4F4F", "blueprint": "#FF00FF"}
RESTRICTED = {"hazchem_enterprises", "key_polluters", "hazard_sources", "mobile_signaling",
              "vehicle_positions", "internet_locations"}
TIME_FIELDS = {"land_use_red_line": "PFSJ", "engineering_red_line": "PFSJ", "land_supply_red_line": "GDSJ"}
GROUP_EN = {"planning": "planning", "projects": "project approval", "status": "current status",
            "blueprint": "one blueprint", "basemap": "base map", "open_data": "open data",
            "statistics": "statistics", "indicators": "indicators"}


def field_table(shared: Path) -> dict:
    table = {}
    with open(shared / "code-lists" / "fields.csv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            length = row["length"].split(",")[0]
            ftype = TYPES[row["type"]]
            table[row["field_code"]] = (row["name_zh"], ftype, int(length) if ftype == "string" else None,
                                        CODE_LIST_OF.get(row["field_code"]))
    table.update(EXTRA_FIELDS)
    return table


def field_entry(code: str, table: dict, required: bool) -> dict:
    name, ftype, length, code_list = table[code]
    entry = {"code": code, "name_zh": name, "type": ftype}
    if length:
        entry["length"] = length
    if code_list:
        entry["code_list"] = code_list
    if required:
        entry["required"] = True
    return entry


def layer_entry(row: dict, table: dict) -> dict:
    geometry = row["geometry"]
    kind = {"raster": "raster", "none": "catalog"}.get(geometry, "vector")
    keys = [k for k in row["key_fields"].split(";") if k]
    control = row["control_line"] == "yes"
    entry = {"id": row["id"], "seq": int(row["seq"]), "name_zh": row["name_zh"], "title_en": row["title_en"],
             "group": row["group"], "subgroup": row["subgroup"], "kind": kind}
    if kind == "vector":
        entry["geometry"] = geometry
        entry["ysdm"] = KNOWN_YSDM.get(row["id"], f"99000000{int(row['seq']):02d}")
        entry["fields"] = [field_entry(k, table, required=(i == 0 or table[k][3] is not None))
                           for i, k in enumerate(keys) if k not in ("XZQDM", "XZQMC")]
        style = {"stroke": GROUP_COLOURS.get(row["group"], "#333333")}
        if geometry == "Polygon":
            style["fill"] = style["stroke"]
            style["fill_opacity"] = 0.35
        style.update(CONTROL_STYLES.get(row["id"], {}))
        label = next((k for k in keys if k.endswith("MC") or k == "MC"), None)
        if label:
            style["label_field"] = label
        entry["style"] = style
        if row["id"] in TIME_FIELDS:
            entry["time_field"] = TIME_FIELDS[row["id"]]
    entry["control_line"] = control
    if row["id"] in RESTRICTED:
        entry["access"] = {"level": "internal", "roles": ["internal"]}
    keywords = [row["name_zh"], row["title_en"], row["subgroup"], "多规合一", "一张图", "长沙县"]
    if control:
        keywords.append("控制线")
    entry["metadata"] = {
        "abstract_zh": f"{row['name_zh']}（{row['subgroup']}），由{row['department']}提供，"
                       f"更新周期：{row['update_cycle']}。",
        "abstract_en": f"{row['title_en']} ({GROUP_EN[row['group']]} layer) from the county's "
                       f"{row['department']}; updated {row['update_cycle']}.",
        "keywords": keywords, "department": row["department"], "update_cycle": row["update_cycle"],
        "seed_ref": row["seed_ref"]}
    if row["min_zoom"]:
        entry["min_zoom"] = int(row["min_zoom"])
    return entry


def main(shared: Path) -> None:
    table = field_table(shared)
    std = {
        "all": [field_entry("BSM", table, True) | {"description": "标识码，图层内唯一"},
                field_entry("YSDM", table, True), field_entry("XZQDM", table, True),
                field_entry("XZQMC", table, True)],
        "polygon": [field_entry("MJ", table, False) | {"description": "面积（平方米，椭球面积）"}],
        "trailing": [field_entry("BZ", table, False)],
    }
    lists = {k: {"title": t, "values": {v: v for v in vals}} for k, (t, vals) in INLINE_LISTS.items()}
    lists["qsxz"] = {"title": "权属性质 (codes recalled, unverified)", "values": QSXZ}
    with open(shared / "blueprint-layers.csv", encoding="utf-8") as fh:
        layers = [layer_entry(row, table) for row in csv.DictReader(fh)]
    doc = {"standard_fields": std, "code_lists": lists, "layers": layers}
    print("# Lantu layer registry: one entry per row of the platform's layer list (blueprint-layers.csv).\n"
          "# Standard fields are added to every vector layer. YSDM 99000000NN values are Lantu-local\n"
          "# placeholders, not official codes; the 209002xxxx ones come from GHBOX (see codelists/SOURCES.md)\n"
          "# and 2090020233 is given there for both 蓝线 and 紫线 (one is a copy error, unverified).")
    print(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=110))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

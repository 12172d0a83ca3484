"""MapServer 8 configuration generated from the layer registry (design brief §3, §8): never checked in.

:func:`write_mapserver_config` writes, into ``out_dir`` (normally ``$LANTU_HOME/mapserver``):

* ``lantu.map`` — one MAP with one LAYER per registry vector layer (PostGIS, table ``blueprint.<id>``), the
  DEM and its hillshade when the demo DEM exists, the imagery when a file is present; WMS and WFS metadata;
* ``mapserver.conf`` — the MapServer 8 config file (``MAPSERVER_CONFIG_FILE``): ``MS_MAP_PATTERN`` admits
  exactly ``lantu.map``, ``MS_MAPFILE`` makes it the default (requests need no ``MAP=``), the alias
  ``MAP=LANTU`` names it too; PROJ/GDAL data of Debian's libraries; ``MS_ERRORFILE`` in ``$LANTU_HOME/log``;
* ``fonts.txt`` (FONTSET: ``wqy`` = WenQuanYi Micro Hei, for Chinese labels and legends), ``symbols.sym``
  (SYMBOLSET: point symbols and the hatch), ``templates/*.html`` (text/html GetFeatureInfo),
  ``dem_hillshade.tif`` (``gdaldem hillshade`` of the DEM, rebuilt when the DEM is newer).

Every file is written to a temporary name and renamed into place, and only when its content changed, so a
running ``mapserv`` never reads half a file. The output is a pure function of the arguments (no timestamps,
registry order), so regenerating at every start-up is cheap and diff-able.

Scales: registry ``min_zoom`` is a WebMercator zoom, whose scale denominator is 559 082 264.03 / 2^z at the
OGC 0.28 mm pixel; the map's RESOLUTION is that pixel (90.714 dpi, not MapServer's 72) so MapServer's scale
is the OGC one. Labels start two zooms after ``min_zoom`` (LABEL MAXSCALEDENOM). Layers themselves get no
scale limit by default: measured with MapServer 8.0, a layer outside its MIN/MAXSCALEDENOM is skipped by WMS
GetFeatureInfo too (and INFO_FORMAT=application/json then answers an empty body, not even an empty
FeatureCollection), while WFS ignores scale limits. ``layer_scale_limits=True`` adds MAXSCALEDENOM = the
``min_zoom`` scale × √2 (half a zoom of slack, so a tile at exactly ``min_zoom`` or a GK view of the same
ground is not cut) for deployments that prefer to protect the server at small scales.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from lantu.config.codelists import CodeList
from lantu.config.registry import Layer, Registry
from lantu.config.settings import Settings

MAPFILE_NAME = "lantu.map"
CONFIG_NAME = "mapserver.conf"
FONTSET_NAME = "fonts.txt"
SYMBOLS_NAME = "symbols.sym"
TEMPLATE_DIR = "templates"
MAP_ALIAS = "LANTU"
SCHEMA = "blueprint"
STORAGE_EPSG = 4490
# FONTSET aliases and where Debian puts the files. Labels use the first as the main font and the others as
# glyph fallbacks (MapServer's comma-separated FONT list): WenQuanYi Micro Hei lacks CJK Extension A, e.g.
# 㮾 (U+3BBE) of 㮾梨街道, which WenQuanYi Zen Hei (fonts-wqy-zenhei) and Noto Sans CJK have.
FONT = "wqy"
FONTS: tuple[tuple[str, tuple[Path, ...]], ...] = (
    ("wqy", (Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),)),            # fonts-wqy-microhei
    ("wqy-zenhei", (Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),)),        # fonts-wqy-zenhei
    ("noto-cjk", (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),)),  # fonts-noto-cjk
)
PROJ_DATA_CANDIDATES = (Path("/usr/share/proj"),)  # Debian libproj's own data (mapserv links Debian's PROJ)
GDAL_DATA_CANDIDATES = (Path("/usr/share/gdal"),)

TITLE = "蓝图 Lantu 一张图"
ABSTRACT = ("多规合一“一张蓝图”：规划成果、建设项目审批与现状数据 (CGCS2000, EPSG:4490)。 "
            "Lantu 'one blueprint' of multi-plan integration: planning, project-approval and current-status "
            "layers of the county in CGCS2000. Demo data is synthetic and not for production.")
KEYWORDS = ("多规合一", "一张蓝图", "国土空间规划", "CGCS2000", "multi-plan integration", "spatial planning")
CONTACT = {
    "ows_contactorganization": "蓝图 Lantu 多规合一平台",
    "ows_contactperson": "GIS 服务管理员 (service operator)",
    "ows_contactposition": "运维 (operator)",
    "ows_fees": "none",
    "ows_accessconstraints": "部分图层需授权 (some layers need an account); 演示数据为合成数据，不得用于生产",
}

# Top-level groups of the registry (`group`) as WMS group titles; the registry's `subgroup` nests below.
GROUP_TITLES = {
    "planning": "规划成果",
    "projects": "建设项目审批",
    "status": "现状数据",
    "blueprint": "多规合一成果",
    "basemap": "基础地理信息",
}

# Offered CRSs (brief §10). All 42 CGCS2000 3-degree GK zones (4513–4533 with zone prefix, 4534–4554
# without) are listed once at map level: WMS layers inherit them (WMS 1.3.0 §7.2.4.6.7), so the capabilities
# stay small; WFS repeats them per feature type (~2.3 kB each: 299 kB for 73 types, 12 kB gzipped).
GK_ZONES = tuple(range(4513, 4555))
_FIRST = (4490, 4326, 3857, 4547, 4546, 4548)
OFFERED_EPSG = _FIRST + tuple(c for c in GK_ZONES if c not in _FIRST)
WMS_SRS = " ".join([f"EPSG:{c}" for c in OFFERED_EPSG] + ["CRS:84"])
WFS_SRS = " ".join(f"EPSG:{c}" for c in OFFERED_EPSG)

# The whole of China (CGCS2000 lon/lat), used when no data extent is known.
CHINA_EXTENT = (73.0, 3.0, 136.0, 54.0)

# WebMercator zoom 0 scale denominator at the OGC 0.28 mm pixel.
ZOOM0_SCALE = 559082264.0287178
OGC_DPI = 0.0254 / 0.00028  # 90.714… pixels per inch
MAX_ZOOM_NOLIMIT = 20       # registry max_zoom at or above this puts no lower scale limit

GETFEATUREINFO_FORMATS = "text/html,application/json,application/vnd.ogc.gml,text/plain"
WFS_FORMATS = "geojson,application/json"  # GML (2, 3.1.1, 3.2.1) is built in and always offered
TOLERANCE_PX = {"Point": 6, "LineString": 4, "Polygon": 0}
MS_TYPES = {"Point": "POINT", "LineString": "LINE", "Polygon": "POLYGON"}

# ---- colour tables for `classify_by` layers ------------------------------------------------------------
# The colours follow the national 国土空间规划 / 城乡规划 drawing conventions approximately (三调 工作分类
# colours for GB/T 21010 families; GB 50137 conventions of 城市规划制图标准 CJJ/T 97 for urban land); they are
# legend colours for a planning bureau's eye, not a certified standard table.
GBT21010_COLOURS = {   # 第三次全国国土调查 first-level classes
    "01": "#FFFF64",   # 耕地 yellow
    "02": "#D2EB8C",   # 园地 yellow-green
    "03": "#32A032",   # 林地 green
    "04": "#96D264",   # 草地 light green
    "05": "#FF6464",   # 商服用地 red
    "06": "#C89664",   # 工矿仓储用地 brown
    "07": "#FF9696",   # 住宅用地 pink
    "08": "#FF96C8",   # 公共管理与公共服务用地 magenta-pink
    "09": "#966450",   # 特殊用地 dark brown
    "10": "#B4B4B4",   # 交通运输用地 grey
    "11": "#96C8FF",   # 水域及水利设施用地 blue
    "12": "#DCDCC8",   # 其他土地 pale
}
# GB 50137-2011: city construction land by major class first (R A B M W S U G), then H and E classes.
GB50137_CLASSES: tuple[tuple[str, str], ...] = (
    ("R", "#FFFF00"),    # 居住用地 yellow
    ("A", "#FF3FBF"),    # 公共管理与公共服务设施用地 magenta
    ("B", "#FF0000"),    # 商业服务业设施用地 red
    ("M", "#A0784B"),    # 工业用地 brown
    ("W", "#9F7FFF"),    # 物流仓储用地 purple
    ("S", "#A5A5A5"),    # 道路与交通设施用地 grey
    ("U", "#0070C0"),    # 公用设施用地 blue
    ("G", "#00A050"),    # 绿地与广场用地 green
    ("H11", "#FF7F50"),  # 城市建设用地 (unspecified) orange
    ("H12", "#FF9F5F"),  # 镇建设用地 orange
    ("H13", "#FFBF7F"),  # 乡建设用地 light orange
    ("H14", "#FFD89F"),  # 村庄建设用地 pale orange
    ("H2", "#8C8C8C"),   # 区域交通设施用地 dark grey
    ("H3", "#3F8FBF"),   # 区域公用设施用地 steel blue
    ("H4", "#6B8E23"),   # 特殊用地 olive
    ("H5", "#8C6446"),   # 采矿用地 dark brown
    ("H9", "#C8A082"),   # 其他建设用地 tan
    ("H", "#FF7F50"),    # 建设用地 (unspecified)
    ("E1", "#7FBFFF"),   # 水域 blue
    ("E2", "#C8E6A0"),   # 农林用地 light green
    ("E9", "#DCD8C0"),   # 其他非建设用地 pale
    ("E", "#C8E6A0"),    # 非建设用地 (unspecified)
)
TDGH_JSYDGZQ_COLOURS = {  # 建设用地管制区 (TD/T 1025-2010)
    "010": "#E6544E",  # 允许建设区 red
    "020": "#F5A623",  # 有条件建设区 orange
    "030": "#B5D99C",  # 限制建设区 light green
    "040": "#3C8C3C",  # 禁止建设区 green
}
CYLX_COLOURS = {  # 差异图斑: severity colours (C most severe)
    "C": "#C00000", "A": "#FF6A00", "B": "#1E90FF", "D": "#9932CC", "N": "#BEBEBE",
    "CYLX-04": "#FF6A00", "CYLX-03": "#1E90FF", "CYLX-02": "#9932CC", "CYLX-01": "#BEBEBE",
}

DEM_RAMP = (  # hypsometric tints, (from m, to m, colour from, colour to)
    (-500, 50, "#4E9A5A", "#9CCB86"),
    (50, 150, "#9CCB86", "#E8E1A0"),
    (150, 300, "#E8E1A0", "#C8A46E"),
    (300, 600, "#C8A46E", "#8C6446"),
    (600, 9000, "#8C6446", "#FFFFFF"),
)


@dataclass(frozen=True)
class MapserverFiles:
    mapfile: Path
    config_file: Path
    fontset: Path
    symbols: Path
    templates: Path
    hillshade: Path | None = None
    changed: bool = True  # any file was (re)written: running mapserv workers should be restarted
    raster_layers: tuple[str, ...] = ()  # raster LAYER names in the mapfile (dem, dem_hillshade, imagery)


@dataclass(frozen=True)
class ClassRule:
    name: str           # legend text (Chinese)
    regex: str | None   # CLASSITEM regex, None = catch-all
    fill: str


# ---- small helpers -------------------------------------------------------------------------------------
def q(value: object) -> str:
    """A MapServer string literal: double quotes, with backslash and double quote escaped (maplexer.l)."""
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
    return f'"{text}"'


def ere_escape(text: str) -> str:
    """Escape a literal for a POSIX extended regular expression (MS_MAP_PATTERN uses regcomp REG_EXTENDED)."""
    return "".join("\\" + ch if ch in ".[]()*+?{}|^$\\" else ch for ch in text)


def zoom_scale(zoom: float) -> float:
    return ZOOM0_SCALE / 2 ** zoom


def max_scale_for(min_zoom: int) -> float:
    """MAXSCALEDENOM of a layer visible from WebMercator ``min_zoom`` (half a zoom of slack)."""
    return round(zoom_scale(min_zoom) * math.sqrt(2))


def label_zoom(layer: Layer) -> int:
    """Labels start two zooms after the layer appears; point labels not before zoom 14 (they clutter)."""
    base = (layer.min_zoom or 0) + 2
    return max(base, 14) if layer.geometry == "Point" else max(base, 10)


def group_path(layer: Layer) -> str:
    top = GROUP_TITLES.get(layer.group, layer.group)
    return f"/{top}/{layer.subgroup}" if layer.subgroup and layer.subgroup != top else f"/{top}"


def keyword_list(words: Iterable[str]) -> str:
    """MapServer splits keyword lists on commas: a comma inside a keyword becomes a full-width one."""
    return ",".join(dict.fromkeys(w.strip().replace(",", "，") for w in words if w.strip()))


def fmt_num(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def fmt_extent(extent: tuple[float, float, float, float]) -> str:
    return " ".join(fmt_num(v) for v in extent)


def _hex(colour: str) -> str:
    return colour.upper()


def classify_rules(code_list: CodeList) -> list[ClassRule]:
    """One class per top-level code family of the land-use code lists (first match wins in MapServer)."""
    if code_list.id == "gbt21010":
        return [ClassRule(f"{c.code} {c.name_zh}", f"^{c.code}", GBT21010_COLOURS.get(c.code, "#DCDCDC"))
                for c in code_list.codes.values() if not c.parent]
    if code_list.id == "gb50137":
        return [ClassRule(f"{prefix} {code_list.name(prefix)}" if prefix in code_list else prefix, f"^{prefix}",
                          colour) for prefix, colour in GB50137_CLASSES]
    if code_list.id == "tdgh_jsydgzq":
        return [ClassRule(f"{c.code} {c.name_zh}", f"^{c.code}$", TDGH_JSYDGZQ_COLOURS.get(c.code, "#DCDCDC"))
                for c in code_list.codes.values()]
    if code_list.id == "cylx":
        return [ClassRule(f"{c.code} {c.name_zh}", f"^{ere_escape(c.code)}$", CYLX_COLOURS.get(c.code, "#DCDCDC"))
                for c in code_list.codes.values()]
    # any other code list: one class per code, colours cycled from a qualitative palette
    palette = ("#8DD3C7", "#FFFFB3", "#BEBADA", "#FB8072", "#80B1D3", "#FDB462", "#B3DE69", "#FCCDE5")
    return [ClassRule(f"{c.code} {c.name_zh}" if c.name_zh != c.code else c.code, f"^{ere_escape(c.code)}$",
                      palette[i % len(palette)]) for i, c in enumerate(code_list.codes.values())]


# ---- mapfile text --------------------------------------------------------------------------------------
class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 0

    def line(self, text: str = "") -> None:
        self.lines.append(("  " * self.depth + text) if text else "")

    def open(self, keyword: str) -> None:
        self.line(keyword)
        self.depth += 1

    def close(self) -> None:
        self.depth -= 1
        self.line("END")

    def metadata(self, items: Iterable[tuple[str, object]]) -> None:
        self.open("METADATA")
        for key, value in items:
            self.line(f"{q(key)} {q(value)}")
        self.close()

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _web_metadata(public_url: str, settings: Settings) -> list[tuple[str, object]]:
    return [
        ("ows_title", TITLE),
        ("ows_abstract", ABSTRACT),
        ("ows_keywordlist", ",".join(KEYWORDS)),
        ("wms_onlineresource", f"{public_url}/wms?"),
        ("wfs_onlineresource", f"{public_url}/wfs?"),
        ("ows_enable_request", "*"),
        ("ows_encoding", "UTF-8"),
        ("wms_encoding", "UTF-8"),
        ("wms_srs", WMS_SRS),
        ("wfs_srs", WFS_SRS),
        ("wms_getfeatureinfo_formatlist", GETFEATUREINFO_FORMATS),
        ("wms_feature_info_mime_type", "text/html"),
        ("wms_allow_getmap_without_styles", "true"),
        ("wms_getmap_formatlist", "image/png,image/png; mode=8bit,image/jpeg"),
        ("wms_getlegendgraphic_formatlist", "image/png"),
        ("wfs_getfeature_formatlist", WFS_FORMATS),
        ("wfs_maxfeatures", str(settings.max_limit)),
        ("wfs_compute_number_matched", "true"),
        ("wfs_geometry_precision", "9"),
        ("wfs_namespace_prefix", "lantu"),
        ("wfs_namespace_uri", f"{public_url}/wfs/lantu"),
        ("ows_schemas_location", "http://schemas.opengis.net"),
        *CONTACT.items(),
    ]


def _output_formats(w: _Writer) -> None:
    formats = [
        ("png", "AGG/PNG", "image/png", "RGBA", "png", ["COMPRESSION=6"]),
        ("png8", "AGG/PNG8", "image/png; mode=8bit", "RGB", "png", ["QUANTIZE_FORCE=on", "QUANTIZE_COLORS=256"]),
        ("jpeg", "AGG/JPEG", "image/jpeg", "RGB", "jpg", ["QUALITY=85"]),
    ]
    for name, driver, mime, mode, ext, options in formats:
        w.open("OUTPUTFORMAT")
        w.line(f"NAME {q(name)}")
        w.line(f"DRIVER {q(driver)}")
        w.line(f"MIMETYPE {q(mime)}")
        w.line(f"IMAGEMODE {mode}")
        w.line(f"EXTENSION {q(ext)}")
        w.line("TRANSPARENT OFF")  # WMS TRANSPARENT=TRUE switches it on per request
        for option in options:
            w.line(f"FORMATOPTION {q(option)}")
        w.close()
    # GeoJSON through OGR: WMS GetFeatureInfo INFO_FORMAT=application/json and WFS OUTPUTFORMAT=geojson
    for name, mime in (("application/json", "application/json"), ("geojson", "application/geo+json")):
        w.open("OUTPUTFORMAT")
        w.line(f"NAME {q(name)}")
        w.line('DRIVER "OGR/GEOJSON"')
        w.line(f"MIMETYPE {q(mime)}")
        w.line('FORMATOPTION "STORAGE=stream"')
        w.line('FORMATOPTION "FORM=SIMPLE"')
        w.line('FORMATOPTION "LCO:COORDINATE_PRECISION=9"')
        w.close()


def _layer_metadata(layer: Layer, settings: Settings, extent: tuple | None) -> list[tuple[str, object]]:
    md = layer.metadata
    items: list[tuple[str, object]] = [
        ("ows_title", layer.name_zh),
        ("ows_abstract", f"{md.abstract_zh} {md.abstract_en} {md.synthetic_note}"),
        ("ows_keywordlist", keyword_list((layer.name_zh, layer.title_en, *md.keywords))),
        ("wms_layer_group", group_path(layer)),
        ("wms_include_items", "all"),
        ("wms_feature_info_mime_type", "text/html"),
        ("gml_include_items", "all"),
        ("gml_exclude_items", "updated_at"),
        ("gml_featureid", "fid"),
        ("wfs_featureid", "fid"),
        ("gml_types", "auto"),
        ("gml_geometries", "geom"),
        ("gml_geom_type", {"Point": "point", "LineString": "multiline", "Polygon": "multipolygon"}[layer.geometry]),
        ("wfs_getfeature_formatlist", WFS_FORMATS),
        ("wfs_maxfeatures", str(settings.max_limit)),
        ("lantu_layer", layer.id),
        ("lantu_access", layer.access.level),
    ]
    if layer.access.roles:
        items.append(("lantu_roles", ",".join(layer.access.roles)))
    if extent:
        items.append(("ows_extent", fmt_extent(extent)))
    for fdef in layer.fields:  # field aliases (GML schema annotations are not used, but clients read these)
        items.append((f"gml_{fdef.column}_alias", fdef.code))
    return items


def _label(w: _Writer, layer: Layer, font: str) -> None:
    w.open("LABEL")
    w.line(f"FONT {q(font)}")
    w.line("SIZE 9")
    w.line('COLOR "#222222"')
    w.line('OUTLINECOLOR "#FFFFFF"')
    w.line("OUTLINEWIDTH 2")
    w.line(f"MAXSCALEDENOM {max_scale_for(label_zoom(layer))}")
    w.line("PARTIALS FALSE")
    if layer.geometry == "Point":
        w.line("POSITION AUTO")
        w.line("OFFSET 0 6")
    elif layer.geometry == "LineString":
        w.line("ANGLE FOLLOW")
        w.line("REPEATDISTANCE 300")
        w.line("MINFEATURESIZE 40")
    else:
        w.line("POSITION CC")
        w.line("MINFEATURESIZE AUTO")
    w.line("MINDISTANCE 40")
    w.close()


def _dash(w: _Writer, dash: tuple[float, ...]) -> None:
    if dash:
        w.line("PATTERN " + " ".join(fmt_num(d) for d in dash) + " END")
        w.line("LINECAP BUTT")


def _polygon_styles(w: _Writer, layer: Layer, fill: str | None) -> None:
    style = layer.style
    if fill and style.fill_opacity > 0:
        w.open("STYLE")
        w.line(f"COLOR {q(_hex(fill))}")
        w.line(f"OPACITY {round(style.fill_opacity * 100)}")
        w.close()
    if style.hatch:  # e.g. 永久基本农田: hatching in the stroke colour over the light fill
        w.open("STYLE")
        w.line('SYMBOL "hatch"')
        w.line(f"COLOR {q(_hex(style.stroke))}")
        w.line("SIZE 8")
        w.line("WIDTH 1")
        w.line("ANGLE 45")
        w.close()
    w.open("STYLE")
    w.line(f"OUTLINECOLOR {q(_hex(style.stroke))}")
    w.line(f"WIDTH {fmt_num(style.stroke_width)}")
    _dash(w, style.dash)
    w.close()


def _line_styles(w: _Writer, layer: Layer) -> None:
    style = layer.style
    w.open("STYLE")
    w.line(f"COLOR {q(_hex(style.stroke))}")
    w.line(f"WIDTH {fmt_num(style.stroke_width)}")
    _dash(w, style.dash)
    w.close()


def _point_styles(w: _Writer, layer: Layer) -> None:
    style = layer.style
    w.open("STYLE")
    w.line(f"SYMBOL {q(style.point_symbol)}")
    w.line(f"SIZE {fmt_num(style.point_size)}")
    w.line(f"COLOR {q(_hex(style.fill or style.stroke))}")
    w.line('OUTLINECOLOR "#FFFFFF"')
    w.line("WIDTH 1")
    w.close()


def _class(w: _Writer, layer: Layer, name: str, regex: str | None, fill: str | None, font: str) -> None:
    w.open("CLASS")
    w.line(f"NAME {q(name)}")
    if regex is not None:
        w.line(f"EXPRESSION /{regex}/")
    if layer.geometry == "Polygon":
        _polygon_styles(w, layer, fill)
    elif layer.geometry == "LineString":
        _line_styles(w, layer)
    else:
        _point_styles(w, layer)
    if layer.style.label_field:
        _label(w, layer, font)
    w.close()


def _vector_layer(w: _Writer, layer: Layer, registry: Registry, settings: Settings, dsn: str,
                  extent: tuple | None, font: str, scale_limits: bool) -> None:
    style = layer.style
    w.open("LAYER")
    w.line(f"NAME {q(layer.id)}")
    w.line(f"TYPE {MS_TYPES[layer.geometry]}")
    w.line("STATUS ON")
    w.line("CONNECTIONTYPE POSTGIS")
    w.line(f"CONNECTION {q(dsn)}")
    w.line(f"DATA {q(f'geom from {SCHEMA}.{layer.table} using unique fid using srid={STORAGE_EPSG}')}")
    w.line('PROCESSING "CLOSE_CONNECTION=DEFER"')
    w.line(f'PROJECTION "init=epsg:{STORAGE_EPSG}" END')
    if scale_limits and layer.min_zoom is not None:
        w.line(f"MAXSCALEDENOM {max_scale_for(layer.min_zoom)}")
    if scale_limits and layer.max_zoom < MAX_ZOOM_NOLIMIT:
        w.line(f"MINSCALEDENOM {round(zoom_scale(layer.max_zoom + 1) / math.sqrt(2))}")
    w.line(f"TOLERANCE {TOLERANCE_PX[layer.geometry]}")
    w.line("TOLERANCEUNITS PIXELS")
    w.line(f"HEADER {q(f'{TEMPLATE_DIR}/{layer.id}.header.html')}")
    w.line(f"TEMPLATE {q(f'{TEMPLATE_DIR}/{layer.id}.html')}")
    w.line(f"FOOTER {q(f'{TEMPLATE_DIR}/table.footer.html')}")
    if style.label_field:
        w.line(f"LABELITEM {q(style.label_field.lower())}")
    w.metadata(_layer_metadata(layer, settings, extent))
    if style.classify_by:
        fdef = layer.field(style.classify_by)
        w.line(f"CLASSITEM {q(fdef.column)}")
        rules = classify_rules(registry.code_lists[fdef.code_list]) if fdef.code_list else []
        for rule in rules:
            _class(w, layer, rule.name, rule.regex, rule.fill, font)
        _class(w, layer, f"其他 ({layer.name_zh})", None, style.fill, font)
    else:
        _class(w, layer, layer.name_zh, None, style.fill, font)
    w.close()


def _raster_metadata(layer: Layer, title: str, title_en: str, extent: tuple | None) -> list[tuple[str, object]]:
    md = layer.metadata
    items: list[tuple[str, object]] = [
        ("ows_title", title),
        ("ows_abstract", f"{md.abstract_zh} {title_en}: {md.abstract_en} {md.synthetic_note}"),
        ("ows_keywordlist", keyword_list((title, title_en, *md.keywords))),
        ("wms_layer_group", group_path(layer)),
        ("wms_include_items", "all"),
        ("wms_feature_info_mime_type", "text/html"),
        ("gml_include_items", "all"),
        ("lantu_layer", layer.id),
        ("lantu_access", layer.access.level),
    ]
    if extent:
        items.append(("ows_extent", fmt_extent(extent)))
    return items


def _raster_layer(w: _Writer, name: str, layer: Layer, path: Path, title: str, title_en: str,
                  extent: tuple | None, ramp: bool, opacity: int = 100) -> None:
    w.open("LAYER")
    w.line(f"NAME {q(name)}")
    w.line("TYPE RASTER")
    w.line("STATUS ON")
    w.line(f"DATA {q(path)}")
    w.line(f'PROJECTION "init=epsg:{STORAGE_EPSG}" END')
    w.line('PROCESSING "RESAMPLE=BILINEAR"')
    if opacity < 100:
        w.open("COMPOSITE")
        w.line(f"OPACITY {opacity}")
        w.close()
    w.line(f"HEADER {q(f'{TEMPLATE_DIR}/{name}.header.html')}")
    w.line(f"TEMPLATE {q(f'{TEMPLATE_DIR}/{name}.html')}")
    w.line(f"FOOTER {q(f'{TEMPLATE_DIR}/table.footer.html')}")
    w.metadata(_raster_metadata(layer, title, title_en, extent))
    if ramp:  # elevation tints; nodata (-9999 in the file) stays transparent
        for low, high, c0, c1 in DEM_RAMP:
            w.open("CLASS")
            name = f"< {high} m" if low == DEM_RAMP[0][0] else f"≥ {low} m" if high == DEM_RAMP[-1][1] else \
                f"{low}–{high} m"
            w.line(f"NAME {q(name)}")
            w.line(f"EXPRESSION ([pixel] >= {low} AND [pixel] < {high})")
            w.open("STYLE")
            w.line(f"COLORRANGE {q(c0)} {q(c1)}")
            w.line(f"DATARANGE {low} {high}")
            w.line('RANGEITEM "pixel"')
            w.close()
            w.close()
    w.close()


def _fields_template(layer: Layer) -> str:
    rows = "".join(f'<tr><th>{f.name_zh} <small>{f.code}</small></th><td>[item name="{f.column}" escape="html"]'
                   f"</td></tr>\n" for f in layer.fields)
    return f"<!-- MapServer Template -->\n{rows}<tr><td colspan=\"2\"><hr></td></tr>\n"


def _header_template(title: str, layer_id: str) -> str:
    return (f"<!-- MapServer Template -->\n<h3>{_html(title)} <small>({layer_id})</small></h3>\n"
            f'<table class="lantu-fi" data-layer="{layer_id}">\n')


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


WEB_HEADER = ('<!-- MapServer Template -->\n<!DOCTYPE html>\n<html lang="zh-CN"><head><meta charset="utf-8">'
              f"<title>{TITLE} GetFeatureInfo</title></head><body>\n")
WEB_FOOTER = "<!-- MapServer Template -->\n</body></html>\n"
RASTER_VALUE = {"dem": "高程 elevation (m)", "dem_hillshade": "明暗度 shade (0–255)"}


def _raster_template(name: str) -> str:
    label = RASTER_VALUE.get(name, "值 value")
    return (f'<!-- MapServer Template -->\n<tr><th>{label}</th><td>[item name="value_list" escape="html"]'
            "</td></tr>\n")


def _symbols() -> str:
    return """# Generated by lantu.config.mapfile: point symbols and the hatch of control-line fills.
SYMBOLSET
  SYMBOL
    NAME "circle"
    TYPE ELLIPSE
    FILLED TRUE
    POINTS 1 1 END
  END
  SYMBOL
    NAME "square"
    TYPE VECTOR
    FILLED TRUE
    POINTS 0 0 0 1 1 1 1 0 0 0 END
  END
  SYMBOL
    NAME "triangle"
    TYPE VECTOR
    FILLED TRUE
    POINTS 0 1 0.5 0 1 1 0 1 END
  END
  SYMBOL
    NAME "star"
    TYPE VECTOR
    FILLED TRUE
    POINTS 0 0.375 0.35 0.375 0.5 0 0.65 0.375 1 0.375 0.75 0.625 0.875 1 0.5 0.75 0.125 1 0.25 0.625 0 0.375 END
  END
  SYMBOL
    NAME "hatch"
    TYPE HATCH
  END
END
"""


def find_fonts(fonts: Iterable[tuple[str, tuple[Path, ...]]] = FONTS) -> dict[str, Path]:
    """FONTSET aliases of the installed fonts, in order; the main font (the first) is required."""
    found: dict[str, Path] = {}
    for i, (alias, candidates) in enumerate(fonts):
        path = next((p for p in candidates if p.exists()), None)
        if path is not None:
            found[alias] = path
        elif i == 0:
            raise FileNotFoundError(f"font {alias!r} not found (Debian package fonts-wqy-microhei): "
                                    + ", ".join(map(str, candidates)))
    return found


def build_mapfile(registry: Registry, settings: Settings, dsn: str, public_url: str, *,
                  extents: Mapping[str, tuple[float, float, float, float]] | None = None,
                  rasters: Mapping[str, Path] | None = None, fonts: Iterable[str] = (FONT,),
                  layer_scale_limits: bool = False) -> str:
    """The mapfile text. ``extents``: lon/lat extents by layer id (``"*"`` for the whole map); ``rasters``:
    ``dem``, ``dem_hillshade`` and ``imagery`` files that exist (others are left out); ``fonts``: FONTSET
    aliases, the main font first, then glyph fallbacks; ``layer_scale_limits``: see the module docstring."""
    font = ",".join(fonts)
    extents = extents or {}
    rasters = rasters or {}
    public_url = public_url.rstrip("/")
    known = [e for key, e in sorted(extents.items()) if e and key != "*"]
    map_extent = extents.get("*") or (
        (min(e[0] for e in known), min(e[1] for e in known), max(e[2] for e in known), max(e[3] for e in known))
        if known else CHINA_EXTENT)
    w = _Writer()
    w.line("# Generated by lantu.config.mapfile from the layer registry at start-up: do not edit, not checked in.")
    w.open("MAP")
    w.line('NAME "lantu"')
    w.line("STATUS ON")
    w.line("SIZE 512 512")
    w.line("MAXSIZE 4096")
    w.line("UNITS DD")
    w.line(f"EXTENT {fmt_extent(map_extent)}")
    w.line('IMAGECOLOR "#FFFFFF"')
    w.line('IMAGETYPE "png"')
    # Scale arithmetic at the OGC 0.28 mm pixel; symbol sizes stay in pixels (both resolutions equal).
    w.line(f"RESOLUTION {fmt_num(OGC_DPI)}")
    w.line(f"DEFRESOLUTION {fmt_num(OGC_DPI)}")
    w.line(f"FONTSET {q(FONTSET_NAME)}")
    w.line(f"SYMBOLSET {q(SYMBOLS_NAME)}")
    w.line('CONFIG "ON_MISSING_DATA" "LOG"')
    w.line(f'PROJECTION "init=epsg:{STORAGE_EPSG}" END')
    _output_formats(w)
    w.open("WEB")
    w.line(f"HEADER {q(f'{TEMPLATE_DIR}/web.header.html')}")
    w.line(f"FOOTER {q(f'{TEMPLATE_DIR}/web.footer.html')}")
    w.metadata(_web_metadata(public_url, settings))
    w.close()
    w.open("LEGEND")
    w.line("KEYSIZE 20 12")
    w.open("LABEL")
    w.line(f"FONT {q(font)}")
    w.line("SIZE 9")
    w.line('COLOR "#000000"')
    w.close()
    w.close()
    for layer in registry.vector_layers():
        _vector_layer(w, layer, registry, settings, dsn, extents.get(layer.id), font, layer_scale_limits)
    dem = registry.get("dem")
    if dem is not None and "dem" in rasters:
        _raster_layer(w, "dem", dem, rasters["dem"], dem.name_zh, dem.title_en, extents.get("dem"), ramp=True)
    if dem is not None and "dem_hillshade" in rasters:
        # drawn semi-transparent so it can lie over the tints or a vector layer
        _raster_layer(w, "dem_hillshade", dem, rasters["dem_hillshade"], "山体阴影", "Hillshade",
                      extents.get("dem"), ramp=False, opacity=45)
    imagery = registry.get("imagery")
    # Imagery is served only when a file is present ($LANTU_HOME/imagery/imagery.tif or .vrt); the demo has
    # none, and a layer without data would only produce errors. The rendered base map (electronic_map) is
    # MapProxy's cascade of these layers, not a layer of its own here.
    if imagery is not None and "imagery" in rasters:
        _raster_layer(w, "imagery", imagery, rasters["imagery"], imagery.name_zh, imagery.title_en,
                      extents.get("imagery"), ramp=False)
    w.close()
    return w.text()


def build_config(mapfile: Path, settings: Settings) -> str:
    """The MapServer 8 config file: MS_MAP_PATTERN admits exactly ``mapfile``, which also has an alias."""
    # MS_MAPFILE: the default when a request has no MAP parameter, so the proxy need not send one.
    env: list[tuple[str, str]] = [("MS_MAP_PATTERN", f"^{ere_escape(str(mapfile))}$"), ("MS_MAPFILE", str(mapfile))]
    for var, candidates in (("PROJ_DATA", PROJ_DATA_CANDIDATES), ("GDAL_DATA", GDAL_DATA_CANDIDATES)):
        found = next((p for p in candidates if p.is_dir()), None)
        if found:  # pin Debian's data: a PROJ_DATA inherited from a wheel (rasterio, pyproj) may not match
            env.append((var, str(found)))
            if var == "PROJ_DATA":
                env.append(("PROJ_LIB", str(found)))
    env.append(("MS_ERRORFILE", str(settings.log_dir / "mapserver.log")))
    w = _Writer()
    w.line("# Generated by lantu.config.mapfile: the MapServer 8 config file (MAPSERVER_CONFIG_FILE).")
    w.open("CONFIG")
    w.open("ENV")
    for key, value in env:
        w.line(f"{key} {q(value)}")
    w.close()
    w.open("MAPS")
    w.line(f"{MAP_ALIAS} {q(mapfile)}")
    w.close()
    w.close()
    return w.text()


# ---- files ---------------------------------------------------------------------------------------------
def write_atomic(path: Path, content: str | bytes, mode: int = 0o644) -> bool:
    """Write ``content`` to ``path`` via a temporary file and a rename; returns False when unchanged."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    path = Path(path)
    if path.exists() and path.read_bytes() == data:
        if (path.stat().st_mode & 0o777) != mode:
            os.chmod(path, mode)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def ensure_hillshade(dem: Path, out: Path) -> Path | None:
    """``gdaldem hillshade`` of ``dem`` into ``out`` when missing or older than the DEM; None if impossible."""
    if out.exists() and out.stat().st_mtime >= dem.stat().st_mtime:
        return out
    gdaldem = shutil.which("gdaldem")
    if gdaldem is None:
        return out if out.exists() else None
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tif")
    # The DEM is in degrees: -s 111120 converts its horizontal unit to metres (GDAL's documented factor).
    cmd = [gdaldem, "hillshade", str(dem), str(tmp), "-s", "111120", "-z", "1.5", "-multidirectional",
           "-compute_edges", "-of", "GTiff", "-co", "COMPRESS=DEFLATE", "-co", "TILED=YES", "-q"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        return out if out.exists() else None
    os.replace(tmp, out)
    return out


def find_rasters(settings: Settings, out_dir: Path) -> dict[str, Path]:
    rasters: dict[str, Path] = {}
    dem = Path(settings.home) / "demo" / "dem.tif"
    if dem.exists():
        rasters["dem"] = dem
        shade = ensure_hillshade(dem, out_dir / "dem_hillshade.tif")
        if shade is not None:
            rasters["dem_hillshade"] = shade
    for candidate in (Path(settings.home) / "imagery" / "imagery.tif", Path(settings.home) / "imagery" / "imagery.vrt"):
        if candidate.exists():
            rasters["imagery"] = candidate
            break
    return rasters


def _templates(registry: Registry, rasters: Mapping[str, Path]) -> dict[str, str]:
    files = {"web.header.html": WEB_HEADER, "web.footer.html": WEB_FOOTER,
             "table.footer.html": "<!-- MapServer Template -->\n</table>\n"}
    for layer in registry.vector_layers():
        files[f"{layer.id}.header.html"] = _header_template(layer.name_zh, layer.id)
        files[f"{layer.id}.html"] = _fields_template(layer)
    titles = {"dem": "高程模型数据", "dem_hillshade": "山体阴影", "imagery": "影像数据"}
    for name in sorted(rasters):
        files[f"{name}.header.html"] = _header_template(titles.get(name, name), name)
        files[f"{name}.html"] = _raster_template(name)
    return files


def write_mapserver_config(registry: Registry, settings: Settings, dsn: str, out_dir: Path, public_url: str, *,
                           extents: Mapping[str, tuple[float, float, float, float]] | None = None,
                           layer_scale_limits: bool = False) -> MapserverFiles:
    """Write the mapfile, the MapServer config file, fontset, symbols and templates into ``out_dir``.

    ``dsn`` is the libpq connection string MapServer uses (e.g. ``Cluster.dsn``). ``extents`` (optional):
    layer extents in EPSG:4490 lon/lat by layer id, ``"*"`` for the map. They go into ``ows_extent`` only
    (capabilities), never into LAYER EXTENT, so a stale extent after a load cannot hide new features; a layer
    without one makes MapServer run ``ST_Extent`` on its table for each capabilities document.
    """
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)  # MS_ERRORFILE lives there
    rasters = find_rasters(settings, out_dir)
    mapfile = out_dir / MAPFILE_NAME
    config_file = out_dir / CONFIG_NAME
    fontset = out_dir / FONTSET_NAME
    symbols = out_dir / SYMBOLS_NAME
    templates = out_dir / TEMPLATE_DIR
    fonts = find_fonts()
    changed = write_atomic(fontset, "".join(f"{alias} {path}\n" for alias, path in fonts.items()))
    changed |= write_atomic(symbols, _symbols())
    wanted = _templates(registry, rasters)
    for name, text in sorted(wanted.items()):
        changed |= write_atomic(templates / name, text)
    for stale in sorted(templates.glob("*.html")):  # templates of layers no longer in the registry
        if stale.name not in wanted:
            stale.unlink()
            changed = True
    text = build_mapfile(registry, settings, dsn, public_url, extents=extents, rasters=rasters, fonts=fonts,
                         layer_scale_limits=layer_scale_limits)
    changed |= write_atomic(mapfile, text, mode=0o600)  # it holds the connection string: owner only
    changed |= write_atomic(config_file, build_config(mapfile, settings))
    return MapserverFiles(mapfile, config_file, fontset, symbols, templates, rasters.get("dem_hillshade"),
                          changed, tuple(sorted(rasters)))

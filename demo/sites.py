"""Trap sites: 400 m squares where the conflicting features are drawn by hand, to the metre.

Each site is cut out of the generated landscape and replaced by the shapes below (local coordinates in
metres from the site's south-west corner; the generator moves them onto the integer grid of EPSG:4547).
They plant the awkward cases a conflict check must get right: a sliver of 0.5 m² (a one-metre spike
through an edge), overlaps that fall partly in a hole, multipolygons, edges that only touch (zero area,
must not be reported) or meet at a corner, and features lying exactly on a town border. The areas quoted
in the comments are the intended ones; truth.json is computed from the final geometry, never from these.

Layers that tile the county (land use survey, urban plan, land-use plan) are filled around the designed
shapes with a background class, so every site stays a complete, non-overlapping partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import shapely
from shapely import box

SITE_SIZE = 400  # metres
BORDER_X = 200  # local x of the straight town border through a border site

# Background class of the tiling layers inside a site (paddy field; 城规 农林用地; 土规 限制建设区).
BACKGROUND = {"land_use_survey": "0101", "planned_land_use": "E2", "construction_scale_boundary": "030"}


@dataclass(frozen=True)
class Shape:
    layer: str
    name: str
    geom: shapely.Geometry
    code: str | None = None  # DLBM / YDDM / GZQLXDM for the tiling layers


@dataclass(frozen=True)
class Site:
    name: str
    title: str
    shapes: tuple[Shape, ...]
    # (check class, shape name, shape name) → trap label; "bg" names the background of a tiling layer
    traps: dict[tuple[str, str, str], str] = field(default_factory=dict)
    on_town_border: bool = False


def _spike_poly(coords) -> shapely.Polygon:
    poly = shapely.Polygon(coords)
    assert poly.is_valid, coords
    return poly


S1 = Site(
    "S1", "三条控制线：孔洞、0.5 m² 碎片、边接触与角接触",
    (
        # 城镇开发边界 with an excluded enclave (hole 100–160 × 90–150)
        Shape("urban_dev_boundary", "UDB_1", shapely.Polygon(
            [(40, 40), (240, 40), (240, 200), (40, 200)], [[(100, 90), (160, 90), (160, 150), (100, 150)]])),
        # farmland over the UDB edge, partly in the hole: 6 600 − 1 200 = 5 400 m²
        Shape("basic_farmland", "BF_1", box(130, 110, 280, 170)),
        # farmland along the UDB's east edge with a 1 m spike into it: 0.5 m²
        Shape("basic_farmland", "BF_2", _spike_poly(
            [(240, 40), (300, 40), (300, 100), (240, 100), (240, 61), (239, 60), (240, 60)])),
        Shape("basic_farmland", "BF_3", box(40, 200, 140, 260)),  # shares the UDB's north edge: 0 m²
        Shape("basic_farmland", "BF_4", box(240, 200, 280, 240)),  # meets the UDB at one corner: 0 m²
        Shape("land_use_survey", "LUS_1", box(40, 40, 120, 80), "0701"),
    ),
    {
        ("farmland_in_udb", "BF_1", "UDB_1"): "hole",
        ("farmland_in_udb", "BF_2", "UDB_1"): "sliver",
        ("farmland_in_udb", "BF_3", "UDB_1"): "edge_touch",
        ("farmland_in_udb", "BF_4", "UDB_1"): "corner_touch",
    },
)

S2 = Site(
    "S2", "生态保护红线：多部件、0.5 m² 碎片、边接触",
    (
        Shape("eco_red_line", "ERL_1", shapely.MultiPolygon([box(40, 40, 120, 120), box(200, 40, 280, 120)])),
        Shape("urban_dev_boundary", "UDB_2", box(100, 60, 220, 100)),  # hits both parts: 800 + 800 m²
        Shape("urban_dev_boundary", "UDB_3", box(280, 40, 340, 120)),  # shares an edge with part 2: 0 m²
        Shape("basic_farmland", "BF_5", box(40, 200, 120, 280)),
        Shape("eco_red_line", "ERL_2", box(110, 220, 200, 260)),  # 400 m² of farmland
        Shape("basic_farmland", "BF_6", box(240, 200, 320, 280)),
        Shape("eco_red_line", "ERL_3", _spike_poly(  # 1 m spike into BF_6: 0.5 m²
            [(320, 200), (360, 200), (360, 280), (320, 280), (320, 241), (319, 240), (320, 240)])),
        Shape("basic_farmland", "BF_7", box(200, 300, 260, 360)),
        Shape("eco_red_line", "ERL_4", box(260, 300, 320, 360)),  # shares an edge with BF_7: 0 m²
        Shape("land_use_survey", "LUS_2", box(40, 40, 120, 120), "0301"),
        Shape("land_use_survey", "LUS_3", box(200, 40, 280, 120), "0301"),
        Shape("land_use_survey", "LUS_4", box(260, 300, 320, 360), "0305"),
    ),
    {
        ("redline_udb", "ERL_1", "UDB_2"): "multipolygon",
        ("redline_udb", "ERL_1", "UDB_3"): "edge_touch",
        ("redline_farmland", "ERL_3", "BF_6"): "sliver",
        ("redline_farmland", "ERL_4", "BF_7"): "edge_touch",
    },
)

# The town border runs north-south along local x = 200: west of it one town, east of it the other.
S3 = Site(
    "S3", "乡镇界线上的要素：冲突落在另一乡镇、沿界线的边接触",
    (
        Shape("eco_red_line", "ERL_5", box(100, 130, 200, 300)),  # west town, east edge on the border
        Shape("urban_dev_boundary", "UDB_4", box(150, 150, 350, 250)),  # mostly east: 5 000 m² in the west
        Shape("urban_dev_boundary", "UDB_6", box(200, 260, 260, 320)),  # east, touches ERL_5 on the border
        Shape("basic_farmland", "BF_8", box(100, 40, 200, 120)),  # west, east edge on the border
        Shape("basic_farmland", "BF_9", box(200, 40, 300, 120)),  # east, west edge on the border
        Shape("urban_dev_boundary", "UDB_5", box(170, 60, 250, 100)),  # 1 200 m² west + 2 000 m² east
    ),
    {
        ("redline_udb", "ERL_5", "UDB_4"): "town_border",
        ("redline_udb", "ERL_5", "UDB_6"): "edge_touch",
        ("farmland_in_udb", "BF_8", "UDB_5"): "town_border",
        ("farmland_in_udb", "BF_9", "UDB_5"): "town_border",
    },
    on_town_border=True,
)

S4 = Site(
    "S4", "两规差异 A/B/C 与规划占用耕地：孔洞、0.5 m² 碎片、多部件、边接触",
    (
        # urban plan: residential block with a non-construction hole (90–150 × 90–150)
        Shape("planned_land_use", "PLU_1", shapely.Polygon(
            [(40, 40), (240, 40), (240, 200), (40, 200)], [[(90, 90), (150, 90), (150, 150), (90, 150)]]), "R2"),
        # industry with a 1 m spike south, beyond the land-use plan: 0.5 m² of class A
        Shape("planned_land_use", "PLU_2", _spike_poly(
            [(260, 140), (300, 140), (300, 139), (301, 140), (360, 140), (360, 200), (260, 200)]), "M1"),
        Shape("planned_land_use", "PLU_3", box(40, 240, 120, 300), "R2"),  # agrees exactly with CSB_3
        Shape("planned_land_use", "PLU_4", shapely.MultiPolygon(  # school in two parts, all class A
            [box(160, 240, 200, 300), box(240, 240, 280, 300)]), "A33"),
        # land-use plan 允许建设区: west part of PLU_1 (its hole gives class B), PLU_2 with a spike north
        Shape("construction_scale_boundary", "CSB_1", box(40, 40, 130, 200), "010"),
        Shape("construction_scale_boundary", "CSB_2", _spike_poly(
            [(260, 140), (360, 140), (360, 200), (311, 200), (310, 201), (310, 200), (260, 200)]), "010"),
        Shape("construction_scale_boundary", "CSB_3", box(40, 240, 120, 300), "010"),
        # permanent farmland under the east part of PLU_1 (class C, cut out of its class A)
        Shape("basic_farmland", "BF_10", box(200, 60, 300, 120)),
        Shape("basic_farmland", "BF_11", box(40, 300, 120, 340)),  # shares PLU_3's north edge: 0 m²
        # what is on the ground: built-up where the plans agree, paddy fields elsewhere (background)
        Shape("land_use_survey", "LUS_5", box(40, 40, 130, 200), "0701"),
        Shape("land_use_survey", "LUS_6", box(260, 140, 360, 200), "0601"),
        Shape("land_use_survey", "LUS_7", box(40, 240, 120, 300), "0702"),
    ),
    {
        ("A", "PLU_1", "bg"): "hole",
        ("A", "PLU_2", "bg"): "sliver",
        ("A", "PLU_3", "bg"): "edge_touch",
        ("A", "PLU_4", "bg"): "multipolygon",
        ("B", "CSB_1", "bg"): "hole",
        ("B", "CSB_2", "bg"): "sliver",
        ("B", "CSB_3", "bg"): "edge_touch",
        ("C", "PLU_1", "BF_10"): "hole",
        ("C", "PLU_3", "BF_11"): "edge_touch",
        ("cropland", "PLU_1", "bg"): "hole",
        ("cropland", "PLU_2", "bg"): "sliver",
        ("cropland", "PLU_3", "bg"): "edge_touch",
        ("cropland", "PLU_4", "bg"): "multipolygon",
    },
)

SITES: tuple[Site, ...] = (S1, S2, S3, S4)
ZERO_AREA_TRAPS = ("edge_touch", "corner_touch")

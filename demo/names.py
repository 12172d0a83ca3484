"""Plausible Chinese names for synthetic features (villages, roads, facilities, projects, companies).

Town names are real (NBS 2022); the famous places (黄兴故居, 杨开慧故居, 田汉故居, 徐特立故居, 松雅湖, 浔龙河,
黄花国际机场) are real places of 长沙县 used as name anchors only — their geometry here is synthetic.
Everything else is assembled from common name parts and does not describe a real feature.
"""

from __future__ import annotations

import numpy as np

VILLAGE_PARTS_A = ("金", "石", "双", "新", "龙", "桃", "枫", "花", "栗", "青", "和", "光", "团", "永", "福", "高", "仙",
                   "松", "柏", "竹", "茶", "梅", "荷", "杉", "白", "东", "西", "南", "北", "大", "长", "清", "安", "平")
VILLAGE_PARTS_B = ("塘", "桥", "山", "冲", "湾", "坪", "园", "岭", "田", "湖", "江", "林", "源", "华", "兴", "丰", "联",
                   "星", "溪", "坡", "垅", "铺", "港", "洲")
ROAD_NAMES = ("开元", "星沙", "东四", "漓湘", "板仓", "人民", "望仙", "凉塘", "天华", "特立", "松雅", "黄兴",
              "泉塘", "湘龙",
              "蓝田", "北斗", "时代", "车站", "茶场", "华润", "梨江", "杨梓", "螺丝塘", "东六", "红枫", "盼盼", "映霞",
              "东十", "星湖", "金茂", "榔梨", "机场", "临空", "空港", "黄龙", "捞刀河", "浏阳河", "果园", "安沙",
              "金井")
ROAD_SUFFIX = ("路", "大道", "街", "路", "路", "大道")
HILL_NAMES = ("影珠山", "白石洞", "金井岭", "双江岭", "高桥岭", "北山坡", "福临岭", "开慧峰", "青山岭", "石灰冲",
              "百丈岭", "莲花山")
TREES = ("马尾松", "杉木", "樟树", "毛竹", "油茶", "湿地松", "枫香", "栎类")
COMPANY_WORDS = ("星城", "湘江", "麓谷", "远大", "三一", "华泰", "湘丰", "长运", "康达", "博创", "中联", "金霞", "恒信",
                 "力拓", "方正", "瑞丰", "永安", "鼎盛")
INDUSTRIES = ("机械制造", "汽车零部件", "新材料", "电子信息", "食品加工", "生物医药", "物流", "精细化工", "电镀",
              "印染", "建材")
PROJECT_THEMES = (("产业园", "产业"), ("智能制造基地", "产业"), ("安置小区", "公共服务"), ("中学", "公共服务"),
                  ("小学", "公共服务"), ("社区卫生服务中心", "公共服务"), ("污水处理厂扩建", "市政"),
                  ("供水管网改造", "市政"), ("道路提质改造", "交通"), ("立交工程", "交通"), ("220kV变电站", "能源"),
                  ("天然气门站", "能源"), ("堤防加固", "水利"), ("泵站", "水利"), ("物流园", "产业"),
                  ("文体中心", "公共服务"))
HISTORIC = (  # (name, lon, lat, level) – anchors only; positions are approximate
    ("黄兴故居", 113.150, 28.098, "全国重点"),
    ("杨开慧故居", 113.262, 28.603, "全国重点"),
    ("田汉故居", 113.176, 28.352, "省级"),
    ("徐特立故居", 113.330, 28.122, "省级"),
    ("㮾梨陶公庙", 113.108, 28.146, "全国重点"),
    ("许光达故居", 113.097, 28.166, "省级"),
)


def pick(rng: np.random.Generator, pool, n: int | None = None):
    if n is None:
        return pool[int(rng.integers(len(pool)))]
    return [pool[int(i)] for i in rng.integers(len(pool), size=n)]


def village_name(rng: np.random.Generator) -> str:
    return pick(rng, VILLAGE_PARTS_A) + pick(rng, VILLAGE_PARTS_B) + "村"


def road_name(rng: np.random.Generator) -> str:
    return pick(rng, ROAD_NAMES) + pick(rng, ROAD_SUFFIX)


def company(rng: np.random.Generator, town_short: str, industry: str | None = None) -> str:
    industry = industry or pick(rng, INDUSTRIES)
    return f"湖南{pick(rng, COMPANY_WORDS)}{industry}有限公司（{town_short}）"


def credit_code(rng: np.random.Generator) -> str:
    """An 18-character 统一社会信用代码 of the right shape (not a valid check digit; synthetic)."""
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    body = "".join(chars[int(i)] for i in rng.integers(len(chars), size=9))
    return f"914301{int(rng.integers(10, 99))}" + body + chars[int(rng.integers(len(chars)))]

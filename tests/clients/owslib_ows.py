"""OWSLib against Lantu's /wms, /wfs and /wmts (run by tests/test_ows.py with the main venv's OWSLib and with
the newest OWSLib in a side venv). Standard library + OWSLib only; the caller checks the answers.

usage: python owslib_ows.py BASE_URL OUT_DIR [--tiles]

Reads every layer: a WMS 1.3.0 GetMap (EPSG:4490) of each named layer over its own bounding box, a WFS 2.0
GetFeature (COUNT=1) of each feature type and, with --tiles, a WMTS tile of each layer. Images go to OUT_DIR;
a JSON summary goes to stdout.
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import owslib
from owslib.wfs import WebFeatureService
from owslib.wms import WebMapService
from owslib.wmts import WebMapTileService

WFS_NS = "{http://www.opengis.net/wfs/2.0}"


def main() -> None:
    base, out = sys.argv[1], Path(sys.argv[2])
    tiles = "--tiles" in sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"version": owslib.__version__}

    wms = WebMapService(f"{base}/wms", version="1.3.0", timeout=60)
    result["wms_layers"] = {name: {"title": layer.title, "parent": layer.parent.title if layer.parent else None,
                                   "crs": "EPSG:4547" in layer.crsOptions,
                                   "bbox": list(layer.boundingBoxWGS84) if layer.boundingBoxWGS84 else None}
                            for name, layer in wms.contents.items()}

    def getmap(name: str) -> tuple[str, str]:
        x0, y0, x1, y1 = wms[name].boundingBoxWGS84
        pad = 0.002
        # OWSLib is given x = lon and sends the 1.3.0 EPSG:4490 BBOX as lat,lon itself.
        img = wms.getmap(layers=[name], styles=[""], srs="EPSG:4490", bbox=(x0 - pad, y0 - pad, x1 + pad, y1 + pad),
                         size=(96, 96), format="image/png", transparent=True)
        (out / f"{name}.png").write_bytes(img.read())
        return name, img.info()["Content-Type"]

    wfs = WebFeatureService(f"{base}/wfs", version="2.0.0", timeout=60)
    result["wfs_types"] = {name: wfs[name].title for name in wfs.contents}

    def getfeature(name: str) -> tuple[str, int]:
        body = wfs.getfeature(typename=[name], maxfeatures=1).read()
        root = ElementTree.fromstring(body)
        return name, len(root.findall(f"{WFS_NS}member"))

    wmts = WebMapTileService(f"{base}/wmts", timeout=60)
    result["wmts_layers"] = {name: sorted(layer.tilematrixsetlinks) for name, layer in wmts.contents.items()}
    result["wmts_sets"] = {name: {"crs": tms.crs, "matrices": list(tms.tilematrix)[:3]}
                           for name, tms in wmts.tilematrixsets.items()}
    # The REST capabilities (ResourceURL templates): OWSLib requests tiles from the template it finds there.
    rest = WebMapTileService(f"{base}/wmts/1.0.0/WMTSCapabilities.xml", timeout=60)

    def gettile(name: str) -> tuple[str, str]:
        # CGCS2000Quad level 8 (天地图 level 8): the tile holding 长沙县 (113.2°E, 28.3°N).
        tile = rest.gettile(layer=name, tilematrixset="CGCS2000Quad", tilematrix="08", row=43, column=208,
                            format="image/png")
        (out / f"{name}.tile.png").write_bytes(tile.read())
        return name, tile.info()["Content-Type"]

    with ThreadPoolExecutor(4) as pool:
        named = [n for n, layer in wms.contents.items() if not layer.layers]  # leaves: no groups
        result["getmap"] = dict(pool.map(getmap, named))
        result["getfeature"] = dict(pool.map(getfeature, list(wfs.contents)))
        if tiles:
            result["gettile"] = dict(pool.map(gettile, list(rest.contents)))
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()

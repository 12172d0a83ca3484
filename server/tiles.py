"""OGC API – Tiles: tile matrix sets, vector tilesets per collection and the combined ``blueprint``
tileset, MVT built in PostGIS, cached on disk and invalidated from the change log."""

from __future__ import annotations

import threading
import zlib

from flask import Blueprint, Response, current_app, request

from lantu.config.registry import Layer
from lantu.providers import crs as crs_mod
from lantu.providers.changelog import changes_since, current_change
from lantu.providers.features import FeatureSource, Property
from lantu.providers.mvt import TileLayer, TileRequest, fetch_tile
from lantu.server.context import base_url, collections, lantu
from lantu.server.errors import InvalidParameter, NotFound
from lantu.server.formats import json_response, whole_number
from lantu.server.policy import allowed_layers
from lantu.tiles.cache import BLUEPRINT, TileCache
from lantu.tiles.tms import Grid, grids, published_document

bp = Blueprint("tiles", __name__)
MVT = "application/vnd.mapbox-vector-tile"
REL = "http://www.opengis.net/def/rel/ogc/1.0/"
GEOMETRY_TYPES = {"Polygon": "polygons", "LineString": "lines", "Point": "points"}
DRAW_ORDER = {"Polygon": 0, "LineString": 1, "Point": 2}


def tile_query_slots() -> threading.BoundedSemaphore:
    """At most ``tile_queries_per_worker`` tile queries of this process run in PostgreSQL at once: ST_AsMVT is
    CPU-bound, and more busy backends than cores only adds switching (bench/tiles measured ~0.5 ms more
    PostgreSQL CPU per tile with 8 backends on 2 cores than with 4). Cached tiles never wait for a slot."""
    app = current_app
    if "lantu.tile_slots" not in app.extensions:
        app.extensions["lantu.tile_slots"] = threading.BoundedSemaphore(lantu().settings.tile_queries_per_worker)
    return app.extensions["lantu.tile_slots"]


def tile_cache() -> TileCache:
    app = current_app
    if "lantu.tile_cache" not in app.extensions:
        ctx = lantu()
        app.extensions["lantu.tile_cache"] = TileCache(
            ctx.settings.home / "cache" / "mvt", dict(grids()),
            lambda after: changes_since(ctx.pool, after), lambda: current_change(ctx.pool))
    return app.extensions["lantu.tile_cache"]





def _grid(tms_id: str) -> Grid:
    grid = grids().get(tms_id)
    if grid is None:
        raise NotFound(f"no tile matrix set {tms_id[:40]!r}; see /tileMatrixSets")
    return grid


def _source(cid: str) -> FeatureSource:
    src = collections().source(cid)
    if src is None or not src.spatial:
        raise NotFound(f"no collection {cid[:60]!r} with tiles; see /collections")
    return src


# ---- tile matrix sets ---------------------------------------------------------------------------
def _tms_link(grid: Grid) -> dict:
    return {"rel": REL + "tiling-scheme", "type": "application/json", "title": grid.tms.title or grid.id,
            "href": f"{base_url()}/tileMatrixSets/{grid.id}"}


@bp.get("/tileMatrixSets")
def tile_matrix_sets() -> Response:
    items = [{"id": g.id, "title": g.tms.title or g.id, "uri": g.uri, "crs": g.crs_uri,
              "links": [dict(_tms_link(g), rel="self")]} for g in grids().values()]
    return json_response({"tileMatrixSets": items, "links": [{"rel": "self", "type": "application/json",
                                                               "href": f"{base_url()}/tileMatrixSets"}]})


@bp.get("/tileMatrixSets/<tms_id>")
def tile_matrix_set(tms_id: str) -> Response:
    return json_response(published_document(_grid(tms_id)))


# ---- which layers and attributes go into a tile ---------------------------------------------------
def _key_properties(src: FeatureSource, layer: Layer | None) -> tuple[Property, ...]:
    if layer is None:
        return src.properties
    wanted = {"BSM", layer.style.label_field, layer.style.classify_by}
    return tuple(p for p in src.properties if p.name in wanted)


def _tile_layer(cid: str, web_zoom: int) -> TileLayer:
    src = _source(cid)
    layer = lantu().registry.get(cid)
    detailed = layer is None or web_zoom >= (layer.min_zoom or 0) + 2
    return TileLayer(cid, src, src.properties if detailed else _key_properties(src, layer))


def _served_ids() -> list[str]:
    """The vector layers served as collections, in registry order."""
    return [layer.id for layer in lantu().registry.vector_layers() if layer.id in collections().infos]


def _viewable_ids() -> list[str]:
    return allowed_layers("view", _served_ids())


def _blueprint_name(viewable: list[str]) -> str:
    """The cache tileset of the blueprint as this caller may see it: one per set of viewable layers."""
    if viewable == _served_ids():
        return BLUEPRINT
    return f"{BLUEPRINT}~{zlib.crc32(','.join(viewable).encode()):08x}"


def _blueprint_layers(web_zoom: int, viewable: set[str]) -> list[TileLayer]:
    chosen = [layer for layer in lantu().registry.vector_layers()
              if (layer.min_zoom or 0) <= web_zoom <= layer.max_zoom and layer.id in viewable]
    chosen.sort(key=lambda layer: (DRAW_ORDER[layer.geometry], layer.seq))
    return [_tile_layer(layer.id, web_zoom) for layer in chosen]


# ---- tiles ----------------------------------------------------------------------------------------
def _tile_address(grid: Grid, z: str, y: str, x: str) -> tuple[int, int, int]:
    for name, value in (("tileMatrix", z), ("tileRow", y), ("tileCol", x)):
        if not (whole_number(value)) or len(value) > 9:
            raise InvalidParameter(f"{name} must be a non-negative whole number, not {value[:20]!r}", locator=name)
    level, row, col = int(z), int(y), int(x)
    if not grid.valid(level, row, col):
        raise NotFound(f"tile {level}/{row}/{col} is outside tile matrix set {grid.id} "
                       f"(levels {grid.first_level}–{grid.last_level})")
    return level, row, col


def _tile_response(tileset: str, grid: Grid, z: str, y: str, x: str, layers_for) -> Response:
    level, row, col = _tile_address(grid, z, y, x)
    cache = tile_cache()
    data = cache.get(tileset, grid.id, level, row, col)
    state = "hit"
    if data is None:
        state = "miss"
        layers = layers_for(grid.equivalent_web_zoom(level))
        with tile_query_slots():
            data, version = fetch_tile(lantu().pool, layers, TileRequest(grid.srid, grid.bounds(level, row, col)))
        cache.put(tileset, grid.id, level, row, col, data, version)
    # A content ETag (same bytes → same tag, also after an invalidation); CRC-32 is several times cheaper
    # than MD5 on the megabyte tiles of low zooms, and the length makes collisions practically irrelevant.
    etag = f"{len(data):x}-{zlib.crc32(data):08x}"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=60", "X-Lantu-Cache": state}
    if request.if_none_match.contains_weak(etag):
        return Response(status=304, headers=headers)
    if not data:
        return Response(status=204, headers=headers)
    return Response(data, mimetype=MVT, headers=headers)


@bp.get("/collections/<cid>/tiles/<tms_id>/<z>/<y>/<x>")
def collection_tile(cid: str, tms_id: str, z: str, y: str, x: str) -> Response:
    _source(cid)
    return _tile_response(cid, _grid(tms_id), z, y, x, lambda wz: [_tile_layer(cid, wz)])


@bp.get("/tiles/blueprint/<tms_id>/<z>/<y>/<x>")
def blueprint_tile(tms_id: str, z: str, y: str, x: str) -> Response:
    viewable = _viewable_ids()  # once per request: names the cache variant and, on a miss, the layers drawn
    return _tile_response(_blueprint_name(viewable), _grid(tms_id), z, y, x,
                          lambda web_zoom: _blueprint_layers(web_zoom, set(viewable)))


# ---- tileset metadata -----------------------------------------------------------------------------
def _layer_entry(cid: str, grid: Grid) -> dict:
    info = collections().infos[cid]
    layer = lantu().registry.get(cid)
    entry = {"id": cid, "title": info.title_zh, "description": info.title_en, "dataType": "vector",
             "geometryType": GEOMETRY_TYPES.get(info.source.geometry_type, "geometries"),
             "propertiesSchema": {"type": "object", "properties": {
                 p.name: {"title": p.title or p.name, "type": "string" if p.type in ("date", "timestamp") else p.type}
                 for p in info.source.properties}}}
    if layer is not None:  # registry zooms are WebMercator zooms: map them onto this grid's levels
        levels = range(grid.first_level, grid.last_level + 1)
        inside = [lv for lv in levels if (layer.min_zoom or 0) <= grid.equivalent_web_zoom(lv) <= layer.max_zoom]
        if inside:
            entry["minTileMatrix"], entry["maxTileMatrix"] = str(inside[0]), str(inside[-1])
    return entry


def _tileset(base: str, title: str, grid: Grid, layer_ids: list[str]) -> dict:
    collections().api()  # refreshes the extents once the change log has moved (as the features routes do)
    boxes = [collections().extents[c] for c in layer_ids if c in collections().extents]
    doc = {
        "title": f"{title} ({grid.id})", "dataType": "vector", "crs": grid.crs_uri,
        "tileMatrixSetURI": grid.uri,
        "links": [
            {"rel": "self", "type": "application/json", "href": f"{base}/{grid.id}"},
            _tms_link(grid),
            {"rel": "item", "type": MVT, "templated": True, "title": "Mapbox vector tile",
             "href": f"{base}/{grid.id}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"},
        ],
        "layers": [_layer_entry(c, grid) for c in layer_ids],
    }
    if grid.id == "WebMercatorQuad":
        doc["links"].append({"rel": "alternate", "type": "application/vnd.mapbox.tile+json", "title": "TileJSON",
                             "href": f"{base}/{grid.id}?f=tilejson"})
    if boxes:
        doc["boundingBox"] = {"crs": crs_mod.CRS84_URI,
                              "lowerLeft": [min(b[0] for b in boxes), min(b[1] for b in boxes)],
                              "upperRight": [max(b[2] for b in boxes), max(b[3] for b in boxes)]}
    return doc


def _tilejson(doc: dict, grid: Grid) -> dict:
    if grid.id != "WebMercatorQuad":
        raise InvalidParameter("TileJSON describes WebMercatorQuad tilesets only; use the OGC tileset document",
                               locator="f")
    template = next(link["href"] for link in doc["links"] if link["rel"] == "item")
    tiles = template.replace("{tileMatrix}", "{z}").replace("{tileRow}", "{y}").replace("{tileCol}", "{x}")
    out = {"tilejson": "3.0.0", "name": doc["title"], "tiles": [tiles], "minzoom": 0, "maxzoom": 22,
           "vector_layers": [{"id": layer["id"], "description": layer["title"],
                              "fields": {k: v["type"] for k, v in layer["propertiesSchema"]["properties"].items()},
                              "minzoom": int(layer.get("minTileMatrix", 0)),
                              "maxzoom": int(layer.get("maxTileMatrix", 22))} for layer in doc["layers"]]}
    if "boundingBox" in doc:
        out["bounds"] = doc["boundingBox"]["lowerLeft"] + doc["boundingBox"]["upperRight"]
    return out


def _tileset_response(doc: dict, grid: Grid) -> Response:
    fmt = request.args.get("f", "json")
    if fmt == "tilejson":
        return json_response(_tilejson(doc, grid))
    if fmt not in ("json", "application/json"):
        raise InvalidParameter(f"f must be json or tilejson, not {fmt[:20]!r}", locator="f")
    return json_response(doc)


def _tilesets_list(base: str, title: str, self_href: str) -> dict:
    sets = []
    for grid in grids().values():
        sets.append({"title": f"{title} ({grid.id})", "dataType": "vector", "crs": grid.crs_uri,
                     "tileMatrixSetURI": grid.uri,
                     "links": [{"rel": "self", "type": "application/json", "href": f"{base}/{grid.id}"},
                               _tms_link(grid),
                               {"rel": "item", "type": MVT, "templated": True,
                                "href": f"{base}/{grid.id}/{{tileMatrix}}/{{tileRow}}/{{tileCol}}"}]})
    return {"tilesets": sets, "links": [{"rel": "self", "type": "application/json", "href": self_href}]}


@bp.get("/collections/<cid>/tiles")
def collection_tilesets(cid: str) -> Response:
    _source(cid)
    base = f"{base_url()}/collections/{cid}/tiles"
    return json_response(_tilesets_list(base, collections().infos[cid].title_zh, base))


@bp.get("/collections/<cid>/tiles/<tms_id>")
def collection_tileset(cid: str, tms_id: str) -> Response:
    _source(cid)
    grid = _grid(tms_id)
    doc = _tileset(f"{base_url()}/collections/{cid}/tiles", collections().infos[cid].title_zh, grid, [cid])
    doc["links"].append({"rel": "collection", "type": "application/json", "href": f"{base_url()}/collections/{cid}"})
    return _tileset_response(doc, grid)


@bp.get("/tiles")
def blueprint_tilesets() -> Response:
    return json_response(_tilesets_list(f"{base_url()}/tiles/blueprint", "一张蓝图 blueprint", f"{base_url()}/tiles"))


@bp.get("/tiles/blueprint/<tms_id>")
def blueprint_tileset(tms_id: str) -> Response:
    grid = _grid(tms_id)
    ids = _viewable_ids()
    return _tileset_response(_tileset(f"{base_url()}/tiles/blueprint", "一张蓝图 blueprint", grid, ids), grid)

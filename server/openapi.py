"""``/openapi``: a self-contained OpenAPI 3.0 document of the OGC API endpoints (no remote ``$ref``, so
validators and schemathesis work offline)."""

from __future__ import annotations

from flask import Blueprint, Response, json, render_template, request

from lantu.providers import crs as crs_mod
from lantu.server.context import collections, lantu
from lantu.server.formats import negotiate
from lantu.tiles.tms import grids

bp = Blueprint("openapi", __name__)
OAS_MEDIA = "application/vnd.oai.openapi+json;version=3.0"


def _param(name: str, schema: dict, description: str, location: str = "query", **extra) -> dict:
    return {"name": name, "in": location, "required": location == "path", "schema": schema,
            "description": description, **extra}


def _components(max_limit: int, default_limit: int) -> dict:
    link = {"type": "object", "required": ["href"], "properties": {
        "href": {"type": "string"}, "rel": {"type": "string"}, "type": {"type": "string"},
        "title": {"type": "string"}, "hreflang": {"type": "string"}}}
    crs_schema = {"type": "string", "enum": crs_mod.OFFERED_URIS}
    return {
        "schemas": {
            "link": link,
            "exception": {"type": "object", "required": ["title", "status"], "properties": {
                "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"}, "code": {"type": "string"}}},
            "landingPage": {"type": "object", "required": ["links"], "properties": {
                "title": {"type": "string"}, "description": {"type": "string"},
                "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
            "object": {"type": "object"},
            "confClasses": {"type": "object", "required": ["conformsTo"], "properties": {
                "conformsTo": {"type": "array", "items": {"type": "string"}}}},
            "collection": {"type": "object", "required": ["id", "links"], "properties": {
                "id": {"type": "string"}, "title": {"type": "string"}, "description": {"type": "string"},
                "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                "extent": {"type": "object"}, "itemType": {"type": "string"},
                "crs": {"type": "array", "items": {"type": "string"}}, "storageCrs": {"type": "string"}}},
            "collections": {"type": "object", "required": ["links", "collections"], "properties": {
                "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                "collections": {"type": "array", "items": {"$ref": "#/components/schemas/collection"}}}},
            "featureGeoJSON": {"type": "object", "required": ["type", "geometry", "properties"], "properties": {
                "type": {"type": "string", "enum": ["Feature"]}, "id": {"type": ["string", "integer"]},
                "geometry": {"nullable": True, "type": "object"}, "properties": {"nullable": True, "type": "object"},
                "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}}}},
            "featureCollectionGeoJSON": {"type": "object", "required": ["type", "features"], "properties": {
                "type": {"type": "string", "enum": ["FeatureCollection"]},
                "features": {"type": "array", "items": {"$ref": "#/components/schemas/featureGeoJSON"}},
                "links": {"type": "array", "items": {"$ref": "#/components/schemas/link"}},
                "timeStamp": {"type": "string", "format": "date-time"},
                "numberMatched": {"type": "integer", "minimum": 0},
                "numberReturned": {"type": "integer", "minimum": 0}}},
        },
        "parameters": {
            "collectionId": _param("collectionId", {"type": "string"}, "collection id", "path"),
            "featureId": _param("featureId", {"type": "string"}, "feature id", "path"),
            "f": _param("f", {"type": "string", "enum": ["json", "html"]}, "output format"),
            "fItems": _param("f", {"type": "string", "enum": ["json", "html", "csv"]}, "output format"),
            "limit": _param("limit", {"type": "integer", "minimum": 1, "maximum": max_limit,
                                      "default": default_limit}, "page size", style="form", explode=False),
            "offset": _param("offset", {"type": "integer", "minimum": 0, "default": 0}, "start index"),
            "bbox": _param("bbox", {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
                           "bounding box (in bbox-crs axis order; CRS84 lon/lat by default)", style="form",
                           explode=False),
            "bbox-crs": _param("bbox-crs", crs_schema, "CRS of bbox"),
            "crs": _param("crs", crs_schema, "output CRS"),
            "datetime": _param("datetime", {"type": "string"}, "instant or interval (RFC 3339, '..' open)"),
            "properties": _param("properties", {"type": "array", "items": {"type": "string"}},
                                 "properties to return", style="form", explode=False),
            "sortby": _param("sortby", {"type": "array", "items": {"type": "string"}}, "sort keys, -NAME descending",
                             style="form", explode=False),
            "filter": _param("filter", {"type": "string"}, "CQL2 filter"),
            "filter-lang": _param("filter-lang", {"type": "string", "enum": ["cql2-text", "cql2-json"],
                                                  "default": "cql2-text"}, "filter language"),
            "filter-crs": _param("filter-crs", crs_schema, "CRS of geometry literals in filter"),
            "tileMatrixSetId": _param("tileMatrixSetId", {"type": "string", "enum": list(grids())},
                                      "tile matrix set", "path"),
            "tileMatrix": _param("tileMatrix", {"type": "string"}, "level (天地图 numbering on CGCS2000Quad)", "path"),
            "tileRow": _param("tileRow", {"type": "integer", "minimum": 0}, "row", "path"),
            "tileCol": _param("tileCol", {"type": "integer", "minimum": 0}, "column", "path"),
            "fTileset": _param("f", {"type": "string", "enum": ["json", "tilejson"]}, "tileset format"),
            "skipGeometry": _param("skipGeometry", {"type": "boolean", "default": False}, "omit geometries"),
        },
        "responses": {
            "400": {"description": "invalid parameter", "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/exception"}}}},
            "404": {"description": "not found", "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/exception"}}}},
        },
    }


def _get(summary: str, params: list[str], schema: str, media: str = "application/json", op: str = "") -> dict:
    return {"get": {"summary": summary, "operationId": op or summary.replace(" ", "_"),
                    "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
                    "responses": {"200": {"description": summary, "content": {
                        media: {"schema": {"$ref": f"#/components/schemas/{schema}"}},
                        "text/html": {"schema": {"type": "string"}}}},
                        "400": {"$ref": "#/components/responses/400"},
                        "404": {"$ref": "#/components/responses/404"}}}}


def _tile(params: list[str], op: str) -> dict:
    return {"get": {"summary": "Mapbox vector tile", "operationId": op,
                    "parameters": [{"$ref": f"#/components/parameters/{p}"} for p in params],
                    "responses": {"200": {"description": "tile", "content": {
                        "application/vnd.mapbox-vector-tile": {"schema": {"type": "string", "format": "binary"}}}},
                        "204": {"description": "no feature in this tile"},
                        "400": {"$ref": "#/components/responses/400"},
                        "404": {"$ref": "#/components/responses/404"}}}}


def document() -> dict:
    settings = lantu().settings
    ids = sorted(collections().infos)
    items_params = ["collectionId", "fItems", "limit", "offset", "bbox", "bbox-crs", "crs", "datetime",
                    "properties", "sortby", "filter", "filter-lang", "filter-crs", "skipGeometry"]
    doc = {
        "openapi": "3.0.3",
        "info": {"title": "蓝图 Lantu OGC API", "version": "0.1.0",
                 "description": "OGC API – Features (Parts 1, 2, 3) of the one blueprint (CGCS2000)."},
        "servers": [{"url": settings.public_url}],
        "paths": {
            "/": _get("landing page", ["f"], "landingPage", op="getLandingPage"),
            "/conformance": _get("conformance classes", ["f"], "confClasses", op="getConformance"),
            "/collections": _get("collections", ["f"], "collections", op="getCollections"),
            "/collections/{collectionId}": _get("collection", ["collectionId", "f"], "collection",
                                                op="describeCollection"),
            "/collections/{collectionId}/queryables": _get("queryables", ["collectionId", "f"], "collection",
                                                           "application/schema+json", op="getQueryables"),
            "/collections/{collectionId}/items": _get("features", items_params, "featureCollectionGeoJSON",
                                                      "application/geo+json", op="getFeatures"),
            "/tileMatrixSets": _get("tile matrix sets", [], "object", op="getTileMatrixSetsList"),
            "/tileMatrixSets/{tileMatrixSetId}": _get("tile matrix set", ["tileMatrixSetId"], "object",
                                                      op="getTileMatrixSet"),
            "/tiles": _get("blueprint tilesets", [], "object", op="getDatasetTilesets"),
            "/tiles/blueprint/{tileMatrixSetId}": _get("blueprint tileset", ["tileMatrixSetId", "fTileset"], "object",
                                                       op="getDatasetTileset"),
            "/tiles/blueprint/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": _tile(
                ["tileMatrixSetId", "tileMatrix", "tileRow", "tileCol"], "getDatasetTile"),
            "/collections/{collectionId}/tiles": _get("collection tilesets", ["collectionId"], "object",
                                                      op="getCollectionTilesets"),
            "/collections/{collectionId}/tiles/{tileMatrixSetId}": _get(
                "collection tileset", ["collectionId", "tileMatrixSetId", "fTileset"], "object",
                op="getCollectionTileset"),
            "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}": _tile(
                ["collectionId", "tileMatrixSetId", "tileMatrix", "tileRow", "tileCol"], "getCollectionTile"),
            "/collections/{collectionId}/items/{featureId}": _get(
                "feature", ["collectionId", "featureId", "f", "crs", "properties"], "featureGeoJSON",
                "application/geo+json", op="getFeature"),
        },
        "components": _components(settings.max_limit, settings.default_limit),
    }
    doc["components"]["parameters"]["collectionId"]["schema"]["enum"] = ids
    doc["paths"]["/collections/{collectionId}/queryables"]["get"]["responses"]["200"]["content"] = {
        "application/schema+json": {"schema": {"type": "object"}}, "text/html": {"schema": {"type": "string"}}}
    doc["paths"]["/collections/{collectionId}/items"]["get"]["responses"]["200"]["content"]["text/csv"] = {
        "schema": {"type": "string"}}
    return doc


@bp.get("/openapi")
def openapi() -> Response:
    doc = document()
    if negotiate(request) == "html":
        return Response(render_template("openapi.html", doc=doc, text=json.dumps(doc, ensure_ascii=False, indent=1)),
                        mimetype="text/html")
    return Response(json.dumps(doc, ensure_ascii=False), mimetype=OAS_MEDIA)

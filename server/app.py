"""Flask application factory: ``create_app(settings=None, registry=None)``. No I/O at import time."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from lantu.config.policy import load_policy
from lantu.config.registry import Registry, load_registry
from lantu.config.settings import Settings, load_settings
from lantu.providers.pool import get_pool
from lantu.providers.pygeoapi_provider import bind
from lantu.server import (
    coverages,
    csw,
    features,
    health,
    openapi,
    ows,
    policy,
    processes,
    records,
    tiles,
    transactions,
    viewer,
    wmts,
)
from lantu.server.collections import CollectionInfo, Collections, infos_from_registry
from lantu.server.context import LantuContext
from lantu.server.errors import register_error_handlers
from lantu.server.identity import IdentityResolver


def create_app(settings: Settings | None = None, registry: Registry | None = None,
               extra_collections: Mapping[str, CollectionInfo] | None = None) -> Flask:
    """Build the application. ``extra_collections`` serves more tables beside the registry's layers
    (the CQL2 conformance data in tests, for example)."""
    settings = settings or load_settings()
    registry = registry or load_registry()
    # Explicit paths: Flask cannot locate an implicit namespace package (``lantu``) by itself.
    here = Path(__file__).parent
    app = Flask(__name__, root_path=str(here), instance_path=str(settings.home / "instance"),
                static_folder=str(here / "static"))
    app.json.ensure_ascii = False
    app.extensions["lantu"] = context = LantuContext(settings, registry)
    infos = {**infos_from_registry(registry), **(extra_collections or {})}
    app.extensions["lantu.collections"] = Collections(settings, infos, lambda: context.pool, registry)
    for info in infos.values():
        bind(info.source, get_pool(settings))
    app.logger.setLevel(getattr(logging, settings.log_level))
    register_error_handlers(app)
    # The policy gate runs before every route (identity, rate limit, layer rights) and after (headers, log).
    policy.install(app, IdentityResolver(settings, lambda: context.pool), load_policy(registry, settings.policy_file),
                   settings, lambda: context.pool)
    app.register_blueprint(health.bp)
    app.register_blueprint(features.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(tiles.bp)
    app.register_blueprint(ows.bp)
    app.register_blueprint(wmts.bp)
    app.register_blueprint(coverages.bp)
    app.register_blueprint(processes.bp)
    app.register_blueprint(transactions.bp)
    app.register_blueprint(viewer.bp)
    app.register_blueprint(csw.bp)
    app.register_blueprint(records.bp)
    return app

"""Flask application factory: ``create_app(settings=None, registry=None)``. No I/O at import time."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from lantu.config.registry import Registry, load_registry
from lantu.config.settings import Settings, load_settings
from lantu.server import health, landing
from lantu.server.context import LantuContext
from lantu.server.errors import register_error_handlers


def create_app(settings: Settings | None = None, registry: Registry | None = None) -> Flask:
    settings = settings or load_settings()
    registry = registry or load_registry()
    # Explicit paths: Flask cannot locate an implicit namespace package (``lantu``) by itself.
    app = Flask(__name__, root_path=str(Path(__file__).parent), instance_path=str(settings.home / "instance"))
    app.json.ensure_ascii = False
    app.extensions["lantu"] = LantuContext(settings, registry)
    app.logger.setLevel(getattr(logging, settings.log_level))
    register_error_handlers(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(landing.bp)
    return app

"""The per-application state (settings, registry, database pool), kept on the Flask app."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from lantu.config.registry import Registry
from lantu.config.settings import Settings
from lantu.providers.pool import Pool, get_pool


@dataclass(frozen=True)
class LantuContext:
    settings: Settings
    registry: Registry

    @property
    def pool(self) -> Pool:
        # Resolved per call: a gunicorn worker forked after app creation gets its own pool.
        return get_pool(self.settings)


def lantu() -> LantuContext:
    return current_app.extensions["lantu"]


def collections():
    """The served collections (``server.collections.Collections``) of the current app."""
    return current_app.extensions["lantu.collections"]


def base_url() -> str:
    """Base of every absolute URL Lantu writes (LANTU_PUBLIC_URL)."""
    return lantu().settings.public_url

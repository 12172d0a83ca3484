"""``/healthz``: 200 when the database answers and the registry is loaded, else 503 with the reason."""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, json

from lantu.providers.pool import DatabaseUnavailable
from lantu.server.context import lantu

bp = Blueprint("health", __name__)


def _database_check() -> dict:
    started = time.perf_counter()
    try:
        with lantu().pool.connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT postgis_lib_version()")
            postgis = cur.fetchone()[0]
        return {"ok": True, "postgis": postgis, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except DatabaseUnavailable as exc:
        # The driver's message names sockets and hosts: log it, tell the client only what failed.
        current_app.logger.warning("health check: database unavailable: %s", exc)
        return {"ok": False, "error": "database unreachable"}


@bp.get("/healthz")
def healthz() -> Response:
    registry = lantu().registry
    checks = {
        "database": _database_check(),
        "registry": {"ok": len(registry) > 0, "layers": len(registry), "vector": len(registry.vector_layers())},
    }
    healthy = all(check["ok"] for check in checks.values())
    if not healthy:
        current_app.logger.warning("unhealthy: %s", checks)
    body = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return Response(json.dumps(body, ensure_ascii=False), status=200 if healthy else 503,
                    mimetype="application/json", headers={"Cache-Control": "no-store"})

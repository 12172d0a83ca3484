"""Reads of ``lantu.change_log`` (written by providers/writer.py): its position and the changes since a
position, for the caches and metadata that follow loads and edits."""

from __future__ import annotations

from lantu.providers.pool import Pool


def current_change(pool: Pool) -> int:
    """Newest change id (0 when nothing was ever loaded)."""
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(max(id), 0) FROM lantu.change_log")
        return cur.fetchone()[0]


def changes_since(pool: Pool, after: int) -> list[tuple]:
    """``(id, layer, xmin, ymin, xmax, ymax)`` of every change after ``after``, oldest first (bbox parts are
    None when the change has no extent)."""
    with pool.connection(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SELECT id, layer, ST_XMin(bbox), ST_YMin(bbox), ST_XMax(bbox), ST_YMax(bbox) "
                    "FROM lantu.change_log WHERE id > %s ORDER BY id", (after,))
        return cur.fetchall()

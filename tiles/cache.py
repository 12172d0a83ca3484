"""Disk cache of vector tiles under ``$LANTU_HOME/cache/mvt/{tileset}/{grid}/{level}/{col}/{row}.mvt``,
invalidated from ``lantu.change_log``: when a load or edit is recorded, only the cached tiles that intersect
its bbox (plus one tile around, for the render buffer) are removed, in the layer's own tileset and in the
combined ``blueprint`` tileset.

Staleness: every tile is computed together with the change-log id of its database snapshot. The cache
remembers up to which change id it has invalidated (``.processed``, kept on disk so restarts and other
workers agree); a tile whose snapshot is older than that may predate an invalidation that already ran, so
it is served but not stored.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from lantu.tiles.tms import Grid

CHECK_EVERY_S = 1.0
BLUEPRINT = "blueprint"


class ChangeFollower:
    """Applies each new ``lantu.change_log`` row once to a cache. The position reached is kept in a file
    beside the cache, so restarts and every worker process agree; with no position on record the cache's
    contents are of unknown age and ``on_unknown`` wipes them."""

    def __init__(self, state_file: Path, changes_since: Callable[[int], list[tuple]],
                 current_change: Callable[[], int], on_change: Callable[[str, tuple | None], None],
                 on_unknown: Callable[[], None]):
        """``changes_since(id)`` returns ``(id, layer, xmin, ymin, xmax, ymax)`` rows after ``id``;
        ``current_change()`` the newest change id."""
        self.state_file = state_file
        self._changes_since = changes_since
        self._current_change = current_change
        self._on_change = on_change
        self._on_unknown = on_unknown
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._processed: int | None = None

    def _load_state(self) -> int:
        try:
            return int(self.state_file.read_text())
        except (OSError, ValueError):
            self._on_unknown()
            current = self._current_change()
            self._save_state(current)
            return current

    def _save_state(self, value: int) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.state_file.parent, prefix=".processed.")
        with os.fdopen(fd, "w") as fh:
            fh.write(str(value))
        os.replace(tmp, self.state_file)

    def sync(self, force: bool = False) -> int:
        """Apply new change-log rows (at most once a second unless forced); returns the processed id."""
        now = time.monotonic()
        with self._lock:
            if self._processed is not None and not force and now - self._checked_at < CHECK_EVERY_S:
                return self._processed
            self._checked_at = now
            processed = max(self._load_state(), self._processed or 0)
            rows = self._changes_since(processed)
            for change_id, layer, *bbox in rows:
                self._on_change(layer, None if bbox[0] is None else tuple(bbox))
                processed = max(processed, change_id)
            if rows:
                self._save_state(processed)
            self._processed = processed
            return processed


class TileCache:
    def __init__(self, root: Path, grids: dict[str, Grid], changes_since: Callable[[int], list[tuple]],
                 current_change: Callable[[], int]):
        self.root = root
        self.grids = grids
        self.follower = ChangeFollower(root / ".processed", changes_since, current_change, self._changed,
                                       lambda: wipe_directory(root))

    def path(self, tileset: str, grid: str, level: int, row: int, col: int) -> Path:
        return self.root / tileset / grid / str(level) / str(col) / f"{row}.mvt"

    def sync(self, force: bool = False) -> int:
        return self.follower.sync(force)

    def _changed(self, layer: str, bbox: tuple | None) -> None:
        # The blueprint is cached once per set of layers a caller may view ("blueprint~<crc>" variants).
        variants = [p.name for p in self.root.glob(f"{BLUEPRINT}~*")] if self.root.exists() else []
        for tileset in (layer, BLUEPRINT, *variants):
            self.invalidate(tileset, bbox)

    def invalidate(self, tileset: str, bbox: tuple[float, float, float, float] | None) -> int:
        """Remove the cached tiles of ``tileset`` touching ``bbox`` (lon/lat); all of them if None."""
        base = self.root / tileset
        if not base.exists():
            return 0
        if bbox is None:
            shutil.rmtree(base, ignore_errors=True)
            return -1
        removed = 0
        for grid_dir in (d for d in base.iterdir() if d.is_dir() and d.name in self.grids):
            grid = self.grids[grid_dir.name]
            for level_dir in (d for d in grid_dir.iterdir() if d.is_dir() and d.name.isdigit()):
                removed += remove_in_range(level_dir, *_tile_range(grid, int(level_dir.name), bbox))
        return removed

    # ---- reads and writes --------------------------------------------------------------------------
    def get(self, tileset: str, grid: str, level: int, row: int, col: int) -> bytes | None:
        self.sync()
        try:
            return self.path(tileset, grid, level, row, col).read_bytes()
        except OSError:
            return None

    def put(self, tileset: str, grid: str, level: int, row: int, col: int, data: bytes, version: int) -> bool:
        if version < self.sync():
            return False  # computed before an invalidation that already ran: may be stale
        target = self.path(tileset, grid, level, row, col)
        # A temp name unique to this process and thread (cheaper than mkstemp on the hot path); replace()
        # is atomic: readers see the old tile or the new one, never half of one.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            fh = open(tmp, "wb")
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = open(tmp, "wb")
        with fh:
            fh.write(data)
        os.replace(tmp, target)
        return True


def wipe_directory(root: Path) -> None:
    """Remove every sub-directory of a cache root (the tiles), keeping the root itself."""
    if root.exists():
        for child in root.iterdir():
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)


def _tile_range(grid: Grid, level: int, bbox: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """Columns and rows of the tiles at ``level`` touching a lon/lat bbox, widened by one tile."""
    west, south, east, north = bbox
    corners = [grid.tms.tile(lon, lat, level) for lon in (west, east) for lat in (south, north)]
    cols = [t.x for t in corners]
    rows = [t.y for t in corners]
    return min(cols) - 1, max(cols) + 1, min(rows) - 1, max(rows) + 1


def remove_in_range(level_dir: Path, col0: int, col1: int, row0: int, row1: int, suffix: str = ".mvt") -> int:
    """Delete ``{level}/{col}/{row}{suffix}`` files with col and row in the given (inclusive) ranges."""
    removed = 0
    for col_dir in _numeric_children(level_dir.iterdir(), col0, col1):
        for tile in col_dir.iterdir():
            stem = tile.name.removesuffix(suffix)
            if stem.isdigit() and row0 <= int(stem) <= row1:
                tile.unlink(missing_ok=True)
                removed += 1
    return removed


def _numeric_children(entries: Iterable[Path], low: int, high: int) -> Iterable[Path]:
    return (e for e in entries if e.is_dir() and e.name.isdigit() and low <= int(e.name) <= high)

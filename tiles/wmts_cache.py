"""Invalidation of MapProxy's WMTS/TMS disk cache from ``lantu.change_log``: only the cached tiles that
intersect a change's bbox are removed (plus one tile around, for labels and symbols drawn across tile
edges); everything else stays cached. Tile coordinates come from MapProxy's own grids, so the removed
files are exactly the ones MapProxy would have written for that area."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lantu.tiles.cache import ChangeFollower, remove_in_range, wipe_directory
from lantu.tiles.mapproxy import GRIDS


class WmtsCacheInvalidator:
    def __init__(self, mapproxy_yaml: Path, cache_dir: Path, changes_since: Callable[[int], list[tuple]],
                 current_change: Callable[[], int]):
        self.mapproxy_yaml = mapproxy_yaml
        self.cache_dir = cache_dir
        self._grids = None
        self.follower = ChangeFollower(cache_dir / ".processed", changes_since, current_change, self._changed,
                                       lambda: wipe_directory(cache_dir))

    def grids(self) -> dict:
        if self._grids is None:
            from mapproxy.config.loader import load_configuration

            conf = load_configuration(mapproxy_conf=str(self.mapproxy_yaml), ignore_warnings=True)
            self._grids = {name: conf.grids[name].tile_grid() for name in GRIDS}
        return self._grids

    def sync(self, force: bool = False) -> int:
        return self.follower.sync(force)

    def _changed(self, layer: str, bbox: tuple | None) -> None:
        self.invalidate(layer, bbox)

    def invalidate(self, layer: str, bbox: tuple[float, float, float, float] | None) -> int:
        """Remove ``layer``'s cached tiles touching ``bbox`` (lon/lat, EPSG:4490); all of them if None."""
        base = self.cache_dir / f"{layer}_cache"
        if not base.exists():
            return 0
        if bbox is None:
            wipe_directory(base)
            return -1
        from mapproxy.srs import SRS

        removed = 0
        for name, grid in self.grids().items():
            grid_dir = base / name
            if not grid_dir.exists():
                continue
            x0, y0, x1, y1 = SRS(4490).transform_bbox_to(grid.srs, bbox)
            for level_dir in (d for d in grid_dir.iterdir() if d.is_dir() and d.name.isdigit()):
                level = int(level_dir.name)
                corners = [grid.tile_coord_for_point(x, y, level) for x in (x0, x1) for y in (y0, y1)]
                cols, rows = [c[0] for c in corners], [c[1] for c in corners]
                removed += remove_in_range(level_dir, min(cols) - 1, max(cols) + 1, min(rows) - 1, max(rows) + 1,
                                           suffix=".png")
        return removed

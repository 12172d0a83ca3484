"""Tile matrix sets, MVT, MapProxy configuration and seeding (later issues)."""

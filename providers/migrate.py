"""Versioned schema migrations: numbered ``migrations/NNNN_name.sql`` files, each applied once in its own
transaction and recorded (with a checksum) in ``lantu.schema_migrations``. Safe to run concurrently from
several processes (an advisory lock serialises them) and idempotent."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import psycopg2.extensions

MIGRATION_LOCK = 7_424_801  # arbitrary advisory-lock key owned by Lantu
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available() -> list[Migration]:
    folder = resources.files("lantu.providers").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


def migrate(conn: psycopg2.extensions.connection) -> list[str]:
    """Create PostGIS if needed and apply pending migrations; returns the names applied now."""
    applied_now = []
    with conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            cur.execute("CREATE EXTENSION IF NOT EXISTS postgis")
            cur.execute("CREATE SCHEMA IF NOT EXISTS lantu")
            cur.execute("""CREATE TABLE IF NOT EXISTS lantu.schema_migrations (
                               version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                               applied_at timestamptz NOT NULL DEFAULT now())""")
            conn.commit()
            cur.execute("SELECT version, checksum FROM lantu.schema_migrations")
            done = dict(cur.fetchall())
            for mig in available():
                if mig.version in done:
                    if done[mig.version] != mig.checksum:
                        raise MigrationError(f"migration {mig.version:04d}_{mig.name} was changed after it was "
                                             f"applied; add a new migration instead of editing an old one")
                    continue
                cur.execute(mig.sql)
                cur.execute("INSERT INTO lantu.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                            (mig.version, mig.name, mig.checksum))
                conn.commit()
                applied_now.append(f"{mig.version:04d}_{mig.name}")
        except BaseException:
            conn.rollback()
            raise
        finally:
            cur.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
            conn.commit()
    return applied_now

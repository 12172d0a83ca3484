"""Accounts (departments or people) with roles, and their API keys (stored as SHA-256 only).

A key looks like ``lantu_<prefix>_<secret>``: the prefix names the key in listings and logs, the secret is
256 random bits. Lookup hashes the presented key and finds the row by its hash (an index lookup, no
comparison loop an attacker could time).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field

from lantu.providers.pool import Pool

KEY_PREFIX = "lantu_"


@dataclass(frozen=True)
class Account:
    id: int
    name: str
    title: str
    roles: tuple[str, ...]
    attributes: dict = field(default_factory=dict)
    disabled: bool = False


def _hash(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def create_account(pool: Pool, name: str, title: str = "", roles: list[str] | None = None,
                   attributes: dict | None = None) -> Account:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO lantu.accounts (name, title, roles, attributes) VALUES (%s, %s, %s, %s) "
                    "RETURNING id", (name, title, list(roles or []), json.dumps(attributes or {}, ensure_ascii=False)))
        return Account(cur.fetchone()[0], name, title, tuple(roles or []), attributes or {})


def get_account(pool: Pool, name: str) -> Account | None:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT id, name, title, roles, attributes, disabled FROM lantu.accounts WHERE name = %s", (name,))
        row = cur.fetchone()
    return Account(row[0], row[1], row[2], tuple(row[3]), row[4], row[5]) if row else None


def list_accounts(pool: Pool) -> list[tuple[Account, list[str]]]:
    """Every account with the prefixes of its live keys."""
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT a.id, a.name, a.title, a.roles, a.attributes, a.disabled, "
                    "coalesce(array_agg(k.prefix ORDER BY k.id) FILTER (WHERE k.id IS NOT NULL AND k.revoked IS NULL), "
                    "'{}') FROM lantu.accounts a LEFT JOIN lantu.api_keys k ON k.account_id = a.id "
                    "GROUP BY a.id ORDER BY a.name")
        return [(Account(r[0], r[1], r[2], tuple(r[3]), r[4], r[5]), list(r[6])) for r in cur.fetchall()]


def create_key(pool: Pool, account: Account, expires_days: float | None = None) -> str:
    """A new key for the account; the only time its text exists outside the caller."""
    prefix = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO lantu.api_keys (account_id, prefix, key_hash, expires) VALUES (%s, %s, %s, "
                    "CASE WHEN %s::float8 IS NULL THEN NULL ELSE now() + make_interval(days => %s::int) END)",
                    (account.id, prefix, _hash(key), expires_days, expires_days))
    return key


def revoke_key(pool: Pool, prefix: str) -> bool:
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("UPDATE lantu.api_keys SET revoked = now() WHERE prefix = %s AND revoked IS NULL", (prefix,))
        return cur.rowcount == 1


def account_for_key(pool: Pool, key: str) -> Account | None:
    """The enabled account owning a live (not revoked, not expired) key, else None."""
    if not key.startswith(KEY_PREFIX) or len(key) > 200:
        return None
    with pool.connection() as conn, conn.cursor() as cur:
        cur.execute("SELECT a.id, a.name, a.title, a.roles, a.attributes FROM lantu.api_keys k "
                    "JOIN lantu.accounts a ON a.id = k.account_id WHERE k.key_hash = %s AND k.revoked IS NULL "
                    "AND (k.expires IS NULL OR k.expires > now()) AND NOT a.disabled", (_hash(key),))
        row = cur.fetchone()
    return Account(row[0], row[1], row[2], tuple(row[3]), row[4]) if row else None

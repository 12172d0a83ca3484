"""Typed settings: defaults from settings.default.yaml, a LANTU_SETTINGS YAML file, then LANTU_* env vars.

Every value is validated (pydantic, extra keys forbidden) and a bad one is reported with its key and the
file it came from. Settings are immutable; tests build their own with ``load_settings(overrides=...)``.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ENV_VARS = {
    "LANTU_HOME": "home",
    "LANTU_DATABASE_URL": "database_url",
    "LANTU_PUBLIC_URL": "public_url",
    "LANTU_BIND": "bind",
}


class SettingsError(ValueError):
    """A settings file or variable holds a value Lantu cannot use."""


class CatalogPeer(BaseModel):
    """A federation peer: another catalog (province, city, county) kept in step by `lantu catalog sync`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    url: str = Field(pattern=r"^https?://")


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path
    database_url: str | None = None
    public_url: str = "http://127.0.0.1:8080"
    bind: str = "127.0.0.1:8080"
    workers: int = Field(2, ge=1, le=64)
    threads: int = Field(4, ge=1, le=64)
    pg_port: int = Field(54329, ge=1024, le=65535)
    pg_bin: Path | None = None
    pool_min: int = Field(4, ge=0, le=100)
    pool_max: int = Field(8, ge=1, le=200)
    pool_ping_after_s: float = Field(1.0, ge=0)
    statement_timeout_ms: int = Field(60000, ge=0)
    default_limit: int = Field(10, ge=1)
    max_limit: int = Field(10000, ge=1)
    log_level: str = "INFO"
    mapserver_workers: int = Field(2, ge=1, le=64)
    planar_srid: int = Field(4547, ge=4513, le=4554)
    # resource catalog (issue 7; docs/catalog.md)
    catalog_id_prefix: str = Field("urn:lantu:430121", pattern=r"^[A-Za-z][A-Za-z0-9+.-]*:[A-Za-z0-9:._-]+$")
    catalog_organisation: str = "长沙县自然资源和规划局 (planning bureau)"
    catalog_contact_email: str = ""
    catalog_manager_ips: tuple[str, ...] = ("127.0.0.1", "::1")
    catalog_harvest_allow: tuple[str, ...] = ()
    catalog_peers: tuple[CatalogPeer, ...] = ()
    catalog_peer_timeout_s: float = Field(10.0, gt=0, le=300)
    catalog_sync_interval_s: float = Field(0, ge=0)
    catalog_max_records: int = Field(1000, ge=1, le=100_000)
    job_workers: int = Field(1, ge=0, le=64)
    job_lease_s: float = Field(30.0, ge=1, le=3600)
    job_max_attempts: int = Field(3, ge=1, le=20)
    max_input_vertices: int = Field(100_000, ge=4)
    check_buffer_m: float = Field(500.0, ge=0, le=100_000)
    indicators_config: Path | None = None  # null → config/indicators.yaml (issue 11)
    indicator_snapshot_date: str = Field("12-31", pattern=r"^(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$")
    tile_queries_per_worker: int = Field(2, ge=1, le=64)
    policy_file: Path | None = None
    oidc_issuers: tuple[dict, ...] = ()
    rate_limit_per_minute: int = Field(0, ge=0)
    cors_origins: tuple[str, ...] = ()
    access_log_retention_days: int = Field(180, ge=1)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must start with postgresql://")
        return value or None

    @field_validator("public_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    # Derived paths (never configured separately, so they cannot drift apart).
    @property
    def pg_data(self) -> Path:
        return self.home / "pg"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def embedded(self) -> bool:
        return self.database_url is None


def default_values() -> dict[str, Any]:
    text = resources.files("lantu.config").joinpath("settings.default.yaml").read_text("utf-8")
    return yaml.safe_load(text)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping of keys to values")
    return data


def load_settings(overrides: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Build settings: defaults < LANTU_SETTINGS file < LANTU_* variables < ``overrides``."""
    env = os.environ if environ is None else environ
    values = default_values()
    source = "settings.default.yaml"
    if env.get("LANTU_SETTINGS"):
        source = env["LANTU_SETTINGS"]
        values.update(_read_yaml(Path(source)))
    for var, key in ENV_VARS.items():
        if env.get(var):
            values[key] = env[var]
    values.update(overrides or {})
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise SettingsError(f"invalid settings (from {source} and LANTU_* variables): {problems}") from exc
    home = settings.home if settings.home.is_absolute() else Path.cwd() / settings.home
    return settings.model_copy(update={"home": home.resolve()})

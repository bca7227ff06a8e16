"""The one place kpiguard reads configuration: ``KPIGUARD_*`` environment variables and an optional YAML file.

Precedence, highest first: explicit arguments, environment variables, the YAML file, defaults.
List settings (tokens) take a JSON list or a comma-separated string in the environment.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from kpiguard.errors import ConfigError
from kpiguard.monitor._alerts import Thresholds

TokenList = Annotated[tuple[SecretStr, ...], NoDecode]


class Settings(BaseSettings):
    """Every setting of the service; frozen once loaded."""

    model_config = SettingsConfigDict(env_prefix="KPIGUARD_", frozen=True, extra="forbid")

    database_url: str = Field(
        "sqlite+aiosqlite:///./kpiguard.db",
        description="SQLAlchemy URL: sqlite+aiosqlite:///FILE or postgresql+asyncpg://USER@HOST/DB.",
    )
    database_schema: str | None = Field(None, description="PostgreSQL schema to use (search_path); None = default.")
    database_pool_size: int = Field(20, ge=1, le=500, description="Connections in the PostgreSQL pool.")
    auto_migrate: bool | None = Field(
        None, description="Migrate on start-up. Default: yes for SQLite, no for PostgreSQL (run `kpiguard db upgrade`)."
    )
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind (0 = any free port).")
    allow_public_without_auth: bool = Field(
        False, description="Allow binding a non-loopback address while no API token is configured."
    )
    ingest_tokens: TokenList = Field((), description="Bearer tokens of the ingest scope.")
    admin_tokens: TokenList = Field((), description="Bearer tokens of the admin scope (also valid for every scope).")
    webhook_tokens: TokenList = Field((), description="Bearer tokens of the webhook scope (Alertmanager).")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest request body accepted, in bytes.")
    max_batch_events: int = Field(10_000, ge=1, le=1_000_000, description="Most events in one batch request.")
    max_label_pairs: int = Field(1000, ge=1, description="Most (domain, metric) pairs exported as metric labels.")
    ingest_flush_max_events: int = Field(
        2000, ge=1, description="Most single events committed together by the group-commit writer."
    )
    native_enforcement: bool = Field(
        True, description="Let kpiguard's own evaluator THROTTLE and KILL; off: it only computes and exports."
    )
    evaluation_interval_seconds: float = Field(
        60.0, ge=0, description="Evaluate every enabled policy this often (0 = only after ingest and on demand)."
    )
    evaluation_read_parts: int = Field(
        2, ge=1, le=16,
        description="PostgreSQL: evaluate-all reads the policies' windows in this many statements at once.",
    )
    governance_refresh_seconds: float = Field(
        5.0, gt=0, le=3600, description="How often the exported weekly figures look for new audit entries."
    )
    webhook_auto_release_throttle: bool = Field(
        False, description="A resolved Alertmanager THROTTLE alert re-enables the engine (KILL_SWITCH never does)."
    )
    log_level: str = Field("INFO", description="Python logging level.")
    # --- monitor ---
    monitor_scheduler: bool = Field(True, description="Compute closed hours and days in the background.")
    monitor_interval_seconds: float = Field(
        300.0, gt=0, le=86_400, description="Seconds between two runs of the monitor's scheduler."
    )
    monitor_catchup_hours: int = Field(
        48, ge=1, le=24 * 366, description="How many closed hours back the scheduler looks for uncomputed traffic."
    )
    monitor_catchup_days: int = Field(
        8, ge=1, le=366, description="How many closed days back the scheduler looks for uncomputed traffic."
    )
    monitor_baseline_days: int = Field(7, ge=1, le=366, description="Days in the rolling baseline (N before the day).")
    monitor_threshold_low: float = Field(1.5, description="Deviation ratio (current / baseline) that is LOW.")
    monitor_threshold_medium: float = Field(2.0, description="Deviation ratio that is MEDIUM.")
    monitor_threshold_high: float = Field(3.0, description="Deviation ratio that is HIGH.")
    monitor_threshold_critical: float = Field(5.0, description="Deviation ratio that is CRITICAL (the seed says 3x).")
    monitor_health_decline_below: float = Field(50.0, description="health_decline (HIGH) under this health score.")
    monitor_health_critical_below: float = Field(25.0, description="health_decline is CRITICAL under this score.")
    monitor_min_fallback_rate: float = Field(0.01, description="Floor of the fallback-rate baseline (no / 0).")
    monitor_min_error_rate: float = Field(0.01, description="Floor of the error-rate baseline.")
    monitor_min_duplicate_rate: float = Field(0.01, description="Floor of the duplicate-rate baseline.")
    monitor_min_latency_p95_ms: float = Field(100.0, description="Floor of the p95-latency baseline, ms.")
    monitor_min_baseline_days: int = Field(3, description="Fewer baseline days with traffic: spikes not checked.")
    monitor_min_events: int = Field(1, description="A day with fewer events is not checked.")
    monitor_auto_resolve: bool = Field(False, description="Resolve an alert when its signal is back under LOW.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then environment, then the YAML file named by ``yaml_file`` in the model config."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if settings_cls.model_config.get("yaml_file"):
            sources.append(YamlConfigSettingsSource(settings_cls))
        return tuple(sources)

    @field_validator("ingest_tokens", "admin_tokens", "webhook_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip()
            if value.startswith("["):
                import json

                return json.loads(value)
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not (value.startswith("sqlite+aiosqlite://") or value.startswith("postgresql+asyncpg://")):
            raise ValueError("must start with sqlite+aiosqlite:// or postgresql+asyncpg://")
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        if value.upper() not in levels:
            raise ValueError(f"must be one of {', '.join(levels)}")
        return value.upper()

    @model_validator(mode="after")
    def _refuse_public_without_auth(self) -> Settings:
        if not self.auth_enabled and not self.allow_public_without_auth and not _is_loopback(self.host):
            raise ValueError(
                f"host: {self.host} is not a loopback address and no API token is configured; "
                "set KPIGUARD_ADMIN_TOKENS (and the other scopes) or KPIGUARD_ALLOW_PUBLIC_WITHOUT_AUTH=true"
            )
        return self

    @model_validator(mode="after")
    def _check_monitor_thresholds(self) -> Settings:
        self.monitor_thresholds  # noqa: B018 - building them checks them
        return self

    @property
    def monitor_thresholds(self) -> Thresholds:
        """The monitor's detection thresholds; raises ValueError naming the setting if they are inconsistent."""
        try:
            return Thresholds(**{field: getattr(self, setting) for field, setting in _THRESHOLD_SETTINGS.items()})
        except ConfigError as exc:
            field = exc.setting.rsplit(".", 1)[-1]
            raise ValueError(f"{_THRESHOLD_SETTINGS.get(field, field)}: {exc.reason}") from None

    @property
    def auth_enabled(self) -> bool:
        """Whether any token is configured; without one the API is open (loopback only)."""
        return bool(self.ingest_tokens or self.admin_tokens or self.webhook_tokens)

    @property
    def is_sqlite(self) -> bool:
        """Whether the store is the embedded SQLite file."""
        return self.database_url.startswith("sqlite")

    @property
    def should_auto_migrate(self) -> bool:
        """Whether ``serve`` migrates the schema by itself."""
        return self.is_sqlite if self.auto_migrate is None else self.auto_migrate


# monitor.Thresholds field -> the setting that gives it
_THRESHOLD_SETTINGS = {
    "low": "monitor_threshold_low",
    "medium": "monitor_threshold_medium",
    "high": "monitor_threshold_high",
    "critical": "monitor_threshold_critical",
    "health_decline_below": "monitor_health_decline_below",
    "health_critical_below": "monitor_health_critical_below",
    "min_fallback_rate": "monitor_min_fallback_rate",
    "min_error_rate": "monitor_min_error_rate",
    "min_duplicate_rate": "monitor_min_duplicate_rate",
    "min_latency_p95_ms": "monitor_min_latency_p95_ms",
    "min_baseline_days": "monitor_min_baseline_days",
    "min_events": "monitor_min_events",
    "auto_resolve": "monitor_auto_resolve",
}


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Load the settings, converting any invalid value into a ConfigError naming the setting."""
    cls: type[Settings] = Settings
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError("--config", f"{path} is not a readable file")
        cls = type("Settings", (Settings,), {"model_config": {**Settings.model_config, "yaml_file": str(path)}})
    try:
        return cls(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or _setting_from_message(err["msg"])
        raise ConfigError(f"KPIGUARD_{loc.upper()}" if loc else "settings", err["msg"]) from exc
    except ValueError as exc:  # a YAML file that does not parse, or a token list that is not JSON
        raise ConfigError(str(config_file or "environment"), str(exc)) from exc


def _setting_from_message(msg: str) -> str:
    head = msg.removeprefix("Value error, ").split(":", 1)[0]
    return head if head.isidentifier() else ""

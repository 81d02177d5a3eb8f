"""Settings: defaults, overridden by INFERWATCH_* environment variables, then by CLI flags."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    pass


_FLAGS = {"serve_port": "--port"}  # where the CLI flag is not --<name with dashes>


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    home: Path = Field(default=PROJECT_ROOT / "var", description="state, logs, model copies, the store")
    spec: Path = Field(default=PROJECT_ROOT / "data" / "pools.yaml", description="pool spec file")
    prices: Path = Field(default=PROJECT_ROOT / "data" / "prices.yaml", description="price table")
    host: str = Field(default="127.0.0.1", description="address the engine's HTTP proxy binds")
    serve_port: int = Field(default=8000, ge=1, le=65535, description="OpenAI-compatible HTTP port")
    ray_port: int = Field(default=6379, ge=1, le=65535, description="port of a local Ray head we start")
    metrics_port: int = Field(default=8079, ge=1, le=65535, description="Ray metrics export (vllm, serve)")
    ray_num_cpus: int = Field(default=16, ge=1, description="logical CPUs of a local Ray head")
    up_timeout_s: float = Field(default=900.0, gt=0, description="how long `engine up` waits for pools")
    collector_port: int = Field(default=8090, ge=1, le=65535, description="the collector's HTTP port (gateway)")
    store: str | None = Field(
        default=None, description="the store URL: a DuckDB file or ducklake:... (default <home>/inferwatch.duckdb)"
    )
    fsync: str = Field(default="none", description="journal fsync policy: none, group:<ms> or always")
    overflow: str = Field(default="fail-open", description="at the journal's high-water mark: fail-open or fail-closed")
    high_water_rows: int = Field(default=500_000, ge=1, description="journal backlog (rows) that counts as trouble")
    scrape_interval_s: float = Field(default=5.0, gt=0, description="how often the collector reads server metrics")
    # authentication (docs/SECURITY.md); the tokens are read from INFERWATCH_ADMIN_TOKEN / INFERWATCH_READ_TOKEN
    # (or their _FILE forms) by collector/auth.py and never held here, so no settings dump can show them
    insecure_bind: bool = Field(
        default=False, description="let servers listen beyond loopback without authentication (warned at each start)"
    )
    api_keys: Path | None = Field(default=None, description="client API keys file (sha256 of each key -> tenant)")
    allowed_hosts: str = Field(default="", description="extra Host names the collector answers to, comma-separated")
    metrics_public: bool = Field(default=False, description="/metrics without the read token when tokens are set")

    @property
    def engine_state(self) -> Path:
        return self.home / "engine.json"

    @property
    def collector_state(self) -> Path:
        return self.home / "collector.json"

    @property
    def store_url(self) -> str:
        return self.store or str(self.home / "inferwatch.duckdb")

    @property
    def journal_root(self) -> Path:
        """Where each gateway of this home keeps its journal (one directory per gateway)."""
        return self.home / "journal"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def allowed_host_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.allowed_hosts.split(",") if name.strip())

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = f"INFERWATCH_{name.upper()}"
            if key in env:
                values[name] = env[key]
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = str(err["loc"][0]) if err["loc"] else "?"
            raise SettingsError(
                f"setting {name} (env INFERWATCH_{name.upper()} or {_FLAGS.get(name, '--' + name.replace('_', '-'))}): "
                f"{err['msg']} (got {err['input']!r})"
            ) from None

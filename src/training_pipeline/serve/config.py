"""The scan service's settings: ``conf/serve.yaml`` checked against a dataclass schema, so a misspelled key or
an impossible value is a one-line ``ConfigError`` at startup, not a silently ignored setting."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training_pipeline.config import CONF_DIR  # registers ${project_root:} too
from training_pipeline.errors import ConfigError
from training_pipeline.utils.run import one_line

SERVE_YAML = CONF_DIR / "serve.yaml"
MODES = ("off", "ab", "shadow")


@dataclass
class RoutingConfig:
    mode: str = "off"  # off | ab | shadow
    challenger_share: float = 0.0  # ab: the share of contracts (by input hash) the challenger answers


@dataclass
class InferenceLogConfig:
    enabled: bool = True
    path: str = "outputs/serve/inference.jsonl"
    max_bytes: int = 10_000_000
    backups: int = 5
    include_source: bool = False


@dataclass
class AuthConfig:
    enabled: bool | None = None  # None: on when any key is configured
    keys_file: str | None = None
    env_var: str = "SCATHAT_API_KEYS"


@dataclass
class LimitsConfig:
    max_body_bytes: int = 2_000_000
    max_source_chars: int = 200_000
    max_bytecode_hex_chars: int = 100_000
    max_csv_rows: int = 10_000
    timeout_s: float = 30.0
    workers: int = 2


@dataclass
class MonitoringConfig:
    latest_report: str | None = "outputs/monitoring/latest.json"  # /metrics' drift gauges; null: none


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    champion: str | None = "models:/scathat-pipeline@champion"
    challenger: str | None = None
    static_analysis: bool = False
    verify: bool = True
    routing: RoutingConfig = field(default_factory=RoutingConfig)
    inference_log: InferenceLogConfig = field(default_factory=InferenceLogConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)


def load_settings(
    overrides: Sequence[str] = (), path: str | Path | None = SERVE_YAML, **values: Any
) -> ServeConfig:
    """``path`` (default conf/serve.yaml; None: the schema's defaults) merged with ``key=value`` dotlist
    ``overrides`` and keyword ``values`` (nested dicts allowed), checked against ``ServeConfig``."""
    try:
        cfg = OmegaConf.structured(ServeConfig)
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"{path}: no such serve config")
            cfg = OmegaConf.merge(cfg, OmegaConf.load(path))
        if values:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(values))
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(overrides)))
        settings = OmegaConf.to_object(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # OmegaConf: unknown key, wrong type, bad interpolation
        raise ConfigError(f"serve config: {one_line(exc)}") from None
    validate(settings)
    return settings


def as_settings(settings: ServeConfig | DictConfig | Mapping[str, Any] | None) -> ServeConfig:
    """A ``ServeConfig`` from itself, a DictConfig or a plain mapping (schema defaults for the rest)."""
    if isinstance(settings, ServeConfig):
        validate(settings)
        return settings
    if settings is None:
        return load_settings(path=None)
    if OmegaConf.is_config(settings):
        settings = OmegaConf.to_container(settings, resolve=True)
    return load_settings(path=None, **dict(settings))


def validate(s: ServeConfig) -> None:
    """Values the schema's types cannot rule out."""
    if s.routing.mode in ("False", "false"):  # YAML 1.1 reads an unquoted `off` as false
        s.routing.mode = "off"
    if s.routing.mode not in MODES:
        raise ConfigError(f"routing.mode={s.routing.mode}: expected one of {', '.join(MODES)}")
    if not 0.0 <= s.routing.challenger_share <= 1.0:
        raise ConfigError(f"routing.challenger_share={s.routing.challenger_share}: expected 0..1")
    if s.routing.mode != "off" and not s.challenger:
        raise ConfigError(f"routing.mode={s.routing.mode} needs a challenger model (challenger=REF)")
    if not s.champion:
        raise ConfigError("champion: no model given (champion=REF: a package path, models:/NAME@ALIAS, ...)")
    for name in ("max_body_bytes", "max_source_chars", "max_bytecode_hex_chars", "max_csv_rows", "workers"):
        if getattr(s.limits, name) < 1:
            raise ConfigError(f"limits.{name}={getattr(s.limits, name)}: must be at least 1")
    if s.limits.timeout_s <= 0:
        raise ConfigError(f"limits.timeout_s={s.limits.timeout_s}: must be positive")
    if s.inference_log.max_bytes < 1 or s.inference_log.backups < 0:
        raise ConfigError("inference_log: max_bytes must be at least 1 and backups at least 0")
    if not 0 < s.port < 65536:
        raise ConfigError(f"port={s.port}: expected 1..65535")

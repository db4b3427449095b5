"""API keys and roles: keys from a YAML/JSON file (``{name: {key: ..., role: scan|admin}}``) and/or an
environment variable (``name:key:role,...``). Only their sha256 digests are kept, compared in constant time
(``hmac.compare_digest``, every key tried); a key never reaches a log or an error message."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from training_pipeline.errors import ConfigError

ROLES: dict[str, frozenset[str]] = {
    "scan": frozenset({"scan"}),
    "admin": frozenset({"scan", "admin"}),
}
"""Role → the permissions it grants: ``scan`` calls /v1/scan, ``admin`` also /v1/admin/*."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (for logs), the sha256 digest of its value and its role."""

    name: str
    digest: bytes
    role: str

    def allows(self, permission: str) -> bool:
        return permission in ROLES[self.role]


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def _key(name: str, key: object, role: object, where: str) -> ApiKey:
    if not isinstance(key, str) or not key.strip():
        raise ConfigError(f"{where}: key {name!r} has no key value")
    if role not in ROLES:
        raise ConfigError(f"{where}: key {name!r} has role {role!r}; expected one of {', '.join(ROLES)}")
    return ApiKey(str(name), _digest(key.strip()), str(role))


def keys_from_file(path: str | Path) -> list[ApiKey]:
    """``{name: {key: ..., role: ...}}`` from a YAML or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such API key file (auth.keys_file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not YAML/JSON ({type(exc).__name__})") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise ConfigError(f"{path}: expected {{name: {{key: ..., role: scan|admin}}}}")
    return [_key(str(name), v.get("key"), v.get("role", "scan"), str(path)) for name, v in data.items()]


def keys_from_env(value: str, var: str = "SCATHAT_API_KEYS") -> list[ApiKey]:
    """``name:key:role,...`` (a key may itself hold ``:``; the role is the last field and required)."""
    keys = []
    for entry in filter(None, (e.strip() for e in value.split(","))):
        name, _, rest = entry.partition(":")
        key, sep, role = rest.rpartition(":")
        if not (name and sep and key):
            raise ConfigError(f"${var}: entry {name!r} is not name:key:role")
        keys.append(_key(name, key, role, f"${var}"))
    return keys


class KeyStore:
    """The configured keys; ``identify`` maps a presented key to its ``ApiKey`` (None: unknown)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        names = [k.name for k in keys]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"API keys: name(s) {', '.join(dup)} given twice")
        digests = [k.digest for k in keys]
        if len(set(digests)) != len(digests):
            raise ConfigError("API keys: two names share the same key value")
        self.keys = keys

    @classmethod
    def from_config(cls, keys_file: str | None, env_var: str | None) -> KeyStore:
        keys = keys_from_file(keys_file) if keys_file else []
        if env_var and os.environ.get(env_var):
            keys += keys_from_env(os.environ[env_var], env_var)
        return cls(keys)

    def __len__(self) -> int:
        return len(self.keys)

    def identify(self, presented: str | None) -> ApiKey | None:
        """The key ``presented`` is, comparing digests in constant time against every key."""
        if not presented:
            return None
        digest, found = _digest(presented.strip()), None
        for key in self.keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return headers.get("x-api-key") or None

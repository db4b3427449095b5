"""Which model answers: the loaded champion/challenger pair (swapped whole on reload, so a request keeps the
pair it started with) and the A/B arm, a stable function of the input's content hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CHAMPION, CHALLENGER = "champion", "challenger"
MODEL_ID_KEYS = ("package_id", "name", "version", "kind", "path")


def input_hash(views: dict[str, str | None], address: str | None = None) -> str:
    """sha256 of the views given (bytecode normalised to lowercase hex without ``0x``), field by field."""
    h = hashlib.sha256()
    for name in ("source", "bytecode", "transactions_csv"):
        text = views.get(name)
        if text is None:
            continue
        if name == "bytecode":
            text = "".join(text.split()).lower().removeprefix("0x")
        h.update(f"{name}\0{len(text)}\0".encode())
        h.update(text.encode("utf-8", errors="replace"))
    if address:
        h.update(f"address\0{address.lower()}".encode())
    return h.hexdigest()


def ab_arm(digest: str, challenger_share: float) -> str:
    """The arm of an input in A/B mode: its hash as a number in [0, 1) against the challenger's share."""
    return CHALLENGER if int(digest[:16], 16) / 2**64 < challenger_share else CHAMPION


def model_id(models: dict[str, Any]) -> dict[str, Any]:
    """The identifying part of a scanner's ``models`` dict (package id, name, version, or its path)."""
    return {k: models[k] for k in MODEL_ID_KEYS if k in models}


def model_label(models: dict[str, Any]) -> str:
    """A short label for metrics: ``name/version``, else the package id, else the path."""
    if models.get("name") is not None and models.get("version") is not None:
        return f"{models['name']}/{models['version']}"
    return str(models.get("package_id") or models.get("path") or "unknown")


@dataclass(frozen=True)
class LoadedModels:
    """The scanners serving now: replaced as one object on reload."""

    champion: Any
    challenger: Any | None = None
    refs: dict[str, str | None] = field(default_factory=dict)
    loaded_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def arms(self) -> dict[str, Any]:
        return {CHAMPION: self.champion} | ({CHALLENGER: self.challenger} if self.challenger else {})

    def describe(self) -> dict[str, Any]:
        return {arm: {"ref": self.refs.get(arm), **model_id(s.models)} for arm, s in self.arms().items()}

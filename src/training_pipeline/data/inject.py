"""``data.inject``: generated contracts compiled INTO real host contracts, the way SolidiFI builds its set.

A SolidiFI contract is a real contract with flawed code added to it, so its flaw sits among much code without
one. A training row of that kind is built here at the source level and compiled, so its bytecode is what solc
makes of such a contract (``data.splice`` pasted opcodes instead, which no compiler would emit):

- the guest, a training record of ``guests`` (the generated corpus: flawed and safe contracts alike, so
  "foreign code" is no label), loses its comments and pragmas, and every name it declares (its contracts,
  libraries and interfaces, their functions, modifiers, events, errors, structs, enums and state variables)
  takes a suffix, so nothing collides with the host's names; names Solidity itself owns (``transfer``,
  ``balance``...) stay;
- its units go into the host's entry file after the host's pragmas and imports, and the host's contract
  inherits the guest's main contract, so the host's runtime bytecode holds the guest's functions;
- the host is a training record of ``hosts`` (the npm audited code: its installed package gives the files
  it imports), compiled with its own compiler under each of its compile variants.

The row keeps the guest's labels (the host's code has no known flaw) and is a training row only; a pair
that does not compile (two ``receive`` functions, a base constructor that needs arguments, a name solc
reserves) is dropped and counted. Guests match their host's compiler era (0.4 ... 0.8), since each era is
rendered in its own syntax.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training_pipeline.corpus.augment.scope import RESERVED, contract_infos, next_code
from training_pipeline.corpus.build import variant_key
from training_pipeline.corpus.imports import ImportResolver, SourceSetJob, compile_source_sets
from training_pipeline.corpus.solc_resolver import SolcResolver
from training_pipeline.data.importers.solidity import main_contract
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.solidity import COMMENTS, Tok, tokenize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InjectConfig:
    """``data.inject.*``: how many injected rows per host training contract, from which sources."""

    enabled: bool = False
    per_host: int = 1  # guests compiled into each host training contract (each its own row)
    guests: Sequence[str] = ("corpus",)
    hosts: Sequence[str] = ("real_code",)
    seed: int = 0
    n_workers: int = 2  # solc-js processes

    def __post_init__(self) -> None:
        for key in ("guests", "hosts"):
            value = getattr(self, key)
            if isinstance(value, str) or not value:
                raise ConfigError(f"data.inject.{key}={value!r}: expected a non-empty list of source names")
            object.__setattr__(self, key, tuple(value))
        if isinstance(self.per_host, bool) or not isinstance(self.per_host, int) or self.per_host < 1:
            raise ConfigError(f"data.inject.per_host={self.per_host!r}: expected a whole number >= 1")


def contract_of(record: dict[str, Any]) -> str | None:
    """The record's contract: ``contract_name``, else the main contract of its source."""
    return record.get("contract_name") or (
        main_contract(record["source_code"]) if record.get("source_code") else None
    )


def _end_of_statement(toks: Sequence[Tok], i: int) -> int:
    while i < len(toks) and toks[i].text != ";":
        i += 1
    return i


def _variable_name(toks: Sequence[Tok], start: int, end: int) -> str | None:
    """The name a state variable declaration declares: its last identifier before ``=`` or ``;`` outside
    brackets (``mapping(address => uint256) public balances;`` → ``balances``)."""
    depth, last = 0, None
    for t in toks[next_code(toks, start) : end]:
        if t.text in ("(", "["):
            depth += 1
        elif t.text in (")", "]"):
            depth -= 1
        elif depth == 0 and t.text in ("=", ";"):
            break
        elif depth == 0 and t.kind == "ident":
            last = t.text
    return last


def declared_names(toks: Sequence[Tok]) -> set[str]:
    """Every name the source declares at contract level (its contracts, libraries and interfaces, their
    functions, modifiers, events, errors, structs, enums and state variables), less what Solidity owns."""
    names: set[str] = set()
    for unit in contract_infos(toks):
        names.add(unit.name)
        for m in unit.members:
            name = _variable_name(toks, m.start, m.end) if m.kind == "var" else m.name
            if name:
                names.add(name)
    return names - RESERVED


def guest_units(source: str, main: str, suffix: str) -> tuple[str, str] | None:
    """The guest's units ready to paste (no comments or pragmas, declared names suffixed) and its main
    contract's new name; None when the file declares no contract ``main``.

    A constructor of ``main`` that takes parameters is left out (the host could not pass them): what it
    sets stays zero, which no runtime code depends on to compile."""
    toks = tokenize(source)
    target = next((u for u in contract_infos(toks) if u.name == main and u.kind == "contract"), None)
    if target is None:
        return None
    dropped: set[int] = set()
    for m in target.members:
        if m.kind == "constructor" or (m.kind == "function" and m.name == main):
            open_ = next(k for k in range(m.start, m.end) if toks[k].text == "(")
            if toks[next_code(toks, open_ + 1)].text != ")":
                dropped.update(range(m.start, m.end))
    rename = declared_names(toks)
    out: list[str] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind in COMMENTS or i in dropped:
            i += 1
            continue
        if t.kind == "ident" and t.text in ("pragma", "import"):
            i = _end_of_statement(toks, i) + 1
            continue
        out.append(t.text + suffix if t.kind == "ident" and t.text in rename else t.text)
        i += 1
    return "".join(out).strip() + "\n", main + suffix


def inject(host_source: str, host: str, guest_text: str, guest_main: str) -> str | None:
    """``host_source`` with ``guest_text`` after its pragmas and imports and ``guest_main`` added to the bases
    of its contract ``host`` (None: ``host`` is not a contract of this file)."""
    toks = tokenize(host_source)
    target = next((u for u in contract_infos(toks) if u.name == host and u.kind == "contract"), None)
    if target is None:
        return None
    name_at = max(k for k in range(target.open) if toks[k].kind == "ident" and toks[k].text == host)
    has_bases = any(t.kind == "ident" and t.text == "is" for t in toks[name_at : target.open])
    brace_text = (", " if has_bases else " is ") + guest_main + " {"
    after = 0  # the end of the last top-level pragma or import directive
    depth = 0
    for k, t in enumerate(toks):
        if t.text == "{":
            depth += 1
        elif t.text == "}":
            depth -= 1
        elif depth == 0 and t.kind == "ident" and t.text in ("pragma", "import"):
            after = _end_of_statement(toks, k) + 1
    parts = [t.text for t in toks]
    parts[target.open] = brace_text
    if toks[target.open - 1].kind == "ws":
        parts[target.open - 1] = ""
    cut = sum(len(p) for p in parts[:after])
    text = "".join(parts)
    return text[:cut] + "\n\n" + guest_text + "\n" + text[cut:]


@dataclass
class InjectStats:
    """What one ``inject_records`` call did (also logged)."""

    hosts: int = 0
    no_guest: int = 0  # hosts with no guest of their compiler era
    no_source: int = 0  # hosts whose source files could not be read
    unusable_guest: int = 0  # the guest's or the host's contract not found in its source
    attempted: int = 0
    failed: int = 0  # did not compile
    kept: int = 0
    compile_seconds: float = 0.0


def source_set(record: dict[str, Any], npm_root: Path | None) -> tuple[dict[str, str], str]:
    """(unit name → text, entry unit) a host record compiles from: its npm package's files for the npm
    audited code (``npm:<name>@<version>:<file>:<contract>``), else its ``source_code`` alone."""
    rid = str(record["id"])
    if rid.startswith("npm:") and npm_root is not None:
        from training_pipeline.data.importers.real_code import PackageSpec, package_dir, split_spec

        rest = rid[len("npm:") :].rsplit(":", 1)[0]
        spec, rel = rest.split(":", 1)
        name, version = split_spec(spec)
        folder = package_dir(PackageSpec(name, version), npm_root)
        modules = folder.parents[1] if name.startswith("@") else folder.parent
        found = ImportResolver(boundary=modules.parent).closure(folder / rel)
        return dict(found.sources), found.entry
    entry = "host_" + hashlib.sha256(rid.encode()).hexdigest()[:12] + ".sol"
    return {entry: record["source_code"]}, entry


def inject_records(
    records: list[dict[str, Any]],
    cfg: InjectConfig,
    data_dir: Path | str,
    variants: Sequence[dict[str, Any]],
    npm_root: Path | None = None,
    resolver: SolcResolver | None = None,
    stats: InjectStats | None = None,
    compile_fn: Callable[..., list] = compile_source_sets,
) -> list[dict[str, Any]]:
    """Training rows of guests compiled into hosts (``records``: the training split, ``origin`` set).

    Each host record of ``cfg.hosts`` takes ``cfg.per_host`` guests of ``cfg.guests`` drawn (seeded) among
    those of its compiler era; each pair compiles under every compile setting of ``variants``
    (``[{optimize, runs}]``; the first gives ``bytecode``), and a pair that fails under any is dropped."""
    from training_pipeline.data.importers.real_code import (
        era,
    )  # real_code imports data.contracts, which imports us

    stats = stats if stats is not None else InjectStats()
    by_era: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["origin"] in cfg.guests and r.get("source_code") and contract_of(r):
            by_era[era(r.get("compiler_version"))].append(r)
    pending: list[tuple[dict[str, Any], dict[str, Any], dict[str, str], str, str]] = []
    for host in records:
        if host["origin"] not in cfg.hosts or host.get("augmented_from"):
            continue
        stats.hosts += 1
        pool = by_era.get(era(host.get("compiler_version")), [])
        name = contract_of(host)
        if not pool or name is None:
            stats.no_guest += 1
            continue
        try:
            sources, entry = source_set(host, npm_root)
        except (OSError, ValueError, DataError) as exc:  # an unreadable or missing import
            log.debug("inject: no sources for %s: %s", host["id"], exc)
            stats.no_source += 1
            continue
        rng = random.Random(f"{cfg.seed}\t{host['id']}")
        for guest in rng.sample(pool, min(cfg.per_host, len(pool))):
            suffix = "_" + hashlib.sha256(f"{host['id']}\t{guest['id']}".encode()).hexdigest()[:4]
            made = guest_units(guest["source_code"], contract_of(guest), suffix)
            text = made and inject(sources[entry], name, *made)
            if text is None:
                stats.unusable_guest += 1
                continue
            pending.append((host, guest, {**sources, entry: text}, entry, name))
    stats.attempted = len(pending)
    jobs = [
        SourceSetJob(
            files, entry, host["compiler_version"], bool(v.get("optimize")), int(v.get("runs") or 200)
        )
        for v in variants
        for host, _, files, entry, _ in pending
    ]
    start = time.perf_counter()
    results = compile_fn(jobs, resolver, n_workers=cfg.n_workers, cache_dir=Path(data_dir) / "solc_cache")
    stats.compile_seconds = time.perf_counter() - start
    keys = [variant_key(v) for v in variants]
    errors: Counter = Counter()
    out = []
    n = len(pending)
    for k, (host, guest, files, entry, name) in enumerate(pending):
        built = [(results[j * n + k].contracts or {}).get(name) for j in range(len(variants))]
        if not all(built):
            stats.failed += 1
            errors[str(results[k].error or "no runtime bytecode")[:120]] += 1
            continue
        row = {
            **guest,
            "id": f"{guest['id']}@{host['id']}",
            "group": host["group"],
            "family": guest.get("family"),
            "compiler_version": host["compiler_version"],
            "source_code": files[entry],
            "bytecode": "0x" + built[0],
            "vulnerable_lines": None,
            "augmented_from": guest["id"],
            "injected_into": host["id"],
        }
        if len(variants) > 1:
            row["bytecode_variants"] = {key: "0x" + code for key, code in zip(keys, built, strict=True)}
        out.append(row)
    stats.kept = len(out)
    log.info(
        "Inject: %d of %d host training contracts took %d guests (%d flawed), %d of %d pairs failed to "
        "compile, %d guests unusable, %d hosts without a guest of their era, %d without sources; "
        "compile %.1f s",
        len({r["injected_into"] for r in out}),
        stats.hosts,
        stats.kept,
        sum(bool(r.get("labels")) for r in out),
        stats.failed,
        stats.attempted,
        stats.unusable_guest,
        stats.no_guest,
        stats.no_source,
        stats.compile_seconds,
    )
    for err, count in errors.most_common(3):
        log.info("inject: %d pairs failed with: %s", count, err)
    return out

"""Real audited Solidity from npm packages → unlabeled contract records (every deployable contract compiled).

The package list lives in config (``data.real_code.packages`` in ``conf/data/real_code.yaml``): name, exact
version, licence (checked against the installed package.json) and an optional subfolder. Packages of
Uniswap, Gnosis Safe / Safe and Aave are refused (``REFUSED``): they are kept for evaluation outside the
repository. Each package@version installs once into its own npm prefix, ``<npm_dir>/<slug>/node_modules``
(``npm install --ignore-scripts``; a rerun finds it and stays offline), and is imported once per config and
content into ``data/imported/real_code/<key>/`` (records + manifest), like the other importers.

What is compiled: every ``.sol`` file of the package (or its subfolder) not matched by ``exclude`` (mocks and
tests by default: some are deliberately vulnerable), with its imports (``corpus.imports``: relative and
package paths from the installed node_modules) and the newest solc release every pragma of the import closure
allows (``compiler: newest``, the resolver's rule) or, by default (``compiler: era``), the newest release
of the OLDEST minor they allow: the era the authors wrote against (``>=0.6.0 <0.8.0`` is 0.6 code). Either
way ``SolcResolver`` finds or installs it (offline: the newest installed match). Which contracts become
records: files declaring no plain ``contract`` (only interfaces, libraries, ``abstract contract``) are not
compiled; of the rest, libraries are skipped by declaration and a contract whose runtime bytecode the compiler
leaves empty is skipped as abstract (0.4/0.5 contracts with unimplemented functions, interfaces). Library
placeholders (``__$<34 hex>$__``, or ``__<name>___`` before 0.5) are linked to the zero address and counted.
Compile settings (``compile_variants``, the corpus's format and keys ``o0``, ``o1-r200``, ...; no EVM target,
the multi-file runner sets none): every file is compiled once per variant with the same sources and release;
the first variant decides which contracts become records and is ``bytecode``, and with several,
``bytecode_variants`` maps each variant that compiled to its bytecode (one record: one group and split).

Records have ``labels`` [] and no ``negative_labels``: they are unlabeled (``unlabeled`` is set on load), for
pretraining, weak labels and the false-alarm benchmark, never supervised negatives. ``group`` keeps one
package release together by default (``group_by``), since its files import and inherit from each other.
Folds go to the groups the data module's clone merge will form, largest first to the lightest fold
(``deal_folds``), so each fold holds about its share of the contracts: a group holds 1 to 129 of them, and
dealing them round robin before the merge had put 152 of 336 in the test fold and 136 in validation.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training_pipeline.config import CONF_DIR
from training_pipeline.corpus.build import variant_key
from training_pipeline.corpus.imports import (
    ImportResolver,
    SourceSetJob,
    SourceSetResult,
    UnresolvedImportError,
    compile_source_sets,
)
from training_pipeline.corpus.solc_resolver import (
    SolcNotInstalledError,
    SolcResolver,
    SolcVersionError,
    satisfies,
    version_tuple,
)
from training_pipeline.data.contracts import LoadedSource, group_clones
from training_pipeline.data.importers.solidity import declarations
from training_pipeline.data.importers.store import (
    build_once,
    import_key,
    import_variants,
    load_stored,
    plain,
    variant_counts,
    variants_content,
)
from training_pipeline.errors import ConfigError, DataError
from training_pipeline.utils.checks import config_dataclass
from training_pipeline.utils.files import file_sha256
from training_pipeline.utils.splits import assign_folds_by_size

log = logging.getLogger(__name__)

IMPORTER_VERSION = 2  # bump when the records it produces change for the same input
ERAS = ("0.4", "0.5", "0.6", "0.7", "0.8")
# Kept for evaluation outside the repository: never imported here, whatever the config says.
REFUSED = re.compile(r"uniswap|gnosis|safe-global|^@safe/|^safe-|aave", re.IGNORECASE)
_EXACT_VERSION = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?")
_PLACEHOLDER = re.compile(r"__.{38}")  # hex never holds "_": a link placeholder is 40 characters from "__"
GROUP_BY = ("package", "package_version", "file")
COMPILER_RULES = ("era", "newest")


class PackageError(DataError):
    """One package cannot be used (install failed, folder missing, licence differs): one line naming it."""


def split_spec(spec: str) -> tuple[str, str]:
    """``@scope/pkg@1.2.3`` → (``@scope/pkg``, ``1.2.3``); no version → (spec, "")."""
    name, _, version = str(spec).rpartition("@")
    return (name, version) if name else (str(spec), "")


@dataclass(frozen=True)
class PackageSpec:
    """One npm package of Solidity sources: name, exact version, licence and the subfolder to compile."""

    name: str
    version: str
    licence: str | None = None  # as in its package.json; checked after install when given
    subfolder: str | None = None  # e.g. contracts, src/v0.6; null = the whole package
    extra: Sequence[str] = ()  # name@version installed beside it: packages its imports need but it does not
    # declare as dependencies (Chainlink imports @openzeppelin/contracts from a devDependency)

    def __post_init__(self) -> None:
        for name, version in [(self.name, self.version), *map(split_spec, self.extra)]:
            if REFUSED.search(name):
                raise ConfigError(
                    f"data.real_code.packages: {name} is refused (Uniswap, Gnosis Safe/Safe and Aave code "
                    "is kept for evaluation outside the repository)"
                )
            if not _EXACT_VERSION.fullmatch(str(version)):
                raise ConfigError(f"data.real_code.packages: {name} version {version!r} is not exact")
        object.__setattr__(self, "extra", tuple(self.extra))

    @property
    def spec(self) -> str:
        """``name@version`` as npm takes it."""
        return f"{self.name}@{self.version}"

    @property
    def slug(self) -> str:
        """The npm prefix folder name: ``@scope/pkg`` 2.5.1 → ``scope__pkg@2.5.1``."""
        return f"{self.name.lstrip('@').replace('/', '__')}@{self.version}"


@dataclass(frozen=True)
class RealCodeConfig:
    """``data.real_code``: which packages, where they install, what to skip, how to group and compile."""

    packages: Sequence[Any] = ()
    npm_dir: str | None = None  # null: <data_dir>/real_code/npm
    install: bool = True  # false: never call npm; a package not installed is an error naming it
    npm: str = "npm"
    exclude: Sequence[str] = ("**/mocks/**", "**/test/**", "**/tests/**")
    group_by: str = "package_version"  # package | package_version | file
    compiler: str = "era"  # era: newest release of the oldest minor the pragmas allow | newest: any minor
    n_workers: int = 2  # node compile processes; does not change the content
    install_workers: int = 4  # npm installs at once (they wait on the network, not on the cores)
    n_folds: int = 5
    seed: int = 0
    compile_variants: Sequence[Mapping] | None = None  # None: optimizer off only (corpus.build rules)
    specs: tuple[PackageSpec, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        variants = import_variants(self.compile_variants, "data.real_code.compile_variants")
        if any(v["evm_version"] for v in variants):
            raise ConfigError(
                "data.real_code.compile_variants: evm_version is not supported for multi-file compiles"
            )
        object.__setattr__(self, "compile_variants", variants)
        specs = tuple(
            p
            if isinstance(p, PackageSpec)
            else config_dataclass(PackageSpec, p, f"data.real_code.packages[{i}]")
            for i, p in enumerate(self.packages)
        )
        seen = Counter((s.name, s.version, s.subfolder) for s in specs)
        dup = [f"{n}@{v}" for (n, v, _), k in seen.items() if k > 1]
        if dup:
            raise ConfigError(f"data.real_code.packages: listed twice: {', '.join(dup)}")
        if self.compiler not in COMPILER_RULES:
            raise ConfigError(
                f"data.real_code.compiler={self.compiler!r}: expected one of {', '.join(COMPILER_RULES)}"
            )
        if self.group_by not in GROUP_BY:
            raise ConfigError(
                f"data.real_code.group_by={self.group_by!r}: expected one of {', '.join(GROUP_BY)}"
            )
        object.__setattr__(self, "specs", specs)

    def npm_root(self, data_dir: str | Path) -> Path:
        """Where packages install: ``npm_dir``, else ``<data_dir>/real_code/npm``."""
        return Path(self.npm_dir) if self.npm_dir else Path(data_dir) / "real_code" / "npm"


def default_config_block() -> dict[str, Any]:
    """The ``real_code`` block of the packaged ``conf/data/real_code.yaml`` (interpolated keys left out)."""
    block = OmegaConf.to_container(
        OmegaConf.load(CONF_DIR / "data" / "real_code.yaml").real_code, resolve=False
    )
    return {k: v for k, v in block.items() if not (isinstance(v, str) and v.startswith("${"))}


def era(version: str | None) -> str:
    """``0.8.26`` → ``0.8``; unknown → ``?``."""
    parts = (version or "").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 else "?"


def era_constraint(constraints: Sequence[str], resolver: SolcResolver) -> str | None:
    """``>=0.M.0 <0.(M+1).0`` for the oldest minor M with a release satisfying ``constraints`` (None: none).

    A range such as ``>=0.6.0 <0.8.0`` (OpenZeppelin 3.x) is 0.6 code: 0.7 changed ``using for`` inheritance,
    so the newest release it allows may not compile it, and its era would be counted wrong.
    """
    known = sorted({*resolver.releases, *resolver.available()}, key=version_tuple)
    ok = [v for v in known if all(satisfies(v, c) for c in constraints)]
    if not ok:
        return None
    major, minor = version_tuple(ok[0])[:2]
    return f">={major}.{minor}.0 <{major}.{minor + 1}.0"


def link_zero(bytecode: str) -> tuple[str, int]:
    """Link every library placeholder to the zero address; return the bytecode and how many were linked."""
    return _PLACEHOLDER.subn("0" * 40, bytecode)


# --- install ---------------------------------------------------------------------------------------------


def package_dir(spec: PackageSpec, npm_root: Path) -> Path:
    """Where ``spec`` lives once installed: ``<npm_root>/<slug>/node_modules/<name>``."""
    return npm_root / spec.slug / "node_modules" / spec.name


def installed_version(folder: Path) -> str | None:
    """The ``version`` of the package.json in ``folder``, or None when there is none."""
    try:
        return json.loads((folder / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def ensure_package(spec: PackageSpec, npm_root: Path, install: bool = True, npm: str = "npm") -> Path:
    """The installed package folder of ``spec``, installing it first if needed (PackageError names it)."""
    folder = package_dir(spec, npm_root)
    wanted = [(spec.name, spec.version), *map(split_spec, spec.extra)]
    modules = npm_root / spec.slug / "node_modules"
    if all(installed_version(modules / name) == version for name, version in wanted):
        return folder
    specs = [spec.spec, *spec.extra]
    command = f"{npm} install --prefix {npm_root / spec.slug} --no-audit --no-fund --ignore-scripts"
    command += " " + " ".join(specs)
    if not install:
        raise PackageError(f"{spec.spec}: not installed in {folder} and installs are off: run `{command}`")
    npm_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.slug}.partial-", dir=npm_root))
    cmd = [npm, "install", "--prefix", str(tmp), "--no-audit", "--no-fund", "--ignore-scripts", *specs]
    try:
        log.info("Installing %s into %s", spec.spec, npm_root / spec.slug)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PackageError(f"{spec.spec}: `{command}` failed: {exc}") from None
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
            raise PackageError(f"{spec.spec}: `{command}` exited with {proc.returncode}: {tail}")
        for name, version in wanted:
            got = installed_version(tmp / "node_modules" / name)
            if got != version:
                raise PackageError(f"{spec.spec}: npm install left {name} version {got}, not {version}")
        tmp.chmod(0o755)
        shutil.rmtree(npm_root / spec.slug, ignore_errors=True)
        tmp.rename(npm_root / spec.slug)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def package_licence(folder: Path) -> str | None:
    """The licence declared in a package.json (``license``, or the old ``licenses``/object forms)."""
    try:
        meta = json.loads((folder / "package.json").read_text())
    except (OSError, ValueError):
        return None
    value = meta.get("license") or meta.get("licenses")
    if isinstance(value, dict):
        value = value.get("type")
    if isinstance(value, list):
        value = " OR ".join(str(v.get("type", v) if isinstance(v, dict) else v) for v in value)
    return str(value) if value else None


def contract_files(folder: Path, subfolder: str | None, exclude: Sequence[str]) -> list[Path]:
    """The package's ``.sol`` files (under ``subfolder``), sorted, minus those matching ``exclude``."""
    base = folder / subfolder if subfolder else folder
    if not base.is_dir():
        raise PackageError(f"{folder.name}: no folder {base} (data.real_code.packages subfolder)")
    files = []
    for path in sorted(p for p in base.rglob("*.sol") if p.is_file()):
        rel = "/" + path.relative_to(folder).as_posix()
        if "/node_modules/" in rel or any(fnmatch.fnmatch(rel, pat) for pat in exclude):
            continue
        files.append(path)
    return files


# --- one package -----------------------------------------------------------------------------------------


def _group(spec: PackageSpec, rel: str, group_by: str) -> str:
    if group_by == "package":
        return f"npm:{spec.name}"
    if group_by == "file":
        return f"npm:{spec.spec}:{rel}"
    return f"npm:{spec.spec}"


@dataclass
class _Plan:
    """A package to build: where it is stored, and one compile job per file that declares a contract."""

    spec: PackageSpec
    folder: Path
    licence: str | None
    out: Path
    n_files: int
    install_s: float
    jobs: list[SourceSetJob] = field(default_factory=list)
    todo: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (rel path, kind by declared name)
    failures: list[dict[str, str]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    prepare_s: float = 0.0


def _plan(
    spec: PackageSpec,
    cfg: RealCodeConfig,
    data_dir: str | Path,
    folder: Path,
    install_s: float,
    resolver: SolcResolver,
    force: bool,
) -> Path | _Plan:
    """The stored folder of an installed package when its import is stored already, else what to compile."""
    licence = package_licence(folder)
    if spec.licence is not None and licence != spec.licence:
        raise PackageError(
            f"{spec.spec}: licence in config {spec.licence!r}, in its package.json {licence!r}"
        )
    files = contract_files(folder, spec.subfolder, cfg.exclude)
    modules = folder.parents[1] if spec.name.startswith("@") else folder.parent  # the prefix's node_modules
    every = sorted(p for p in modules.rglob("*.sol") if p.is_file())
    hashes = {p.relative_to(modules).as_posix(): file_sha256(p) for p in every}
    key = import_key(
        {
            "package": [spec.name, spec.version, spec.subfolder, list(spec.extra)],
            "exclude": list(cfg.exclude),
            "group_by": cfg.group_by,
            "compiler": cfg.compiler,
            "files": hashes,
            "importer": IMPORTER_VERSION,
            **variants_content(cfg.compile_variants),
        }
    )
    out = Path(data_dir) / "imported" / "real_code" / key
    if (out / "manifest.json").exists() and not force:
        return out
    start = time.perf_counter()
    plan = _Plan(spec, folder, licence, out, len(files), install_s)
    imports = ImportResolver(boundary=modules.parent)  # only this package's npm prefix
    for path in files:
        rel = path.relative_to(folder).as_posix()
        decls = declarations(imports.read(path))
        for d in decls:
            if d.kind != "contract" or d.abstract:
                plan.skipped["abstract" if d.kind == "contract" else d.kind] += 1
        if not any(d.kind == "contract" and not d.abstract for d in decls):
            continue  # interfaces, libraries and abstract contracts only: nothing deployable to compile
        try:
            sources = imports.closure(path)
            constraints = sources.pragmas()
            if cfg.compiler == "era" and (pin := era_constraint(constraints, resolver)) is not None:
                constraints.append(pin)
            version = resolver.resolve_constraints(constraints).version
        except (UnresolvedImportError, SolcVersionError, SolcNotInstalledError) as exc:
            plan.failures.append({"file": rel, "reason": str(exc).replace(f"{modules}/", "")})
            continue
        plan.jobs.append(SourceSetJob(sources.sources, sources.entry, version))
        plan.todo.append((rel, {d.name: "abstract" if d.abstract else d.kind for d in decls}))
    plan.prepare_s = time.perf_counter() - start
    log.info("%s: %d of %d files to compile", spec.spec, len(plan.jobs), len(files))
    return plan


def _records(
    plan: _Plan, cfg: RealCodeConfig, per_variant: list[list[SourceSetResult]], compile_s: float
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The package's records and manifest from its compiled jobs (``per_variant``: one list per variant)."""
    spec, skipped, failures = plan.spec, Counter(plan.skipped), list(plan.failures)
    variants = cfg.compile_variants
    keys = [variant_key(v) for v in variants]
    records: list[dict[str, Any]] = []
    linked = linked_records = 0
    for j, ((rel, kinds), job, res) in enumerate(zip(plan.todo, plan.jobs, per_variant[0], strict=True)):
        if res.contracts is None:
            failures.append({"file": rel, "reason": str(res.error)})
            continue
        for name, code in sorted(res.contracts.items()):
            kind = kinds.get(name, "contract")
            if kind != "contract":
                continue  # interfaces, libraries, abstract contracts: counted from the declarations above
            if not code:
                skipped["abstract"] += 1  # the compiler left it without runtime bytecode
                continue
            code, n = link_zero(code)
            linked += n
            linked_records += n > 0
            record = {
                "id": f"npm:{spec.spec}:{rel}:{name}",
                "group": _group(spec, rel, cfg.group_by),
                "family": spec.name,
                "compiler_version": job.version,
                "contract_name": name,
                "source_code": job.sources[job.entry],
                "bytecode": "0x" + code,
                "labels": [],
                "vulnerable_lines": None,
            }
            if len(variants) > 1:
                built = {k: (r[j].contracts or {}).get(name) for k, r in zip(keys, per_variant, strict=True)}
                record["bytecode_variants"] = {k: "0x" + link_zero(c)[0] for k, c in built.items() if c}
            records.append(record)
    if failures:
        log.warning("%s: %d files failed, e.g. %s: %s", spec.spec, len(failures), *failures[0].values())
    per_era = Counter(era(r["compiler_version"]) for r in records)
    seconds = {"install": plan.install_s, "prepare": plan.prepare_s, "compile": compile_s}
    manifest = {
        "source": "real_code",
        "importer_version": IMPORTER_VERSION,
        "package": {
            "name": spec.name,
            "version": spec.version,
            "subfolder": spec.subfolder,
            "extra": list(spec.extra),
            "path": str(plan.folder),
            "licence": plan.licence,
        },
        "config": {
            "exclude": list(cfg.exclude),
            "group_by": cfg.group_by,
            "compiler": cfg.compiler,
            **variants_content(variants),
        },
        "n_files": plan.n_files,
        "n_compiled_files": len(plan.jobs),
        "n_records": len(records),
        "per_era": {e: per_era.get(e, 0) for e in sorted({*ERAS, *per_era})},
        "per_compiler": dict(sorted(Counter(r["compiler_version"] for r in records).items())),
        "variants": variant_counts(records, variants),
        "skipped": dict(sorted(skipped.items())),
        "linked_library_placeholders": linked,
        "records_with_linked_libraries": linked_records,
        "compile_failures": len(failures),
        "failed": failures,
        # compile: this package's share of the one compile pass, by its number of jobs
        "seconds": {**{k: round(v, 2) for k, v in seconds.items()}, "total": round(sum(seconds.values()), 2)},
    }
    return records, manifest


# --- every package ---------------------------------------------------------------------------------------


@dataclass
class RealCodeImport:
    """The outcome of importing every configured package: stored folders, and one line per failed package."""

    stored: dict[str, Path] = field(default_factory=dict)  # name@version → data/imported/real_code/<key>
    failed: dict[str, str] = field(default_factory=dict)  # name@version → why

    def manifests(self) -> dict[str, dict[str, Any]]:
        """Each stored package's manifest."""
        return {k: json.loads((p / "manifest.json").read_text()) for k, p in self.stored.items()}


def _install_all(cfg: RealCodeConfig, data_dir: str | Path) -> list[tuple[Path, float] | PackageError]:
    """Each package's installed folder and install seconds (or why not): ``install_workers`` npm processes at
    once, since an install waits on the network far more than on the cores."""

    def one(spec: PackageSpec) -> tuple[Path, float] | PackageError:
        start = time.perf_counter()
        try:
            folder = ensure_package(spec, cfg.npm_root(data_dir), cfg.install, cfg.npm)
        except PackageError as exc:
            return exc
        return folder, time.perf_counter() - start

    with ThreadPoolExecutor(max_workers=max(1, cfg.install_workers)) as pool:
        return list(pool.map(one, cfg.specs))


def import_real_code(
    cfg: RealCodeConfig, data_dir: str | Path, resolver: SolcResolver | None = None, force: bool = False
) -> RealCodeImport:
    """Install and import every package; a package that fails is recorded, the others still build.

    Packages install side by side, then every file of every package not stored yet compiles in one pass
    (``compile_source_sets``: each compiler loads once per process and no process waits on a package's last
    file), and each package is stored on its own (``data/imported/real_code/<key>``)."""
    if not cfg.specs:
        raise ConfigError("data.real_code.packages: list at least one npm package (name, version)")
    resolver = resolver or SolcResolver()
    outcome = RealCodeImport()
    plans: list[_Plan] = []
    for spec, installed in zip(cfg.specs, _install_all(cfg, data_dir), strict=True):
        try:
            if isinstance(installed, PackageError):
                raise installed
            planned = _plan(spec, cfg, data_dir, *installed, resolver, force)
        except PackageError as exc:
            log.error("%s", exc)
            outcome.failed[spec.spec] = str(exc)
            continue
        if isinstance(planned, Path):
            log.info("Reusing imported dataset %s", planned)
            outcome.stored[spec.spec] = planned
        else:
            plans.append(planned)
    if not plans:
        return outcome
    variants = cfg.compile_variants
    n_jobs = sum(len(p.jobs) for p in plans)
    log.info(
        "Compiling %d files of %d npm packages (%s) with %d workers",
        n_jobs,
        len(plans),
        ", ".join(variant_key(v) for v in variants),
        cfg.n_workers,
    )
    every = [
        replace(j, optimize=v["optimize"], runs=v["runs"]) for p in plans for v in variants for j in p.jobs
    ]
    start = time.perf_counter()
    compiled = compile_source_sets(  # the compile cache: a new variant list compiles only what it adds
        every,
        resolver,
        n_workers=cfg.n_workers,
        progress=_progress_log("npm"),
        cache_dir=Path(data_dir) / "solc_cache",
    )
    compile_s = time.perf_counter() - start
    at = 0
    for plan in plans:
        n = len(plan.jobs)
        per_variant = [compiled[at + k * n : at + (k + 1) * n] for k in range(len(variants))]
        at += n * len(variants)
        records, manifest = _records(plan, cfg, per_variant, compile_s * n / max(1, n_jobs))
        outcome.stored[plan.spec.spec] = build_once(
            plan.out, lambda r=records, m=manifest: (r, m), force=force
        )
    return outcome


def _progress_log(what: str, steps: int = 10) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` that logs each time another ``1/steps`` of the way is done."""
    logged = [0]

    def progress(done: int, total: int) -> None:
        if done * steps // total > logged[0]:
            logged[0] = done * steps // total
            log.info("compiled %d/%d %s jobs", done, total, what)

    return progress


def count_table(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    """Contracts per package and era as a markdown table (with files, failures and seconds)."""
    head = ["package", *ERAS, "contracts", "files", "failed files", "seconds"]
    rows = [head, ["---"] * len(head)]
    totals = Counter()
    for name, m in manifests.items():
        eras = [m["per_era"].get(e, 0) for e in ERAS]
        totals.update({e: n for e, n in zip(ERAS, eras, strict=True)})
        totals.update({"n": m["n_records"], "files": m["n_files"], "failed": m["compile_failures"]})
        totals["s"] += m["seconds"].get("total", 0)
        cells = [*eras, m["n_records"], m["n_files"], m["compile_failures"], m["seconds"].get("total", 0)]
        rows.append([name, *map(str, cells)])
    total = [totals[e] for e in ERAS] + [
        totals["n"],
        totals["files"],
        totals["failed"],
        round(totals["s"], 1),
    ]
    rows.append(["**total**", *map(str, total)])
    return "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def with_default_packages(cfg: Any) -> dict[str, Any]:
    """A ``real_code`` config block, with the package list of ``conf/data/real_code.yaml`` when it names none
    (``data=bytecode_detector data.sources=[...,real_code]`` carries no block of its own)."""
    block = plain(cfg) or {}
    if not block.get("packages"):
        block = {**default_config_block(), **{k: v for k, v in block.items() if k != "packages"}}
    return block


resolved_config = with_default_packages  # the block load_real_code uses: data.contracts.source_fingerprint


def deal_folds(records: list[dict[str, Any]], n_folds: int, seed: int) -> None:
    """Set each record's ``fold``, the folds balanced in contracts (``assign_folds_by_size``). Folds go to the
    clone groups the data module will merge (releases that ship the same files), so that merge, where a merged
    group takes its smallest member's fold, does not undo the balance. Records keep their own ``group``."""
    merged = [{k: r.get(k) for k in ("group", "source_code", "bytecode")} for r in records]
    group_clones(merged)
    folds = assign_folds_by_size([m["group"] for m in merged], n_folds, seed)
    for r, m in zip(records, merged, strict=True):
        r["fold"] = folds[m["group"]]


def load_real_code(cfg: dict, data_dir: Path) -> LoadedSource:
    """The ``real_code`` source of ``ContractDataModule``: unlabeled records, folds by ``deal_folds``."""
    config = config_dataclass(RealCodeConfig, with_default_packages(cfg), "data.real_code")
    outcome = import_real_code(config, data_dir)
    if outcome.failed:
        raise DataError(
            f"data.real_code: {len(outcome.failed)} package(s) unusable: "
            + "; ".join(outcome.failed.values())
        )
    records: list[dict[str, Any]] = []
    versions = []
    for spec in config.specs:  # config order however many were built now (the version hashes this order)
        rows, manifest = load_stored(outcome.stored[spec.spec])
        records += rows
        versions.append(manifest["content_hash"])
    deal_folds(records, config.n_folds, config.seed)
    for r in records:
        r["unlabeled"] = True  # no human labels: every class unassessed (see the module docstring)
    version = versions[0] if len(versions) == 1 else import_key({"packages": versions})
    return LoadedSource(records, "sha256:" + version)

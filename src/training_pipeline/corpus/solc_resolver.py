"""Which solc-js release compiles a source, and where it lives: bundled, cached, or installed from npm.

Rule: the constraints of every ``pragma solidity`` (npm range syntax: exact, ``=``, ``^``, ``~``, ``>=a <b``,
``||``; all directives must hold) pick the NEWEST release of the known list that satisfies them; a
``solc=VERSION`` override picks that release instead. The known list is ``solc_releases.json`` beside this
module (plain ``X.Y.Z`` releases 0.4.11–0.8.x from ``npm view solc versions --json``); ``refresh_releases()``
writes a newer list into the compiler cache, which then wins over the shipped one.

The chosen release is found in (a) the bundled npm aliases of the solc-js folder (``scripts/solc``:
``node_modules/solc-0426`` …, declared in its package.json), (b) the compiler cache, else (c) installed into
the cache with ``npm install --prefix <tmp> --no-audit --no-fund solc@<version>``. The install goes into a
temporary folder inside the cache and is renamed into place only once complete, under a file lock
``<cache>/<version>.lock`` (plus a thread lock), so two processes never install one release twice and a
half-finished install is never used.

Offline (``offline=True`` or ``$TRAINING_PIPELINE_SOLC_OFFLINE=1``), or when npm fails, the newest bundled or
cached release satisfying the pragma is used instead (with a warning); when none does, one line
(SolcNotInstalledError) names the release and the command that installs it.

Cache layout: ``<cache>/<version>/node_modules/solc/soljson.js``, where ``<cache>`` is the ``cache_dir``
argument, else ``$TRAINING_PIPELINE_SOLC_CACHE``, else ``~/.cache/scathat/solc``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from semantic_version import NpmSpec, Version

from training_pipeline.errors import UserError
from training_pipeline.utils.solidity import solidity_pragmas

log = logging.getLogger(__name__)

SOLC_DIR_ENV = "TRAINING_PIPELINE_SOLC_DIR"
SOLC_CACHE_ENV = "TRAINING_PIPELINE_SOLC_CACHE"
SOLC_OFFLINE_ENV = "TRAINING_PIPELINE_SOLC_OFFLINE"
DEFAULT_SOLC_CACHE = Path("~/.cache/scathat/solc")
RELEASES_FILE = Path(__file__).with_name("solc_releases.json")
RELEASES_NAME = "solc_releases.json"  # a refreshed copy in the compiler cache wins over RELEASES_FILE
OLDEST, NEWEST_MINOR = (0, 4, 11), (0, 9, 0)  # releases with standard JSON, below 0.9

Installer = Callable[[str, Path], None]  # (version, prefix folder) → <prefix>/node_modules/solc


class SolcNotInstalledError(UserError, RuntimeError):
    """No solc-js folder, node or a needed compiler release is missing and cannot be installed (one line)."""


class SolcVersionError(UserError, ValueError):
    """No known solc release satisfies a source's pragma, or an unknown release was asked for."""


def version_tuple(version: str) -> tuple[int, ...]:
    """``"0.8.26"`` → ``(0, 8, 26)``."""
    return tuple(int(p) for p in version.split(".") if p.isdigit())


def solc_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """The compiler cache: ``cache_dir``, else ``$TRAINING_PIPELINE_SOLC_CACHE``,
    else ``~/.cache/scathat/solc``."""
    return Path(cache_dir or os.environ.get(SOLC_CACHE_ENV) or DEFAULT_SOLC_CACHE).expanduser()


CHECKOUT_SOLC_DIR = Path(__file__).resolve().parents[3] / "scripts" / "solc"  # an editable install's checkout


def solc_dir() -> Path:
    """The solc-js folder: ``$TRAINING_PIPELINE_SOLC_DIR``, else ``scripts/solc`` under the current dir, else
    the one of the checkout this package runs from (so a scan works from any directory)."""
    env = os.environ.get(SOLC_DIR_ENV)
    if env:
        return Path(env)
    here = Path.cwd() / "scripts" / "solc"
    if not (here / "package.json").is_file() and (CHECKOUT_SOLC_DIR / "package.json").is_file():
        return CHECKOUT_SOLC_DIR
    return here


_default_solc_dir = solc_dir  # SolcResolver's argument of the same name shadows the function


def offline_default() -> bool:
    """Whether ``$TRAINING_PIPELINE_SOLC_OFFLINE`` forbids installs (1, true, yes, on)."""
    return os.environ.get(SOLC_OFFLINE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def read_bundled(directory: Path) -> dict[str, str]:
    """Map "0.8.26" → "solc-0826" from package.json's npm aliases ("solc-0826": "npm:solc@0.8.26")."""
    try:
        deps = json.loads((directory / "package.json").read_text()).get("dependencies", {})
    except (OSError, ValueError):
        return {}
    return {
        spec.split("@", 1)[1]: alias
        for alias, spec in deps.items()
        if isinstance(spec, str) and spec.startswith("npm:solc@")
    }


def _plain_releases(versions: Sequence[str]) -> list[str]:
    """Plain X.Y.Z releases 0.4.11–0.8.x, oldest first (npm also lists "0.8.7-fixed" and 0.1–0.3)."""
    plain = {v for v in versions if re.fullmatch(r"\d+\.\d+\.\d+", v)}
    return sorted((v for v in plain if OLDEST <= version_tuple(v) < NEWEST_MINOR), key=version_tuple)


def known_releases(cache_dir: str | Path | None = None) -> list[str]:
    """The solc-js releases the resolver picks from, oldest first (a refreshed list in the cache wins)."""
    for path in (solc_cache_dir(cache_dir) / RELEASES_NAME, RELEASES_FILE):
        try:
            return _plain_releases(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return []


def refresh_releases(
    cache_dir: str | Path | None = None, npm: str = "npm", timeout_s: float = 120
) -> list[str]:
    """Ask npm for the solc-js releases (online); store them in the cache for ``known_releases``."""
    try:
        proc = subprocess.run(
            [npm, "view", "solc", "versions", "--json"], capture_output=True, text=True, timeout=timeout_s
        )
        releases = _plain_releases(json.loads(proc.stdout)) if proc.returncode == 0 else []
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        raise SolcNotInstalledError(f"`{npm} view solc versions` failed: {e}") from None
    if not releases:
        raise SolcNotInstalledError(f"`{npm} view solc versions` failed: {proc.stderr.strip()[-300:]}")
    path = solc_cache_dir(cache_dir) / RELEASES_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RELEASES_NAME}.{os.getpid()}")
    tmp.write_text(json.dumps(releases, indent=0) + "\n")
    tmp.replace(path)
    return releases


_OPERATOR_SPACE = re.compile(r"(\^|~|>=|<=|>|<|=)\s+")
_DOT_SPACE = re.compile(r"(?<=\d)\s*\.\s*(?=\d)")  # ``^ 0.4 .6``: solc accepts spaces around dots


def satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` lies in the npm-style range ``constraint`` (``>= 0.5.0`` spacing allowed)."""
    try:
        spec = _DOT_SPACE.sub(".", _OPERATOR_SPACE.sub(r"\1", constraint.strip()))
        return Version(version) in NpmSpec(spec)
    except ValueError:  # not a range solc accepts either
        return False


def newest_satisfying(constraints: Sequence[str], versions: Sequence[str]) -> str | None:
    """The newest of ``versions`` satisfying every constraint, or None."""
    ok = [v for v in versions if all(satisfies(v, c) for c in constraints)]
    return max(ok, key=version_tuple) if ok else None


def _release_ok(package: Path, version: str) -> bool:
    """Whether ``package`` is a complete solc-js package of exactly ``version``."""
    try:
        meta = json.loads((package / "package.json").read_text())
    except (OSError, ValueError):
        return False
    return meta.get("version") == version and (package / "soljson.js").is_file()


def npm_install(version: str, prefix: Path, npm: str = "npm", timeout_s: float = 900) -> None:
    """``npm install --prefix <prefix> --no-audit --no-fund solc@<version>`` (needs the npm registry)."""
    cmd = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", f"solc@{version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SolcNotInstalledError(f"`{' '.join(cmd)}` failed: {e}") from None
    if proc.returncode != 0:
        tail = " ".join((proc.stderr or proc.stdout).split())[-300:]
        raise SolcNotInstalledError(f"`{' '.join(cmd)}` exited with {proc.returncode}: {tail}")


@dataclass(frozen=True)
class ResolvedCompiler:
    """A solc release and the folder of its solc-js package; ``origin`` is bundled, cache or installed."""

    version: str
    path: Path
    origin: str


_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


def _thread_lock(key: str) -> threading.Lock:
    with _THREAD_LOCKS_GUARD:
        return _THREAD_LOCKS.setdefault(key, threading.Lock())


class SolcResolver:
    """Picks the solc release for a pragma and finds it (bundled, cached) or installs it (npm, locked)."""

    def __init__(
        self,
        solc_dir: str | Path | None = None,
        cache_dir: str | Path | None = None,
        offline: bool | None = None,
        releases: Sequence[str] | None = None,
        installer: Installer | None = None,
        npm: str = "npm",
        lock_timeout_s: float = 1800,
    ) -> None:
        self.solc_dir = Path(solc_dir) if solc_dir is not None else _default_solc_dir()
        self.cache_dir = solc_cache_dir(cache_dir)
        self.offline = offline_default() if offline is None else offline
        self.releases = list(releases) if releases is not None else known_releases(self.cache_dir)
        self.npm = npm
        self.installer: Installer = installer or (lambda v, prefix: npm_install(v, prefix, self.npm))
        self.lock_timeout_s = lock_timeout_s
        self.bundled_aliases = read_bundled(self.solc_dir)
        self.installs: list[tuple[str, float]] = []  # (version, seconds) of installs done by this resolver

    # -- where releases are -----------------------------------------------------------------------------
    def bundled_path(self, version: str) -> Path | None:
        """The bundled alias folder of ``version`` (declared in package.json), installed or not."""
        alias = self.bundled_aliases.get(version)
        return self.solc_dir / "node_modules" / alias if alias else None

    def cache_path(self, version: str) -> Path:
        """Where ``version`` lives in the cache: ``<cache>/<version>/node_modules/solc``."""
        return self.cache_dir / version / "node_modules" / "solc"

    def cached(self) -> list[str]:
        """Releases complete in the cache, oldest first."""
        if not self.cache_dir.is_dir():
            return []
        found = [d.name for d in self.cache_dir.iterdir() if re.fullmatch(r"\d+\.\d+\.\d+", d.name)]
        return sorted((v for v in found if _release_ok(self.cache_path(v), v)), key=version_tuple)

    def available(self) -> list[str]:
        """Releases usable without the network (bundled and installed, or cached), oldest first."""
        bundled = [v for v in self.bundled_aliases if (self.bundled_path(v) / "soljson.js").is_file()]  # type: ignore[operator]
        return sorted(set(bundled) | set(self.cached()), key=version_tuple)

    def is_known(self, version: str) -> bool:
        """Whether ``version`` is a release in the known list, bundled or cached."""
        return version in self.releases or version in self.bundled_aliases or version in self.cached()

    def locate(self, version: str) -> ResolvedCompiler | None:
        """``version`` if bundled or cached, else None (a declared but uninstalled alias is a setup error)."""
        bundled = self.bundled_path(version)
        if bundled is not None:
            if not (bundled / "soljson.js").is_file():
                raise SolcNotInstalledError(
                    f"solc-js is not installed in {self.solc_dir / 'node_modules'} (missing: {version}): run "
                    f"`make setup` or point {SOLC_DIR_ENV} at an installed solc-js folder"
                )
            return ResolvedCompiler(version, bundled, "bundled")
        if _release_ok(self.cache_path(version), version):
            return ResolvedCompiler(version, self.cache_path(version), "cache")
        return None

    def install_hint(self, version: str) -> str:
        """The command that puts ``version`` into the cache by hand."""
        return f"npm install --prefix {self.cache_dir / version} --no-audit --no-fund solc@{version}"

    # -- getting one release ------------------------------------------------------------------------------
    def ensure(self, version: str) -> ResolvedCompiler:
        """``version`` bundled, cached, or installed now (SolcNotInstalledError offline or when npm fails)."""
        found = self.locate(version)
        if found is not None:
            return found
        if not self.is_known(version):
            raise SolcVersionError(f"unknown solc release {version}; {self.describe_known()}")
        if self.offline:
            raise SolcNotInstalledError(
                f"solc {version} is not installed and installs are off (offline): "
                f"run `{self.install_hint(version)}` or run once online (unset {SOLC_OFFLINE_ENV})"
            )
        return self.install(version)

    def install(self, version: str) -> ResolvedCompiler:
        """Install ``version`` into the cache: one install per release across threads and processes."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.cache_dir / f"{version}.lock"
        try:
            with _thread_lock(str(lock_path)), FileLock(str(lock_path), timeout=self.lock_timeout_s):
                if _release_ok(self.cache_path(version), version):  # another process finished it meanwhile
                    return ResolvedCompiler(version, self.cache_path(version), "cache")
                return self._install_locked(version)
        except Timeout:
            raise SolcNotInstalledError(
                f"waited {self.lock_timeout_s:.0f} s for another install of solc {version} ({lock_path})"
            ) from None

    def _install_locked(self, version: str) -> ResolvedCompiler:
        start = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f".{version}.partial-", dir=self.cache_dir))
        try:
            log.info("Installing solc %s into %s", version, self.cache_dir)
            self.installer(version, tmp)
            if not _release_ok(tmp / "node_modules" / "solc", version):
                raise SolcNotInstalledError(
                    f"installing solc {version} left no solc-js {version} package in {tmp}/node_modules/solc"
                )
            tmp.chmod(0o755)  # mkdtemp makes it private; a shared cache is read by every user
            final = self.cache_dir / version
            if final.exists():  # an incomplete leftover (complete ones returned before the install)
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        seconds = time.perf_counter() - start
        self.installs.append((version, seconds))
        log.info("Installed solc %s in %.1f s", version, seconds)
        return ResolvedCompiler(version, self.cache_path(version), "installed")

    # -- from a pragma ------------------------------------------------------------------------------------
    def describe_known(self) -> str:
        """One phrase naming the known range and the offline releases."""
        span = f"{self.releases[0]}–{self.releases[-1]}" if self.releases else "none"
        return f"known releases {span}; available offline: {', '.join(self.available()) or 'none'}"

    def pick(self, constraints: Sequence[str], solc: str | None = None) -> str:
        """The release to use: ``solc`` when given, else the newest known one satisfying every constraint."""
        if solc:
            if not self.is_known(solc):
                raise SolcVersionError(f"unknown solc release {solc} (solc={solc}); {self.describe_known()}")
            if constraints and not all(satisfies(solc, c) for c in constraints):
                log.warning("solc=%s overrides pragma solidity %s", solc, " ".join(constraints))
            return solc
        if not constraints:
            raise SolcVersionError("no `pragma solidity` in source: pass solc=VERSION to choose a compiler")
        best = newest_satisfying(constraints, sorted({*self.releases, *self.available()}, key=version_tuple))
        if best is None:
            raise SolcVersionError(
                f"no solc release satisfies pragma solidity {' '.join(constraints)}; {self.describe_known()}"
            )
        return best

    def resolve_constraints(self, constraints: Sequence[str], solc: str | None = None) -> ResolvedCompiler:
        """The newest release for ``constraints`` (or ``solc``): found, installed, or the offline fallback."""
        constraints = list(constraints)
        target = self.pick(constraints, solc)
        found = self.locate(target)
        if found is not None:
            return found
        reason = "installs are off (offline)"
        if not self.offline:
            try:
                return self.install(target)
            except (SolcNotInstalledError, OSError, subprocess.SubprocessError) as e:
                reason = str(e)
        fallback = None if solc else newest_satisfying(constraints, self.available())
        if fallback is not None:
            log.warning(
                "solc %s unavailable (%s); using %s, the newest installed match", target, reason, fallback
            )
            found = self.locate(fallback)
            assert found is not None
            return found
        wanted = f"solc={solc}" if solc else f"pragma solidity {' '.join(constraints)}"
        raise SolcNotInstalledError(
            f"solc {target} (for {wanted}) is not installed and {reason}: run `{self.install_hint(target)}` "
            "or run once online"
        )

    def resolve(self, source: str, solc: str | None = None) -> ResolvedCompiler:
        """The compiler for a Solidity source (its ``pragma solidity`` directives), or ``solc`` when given."""
        return self.resolve_constraints(solidity_pragmas(source), solc)


def resolve_compiler(
    source: str, solc: str | None = None, offline: bool | None = None, cache_dir: str | Path | None = None
) -> ResolvedCompiler:
    """One-shot ``SolcResolver(...).resolve(source, solc)``."""
    return SolcResolver(cache_dir=cache_dir, offline=offline).resolve(source, solc)

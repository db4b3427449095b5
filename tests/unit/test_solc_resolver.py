"""The solc release resolver: pragma → newest release, bundled/cache/install, lock, offline, override.

No network: a fake ``npm`` (a script) "installs" a release by linking the files of the bundled 0.4.26 package
into ``<prefix>/node_modules/solc`` and writing the requested version into its package.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from training_pipeline.corpus.solc import (
    SOLC_DIR,
    CompileJob,
    SolcNotInstalledError,
    SolcPool,
    SolcResolver,
    SolcVersionError,
    job_for_source,
    known_releases,
    refresh_releases,
)
from training_pipeline.corpus.solc_resolver import RELEASES_FILE, version_tuple

BUNDLED_0426 = SOLC_DIR / "node_modules" / "solc-0426"

FAKE_NPM = textwrap.dedent(
    """\
    import json, os, sys, time
    from pathlib import Path
    args = sys.argv[1:]
    with open(os.environ["FAKE_NPM_LOG"], "a") as f:
        f.write(json.dumps(args) + "\\n")
    if args[:1] == ["view"]:
        print(json.dumps(["0.3.6", "0.4.11", "0.4.26", "0.8.7-fixed", "0.8.7", "0.8.99", "0.9.0"]))
        sys.exit(0)
    prefix, version = Path(args[args.index("--prefix") + 1]), args[-1].split("@", 1)[1]
    time.sleep(float(os.environ.get("FAKE_NPM_SLEEP", "0")))
    src = Path(os.environ["FAKE_NPM_FROM"])
    pkg = prefix / "node_modules" / "solc"
    pkg.mkdir(parents=True)
    for entry in src.iterdir():
        if entry.name != "package.json":
            (pkg / entry.name).symlink_to(entry)
    if os.environ.get("FAKE_NPM_FAIL"):
        sys.exit("npm ERR! network unreachable")
    meta = json.loads((src / "package.json").read_text())
    meta["version"] = version
    (pkg / "package.json").write_text(json.dumps(meta))
    """
)


@pytest.fixture
def npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake npm script; its calls are logged one JSON line each in ``npm.log``."""
    script = tmp_path / "npm"
    script.write_text(f"#!{sys.executable}\n{FAKE_NPM}")
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_NPM_LOG", str(tmp_path / "npm.log"))
    monkeypatch.setenv("FAKE_NPM_FROM", str(BUNDLED_0426))
    monkeypatch.setenv("TRAINING_PIPELINE_SOLC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAINING_PIPELINE_SOLC_OFFLINE", raising=False)
    return script


def npm_calls(npm: Path) -> list[list[str]]:
    log = npm.parent / "npm.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def resolver(npm: Path, **kwargs) -> SolcResolver:
    return SolcResolver(SOLC_DIR, cache_dir=npm.parent / "cache", npm=str(npm), **kwargs)


def test_shipped_release_list() -> None:
    releases = json.loads(RELEASES_FILE.read_text())
    assert releases == sorted(releases, key=version_tuple) and releases[0] == "0.4.11"
    assert all(len(version_tuple(v)) == 3 and version_tuple(v) < (0, 9) for v in releases)
    assert {"0.4.24", "0.5.16", "0.4.26", "0.5.17", "0.6.12", "0.7.6", "0.8.26"} <= set(releases)


def test_pragma_picks_newest_release(npm: Path) -> None:
    r = resolver(npm)
    newest = {m: max((v for v in r.releases if v.startswith(m)), key=version_tuple) for m in ("0.4.", "0.5.")}
    assert r.pick(["0.4.24"]) == "0.4.24"
    assert r.pick(["^0.5.0"]) == newest["0.5."]
    assert r.pick([">=0.4.22 <0.6.0"]) == newest["0.5."]
    assert r.pick(["=0.5.16"]) == "0.5.16"
    assert r.pick(["~0.4.24"]) == newest["0.4."]
    assert r.pick([">= 0.4.22", "<0.5.0"]) == newest["0.4."]  # several directives: all hold
    assert r.pick(["^0.8.0"]) == r.releases[-1]
    with pytest.raises(SolcVersionError, match="no solc release satisfies"):
        r.pick(["^0.9.0"])
    with pytest.raises(SolcVersionError, match="no `pragma solidity`"):
        r.pick([])
    assert npm_calls(npm) == []  # picking never installs


def test_bundled_release_needs_no_install(npm: Path) -> None:
    found = resolver(npm).resolve("pragma solidity ^0.5.0;\ncontract A {}\n")
    assert (found.version, found.origin) == ("0.5.17", "bundled")
    assert found.path == SOLC_DIR / "node_modules" / "solc-0517"
    assert npm_calls(npm) == []


def test_install_on_demand_then_cache_then_compile(npm: Path) -> None:
    cache = npm.parent / "cache"
    r = resolver(npm)
    found = r.resolve("pragma solidity 0.4.24;\ncontract A {}\n")
    assert (found.version, found.origin) == ("0.4.24", "installed")
    assert found.path == cache / "0.4.24" / "node_modules" / "solc"
    (call,) = npm_calls(npm)
    assert call[:2] == ["install", "--prefix"] and call[3:] == ["--no-audit", "--no-fund", "solc@0.4.24"]
    assert Path(call[2]).parent == cache and not Path(call[2]).exists()  # the temp dir was renamed away
    assert sorted(p.name for p in cache.iterdir()) == ["0.4.24", "0.4.24.lock"]
    again = resolver(npm).resolve("pragma solidity 0.4.24;\ncontract A {}\n")
    assert again.origin == "cache" and len(npm_calls(npm)) == 1
    assert "0.4.24" in r.available() and r.installs and r.installs[0][0] == "0.4.24"

    # The worker loads the cached package from its folder (the fake's compiler is 0.4.26: pragma ^0.4.24).
    src = (
        "pragma solidity ^0.4.24;\n"
        "contract V { function v() public pure returns (uint) { return 0xA1B2C3D4; } }\n"
    )
    with SolcPool(n_workers=1, cache_dir=False, resolver=resolver(npm)) as pool:
        cached, bundled = pool.compile([CompileJob(src, "0.4.24"), CompileJob(src, "0.4.26")])
    assert cached.ok and "63a1b2c3d4" in cached.bytecode and cached.bytecode == bundled.bytecode


def test_concurrent_threads_install_once(npm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NPM_SLEEP", "0.5")
    found: list[str] = []
    threads = [
        threading.Thread(target=lambda: found.append(resolver(npm).ensure("0.5.16").origin)) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(found) == ["cache", "cache", "cache", "installed"]
    assert len(npm_calls(npm)) == 1


def test_concurrent_processes_install_once(npm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NPM_SLEEP", "1")
    code = (
        "import sys; from training_pipeline.corpus.solc_resolver import SolcResolver as R; "
        f"print(R({str(SOLC_DIR)!r}, cache_dir=sys.argv[1], npm=sys.argv[2]).ensure('0.5.16').origin)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(npm.parent / "cache"), str(npm)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    origins = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert origins == ["cache", "installed"] and len(npm_calls(npm)) == 1


def test_failed_install_leaves_nothing_and_falls_back(npm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NPM_FAIL", "1")
    cache = npm.parent / "cache"
    (cache / "0.5.16" / "node_modules" / "solc").mkdir(parents=True)  # a half-finished install by hand
    r = resolver(npm)
    assert r.locate("0.5.16") is None  # never used
    with pytest.raises(SolcNotInstalledError) as info:
        r.resolve("pragma solidity =0.5.16;\ncontract A {}\n")
    msg = str(info.value)
    assert "\n" not in msg and "solc 0.5.16" in msg and "network unreachable" in msg
    assert f"npm install --prefix {cache / '0.5.16'} --no-audit --no-fund solc@0.5.16" in msg
    assert sorted(p.name for p in cache.iterdir()) == ["0.5.16", "0.5.16.lock"]  # no temp dir left
    assert not (cache / "0.5.16" / "node_modules" / "solc" / "package.json").exists()
    # When npm fails, the newest offline release satisfying the pragma is used.
    r = resolver(npm, releases=[*r.releases, "0.5.99"])
    found = r.resolve("pragma solidity ^0.5.0;\ncontract A {}\n")
    assert (found.version, found.origin) == ("0.5.17", "bundled")
    monkeypatch.delenv("FAKE_NPM_FAIL")
    assert resolver(npm).ensure("0.5.16").origin == "installed"  # the broken leftover is replaced


def test_offline(npm: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINING_PIPELINE_SOLC_OFFLINE", "1")
    r = resolver(npm)
    assert r.offline
    with pytest.raises(SolcNotInstalledError) as info:
        r.resolve("pragma solidity 0.4.24;\ncontract A {}\n")
    msg = str(info.value)
    assert "\n" not in msg and "solc 0.4.24" in msg and "offline" in msg and "npm install --prefix" in msg
    newest = r.resolve("pragma solidity ^0.8.0;\ncontract A {}\n")  # newest 0.8 is not here: newest bundled
    assert (newest.version, newest.origin) == ("0.8.26", "bundled")
    with pytest.raises(SolcNotInstalledError, match="offline"):
        with SolcPool(n_workers=1, cache_dir=False, resolver=r) as pool:
            pool.compile([CompileJob("pragma solidity 0.4.24; contract A {}", "0.4.24")])
    assert npm_calls(npm) == []


def test_override(npm: Path) -> None:
    r = resolver(npm)
    found = r.resolve("pragma solidity ^0.5.0;\ncontract A {}\n", solc="0.5.16")
    assert (found.version, found.origin) == ("0.5.16", "installed")
    assert r.resolve("contract NoPragma {}", solc="0.8.26").origin == "bundled"
    job = job_for_source(
        "pragma solidity ^0.5.0; contract A {}", "A", solc="0.5.16", resolver=r, optimize=True
    )
    assert (job.version, job.contract, job.optimize) == ("0.5.16", "A", True)
    with pytest.raises(SolcVersionError, match="unknown solc release 0.9.1"):
        r.resolve("pragma solidity ^0.5.0;", solc="0.9.1")


def test_refresh_releases_writes_the_cache_list(npm: Path) -> None:
    cache = npm.parent / "cache"
    assert refresh_releases(cache, npm=str(npm)) == ["0.4.11", "0.4.26", "0.8.7", "0.8.99"]
    assert known_releases(cache)[-1] == "0.8.99" and resolver(npm).pick(["^0.8.0"]) == "0.8.99"
    assert known_releases(npm.parent / "elsewhere") == json.loads(RELEASES_FILE.read_text())

"""The solc-js compile bridge: runtime bytecode, job order across workers, errors, cache, contract choice."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest

from training_pipeline.corpus.solc import (
    COMPILER_SETTINGS_VERSION,
    SOLC_DIR,
    SUPPORTED_VERSIONS,
    CompileError,
    CompileJob,
    SolcNotInstalledError,
    SolcPool,
    _Worker,
    cache_key,
)

PUSH0 = 0x5F


def opcodes(bytecode: str) -> list[int]:
    """Opcodes of 0x-hex bytecode, PUSH data skipped and the CBOR metadata trailer cut off."""
    code = bytes.fromhex(bytecode[2:])
    code = code[: -(int.from_bytes(code[-2:], "big") + 2)]
    ops, i = [], 0
    while i < len(code):
        ops.append(code[i])
        i += 1 + (code[i] - 0x5F if 0x60 <= code[i] <= 0x7F else 0)
    return ops


def value_contract(name: str, version: str, value: int) -> str:
    major = ".".join(version.split(".")[:2])
    return (
        f"pragma solidity ^{major}.0;\n"
        f"contract {name} {{\n"
        f"    function value() public pure returns (uint256) {{ return {value:#x}; }}\n"
        "}\n"
    )


@pytest.fixture(scope="module")
def pool():
    with SolcPool(n_workers=2, cache_dir=False) as p:
        yield p


def test_supported_versions_come_from_package_json() -> None:
    assert SUPPORTED_VERSIONS == {
        "0.4.26": "solc-0426",
        "0.5.17": "solc-0517",
        "0.6.12": "solc-0612",
        "0.7.6": "solc-0706",
        "0.8.26": "solc-0826",
    }


def test_0826_runtime_bytecode_uses_push0_and_drops_constructor(pool: SolcPool) -> None:
    src = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.0;
contract Box {
    uint256 x;
    constructor() { x = 0xC0FFEE01; }
    function get() public view returns (uint256) { return x + 0xBEEF0102; }
}
"""
    default, paris = pool.compile([CompileJob(src, "0.8.26"), CompileJob(src, "0.8.26", evm_version="paris")])
    assert default.ok and default.contract == "Box" and default.error is None
    assert default.bytecode.startswith("0x6080")
    assert "63beef0102" in default.bytecode  # PUSH4 of the function's constant: runtime code
    assert "c0ffee01" not in default.bytecode  # the constructor's constant stays in the creation code
    assert PUSH0 in opcodes(default.bytecode)  # 0.8.26 targets cancun by default
    assert paris.ok and PUSH0 not in opcodes(paris.bytecode)  # paris predates PUSH0 (shanghai)


def test_0426_old_style_constructor(pool: SolcPool) -> None:
    src = """pragma solidity ^0.4.24;
contract Foo {
    uint x;
    function Foo() public { x = 0xC0FFEE01; }
    function get() public view returns (uint) { return x; }
}
"""
    (res,) = pool.compile([CompileJob(src, "0.4.26")])
    assert res.ok, res.error
    assert res.contract == "Foo"
    assert res.bytecode.startswith("0x6080")
    assert "c0ffee01" not in res.bytecode
    assert PUSH0 not in opcodes(res.bytecode)


def test_results_in_job_order_across_workers_and_versions(pool: SolcPool) -> None:
    versions = sorted(SUPPORTED_VERSIONS)
    jobs = [
        CompileJob(
            value_contract(f"V{i}", versions[i % len(versions)], 0xA1B2C300 + i), versions[i % len(versions)]
        )
        for i in range(12)
    ]
    seen: list[tuple[int, int]] = []
    before = dict(pool.stats)
    results = pool.compile(jobs, progress=lambda done, total: seen.append((done, total)))
    assert [r.contract for r in results] == [f"V{i}" for i in range(12)]
    for i, r in enumerate(results):
        assert r.ok, r.error
        assert f"63a1b2c3{i:02x}" in r.bytecode  # PUSH4 0xa1b2c3<i>
    assert len(pool._workers) == 2
    assert pool.stats["compiled"] - before["compiled"] == 12
    assert seen[-1] == (12, 12) and [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_syntax_error_fails_alone(pool: SolcPool) -> None:
    bad = "pragma solidity ^0.8.0;\ncontract C {\n    function f() public {\n        uint x = ;\n    }\n}\n"
    jobs = [
        CompileJob(value_contract("Ok", "0.8.26", 7), "0.8.26"),
        CompileJob(bad, "0.8.26"),
        CompileJob(value_contract("Ok6", "0.6.12", 7), "0.6.12"),
    ]
    failed_before = pool.stats["failed"]
    results = pool.compile(jobs)
    assert [r.ok for r in results] == [True, False, True]
    err = results[1].error
    assert "ParserError" in err and "line 4" in err and "\n" not in err
    assert results[1].bytecode is None
    assert pool.stats["failed"] - failed_before == 1
    # Inside one batch, too, the bad job fails alone and the worker keeps serving.
    worker = _Worker(SOLC_DIR)
    try:
        answer = worker.request(7, [jobs[0], jobs[1], jobs[0]])
        assert answer["id"] == 7
        assert [r["error"] is None for r in answer["results"]] == [True, False, True]
        assert answer["results"][1]["error"] == err
        assert worker.request(8, [jobs[0]])["results"][0]["bytecode"] == results[0].bytecode
    finally:
        worker.proc.stdin.close()
        worker.proc.wait(timeout=10)
    assert worker.proc.returncode == 0 and not worker.stderr_tail


def test_unknown_version_raises_before_any_work() -> None:
    with SolcPool(n_workers=1, cache_dir=False) as p:
        with pytest.raises(CompileError) as info:
            p.compile([CompileJob(value_contract("A", "0.8.26", 1), "0.8.26"), CompileJob("x", "0.9.99")])
        assert p.workers_started == 0
    msg = str(info.value)
    assert "0.9.99" in msg and all(v in msg for v in SUPPORTED_VERSIONS)


def test_cache_hits_start_no_worker(tmp_path) -> None:
    jobs = [CompileJob(value_contract(f"K{i}", "0.8.26", i + 1), "0.8.26") for i in range(5)]
    bad = CompileJob("contract {", "0.8.26")
    with SolcPool(n_workers=2, cache_dir=tmp_path) as first:
        compiled = first.compile([*jobs, bad])
        assert first.stats["compiled"] == 5 and first.stats["failed"] == 1 and first.stats["cache_hits"] == 0
    assert (tmp_path / "solc_cache.sqlite").is_file()
    with SolcPool(n_workers=2, cache_dir=tmp_path) as second:
        cached = second.compile(jobs)
        assert cached == compiled[:5]
        assert second.stats["cache_hits"] == 5 and second.stats["compiled"] == 0
        assert second.workers_started == 0
        (again,) = second.compile([bad])  # failures are not cached: compiled again
        assert not again.ok and second.stats["cache_hits"] == 5 and second.workers_started == 1


def test_contract_choice(pool: SolcPool) -> None:
    src = """pragma solidity ^0.8.0;
contract A { function a() public pure returns (uint) { return 0xAAAA01; } }
contract B is A { function b() public pure returns (uint) { return 0xBBBB01; } }
library L { function l(uint x) public pure returns (uint) { return x + 0xCCCC01; } }
// contract Commented {}
interface I { function i() external returns (uint); }
"""
    default, a, lib, iface, missing = pool.compile(
        [CompileJob(src, "0.8.26", contract=c) for c in (None, "A", "L", "I", "Nope")]
    )
    assert default.ok and default.contract == "B" and "62bbbb01" in default.bytecode
    assert a.ok and a.contract == "A" and "62aaaa01" in a.bytecode and "62bbbb01" not in a.bytecode
    assert lib.ok and lib.contract == "L" and lib.bytecode.startswith("0x73")  # library call guard
    assert not iface.ok and "no deployed bytecode" in iface.error
    assert not missing.ok and "Nope" in missing.error and "A, B" in missing.error


def test_crashed_worker_is_reported_and_replaced() -> None:
    job = CompileJob(value_contract("Z", "0.8.26", 1), "0.8.26")
    with SolcPool(n_workers=1, cache_dir=False) as p:
        assert p.compile([job])[0].ok
        p._workers[0].proc.kill()
        with pytest.raises(CompileError, match="exited with code"):
            p.compile([job])
        assert p._procs == [] and p._workers == []
        assert p.compile([job])[0].ok  # a fresh worker takes over
        assert p.workers_started == 2


def test_hung_worker_times_out() -> None:
    with SolcPool(n_workers=1, cache_dir=False, timeout_s=0.05) as p:
        with pytest.raises(CompileError, match="did not answer"):
            p.compile([CompileJob(value_contract("T", "0.5.17", 1), "0.5.17")])
        assert p._procs == []


def test_missing_node_modules_is_a_clear_error(tmp_path, monkeypatch) -> None:
    shutil.copy(SOLC_DIR / "package.json", tmp_path / "package.json")
    monkeypatch.setitem(os.environ, "TRAINING_PIPELINE_SOLC_DIR", str(tmp_path))
    with SolcPool(n_workers=1, cache_dir=False) as p:
        with pytest.raises(SolcNotInstalledError, match="make setup"):
            p.compile([CompileJob("contract A {}", "0.8.26")])


def test_optimizer_settings_and_cache_key(pool: SolcPool) -> None:
    src = """pragma solidity ^0.5.0;
contract Opt {
    uint256 a;
    function f(uint256 x) public returns (uint256) { a = x * 2 + 0xA1B2C3D4; return a + x * 2 + 0xA1B2C3D4; }
}
"""
    plain, runs_ignored, o200, o1000 = pool.compile(
        [
            CompileJob(src, "0.5.17"),
            CompileJob(src, "0.5.17", runs=1000),  # runs without the optimizer change nothing
            CompileJob(src, "0.5.17", optimize=True),
            CompileJob(src, "0.5.17", optimize=True, runs=1000),
        ]
    )
    assert plain.ok and o200.ok and o1000.ok
    assert runs_ignored.bytecode == plain.bytecode
    assert o200.bytecode != plain.bytecode and len(o200.bytecode) < len(plain.bytecode)
    default = CompileJob(src, "0.5.17")
    assert cache_key(CompileJob(src, "0.5.17", runs=1000)) == cache_key(default)
    keys = {
        cache_key(j)
        for j in (
            default,
            CompileJob(src, "0.5.17", optimize=True),
            CompileJob(src, "0.5.17", optimize=True, runs=1000),
            CompileJob(src, "0.5.17", evm_version="byzantium"),
        )
    }
    assert len(keys) == 4


def test_unoptimized_cache_key_is_unchanged() -> None:
    """Jobs without the optimizer keep the keys of earlier versions: existing compile caches stay valid."""
    src = "contract C {}"
    payload = json.dumps([COMPILER_SETTINGS_VERSION, "0.5.17", None, "C", src], ensure_ascii=False)
    assert cache_key(CompileJob(src, "0.5.17", "C")) == hashlib.sha256(payload.encode()).hexdigest()

"""Bare solc-js throughput through SolcPool (cache off): how fast the corpus can turn source into bytecode."""

from __future__ import annotations

import time

from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.taxonomy import COMPILER_VERSIONS


def synth_contract(index: int, version: str, n_functions: int = 19) -> str:
    """A ~200-line token-like contract valid for every supported era, with per-index names and constants."""
    major = ".".join(version.split(".")[:2])
    ctor = "constructor() public" if major in ("0.4", "0.5", "0.6") else "constructor()"
    lines = [
        f"pragma solidity ^{major}.0;",
        "",
        f"contract Bench{index} {{",
        "    address public owner;",
        "    uint256 public total;",
        "    mapping(address => uint256) public balances;",
        "    event Updated(address indexed who, uint256 value);",
        "",
        "    modifier onlyOwner() {",
        '        require(msg.sender == owner, "not owner");',
        "        _;",
        "    }",
        "",
        f"    {ctor} {{",
        "        owner = msg.sender;",
        "    }",
    ]
    for f in range(n_functions):
        k = index * 1000 + f + 1
        guard = " onlyOwner" if f % 3 == 0 else ""
        lines += [
            "",
            f"    function step{f}(uint256 a, uint256 b) public{guard} returns (uint256) {{",
            f"        uint256 c = a * {k} + b;",
            "        if (c > total) {",
            "            total = c;",
            "        }",
            f"        balances[msg.sender] += c % {f + 7};",
            "        emit Updated(msg.sender, c);",
            "        return c;",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _jobs(n: int, offset: int) -> list[CompileJob]:
    versions = list(COMPILER_VERSIONS.values())
    return [
        CompileJob(synth_contract(offset + i, versions[i % len(versions)]), versions[i % len(versions)])
        for i in range(n)
    ]


def run(quick: bool = False) -> dict:
    """Compile N synthetic contracts of every era on 2 workers; report the warm pass (after a cold one)."""
    n = 20 if quick else 100
    cold_jobs, warm_jobs = _jobs(n, 0), _jobs(n, n)
    with SolcPool(n_workers=2, cache_dir=False) as pool:
        t0 = time.perf_counter()
        cold = pool.compile(cold_jobs)  # node start, compiler loads and V8 warm-up
        cold_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = pool.compile(warm_jobs)
        warm_s = time.perf_counter() - t0
    failed = [r.error for r in cold + warm if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark contracts failed to compile, first: {failed[0]}")
    return {
        "compile": {
            "contracts": n,
            "seconds": round(warm_s, 3),
            "contracts_per_s": round(n / warm_s, 2),
            "mean_lines": round(sum(j.source.count("\n") for j in warm_jobs) / n, 1),
            "cold_seconds": round(cold_s, 3),
            "cold_contracts_per_s": round(n / cold_s, 2),
            "versions": sorted({j.version for j in warm_jobs}),
            "workers": 2,
        }
    }


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))

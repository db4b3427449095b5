"""Serving: the scan service under a bounded load on loopback, side by side with the same scans in-process.

The service runs as its own process (``python -m training_pipeline.serve``, as deployed: auth and the
inference log on) on 127.0.0.1 with a model package; a fixed number of ``POST /v1/scan`` requests come from
a few concurrent clients. The same inputs are then scanned in this process with ``Scanner.scan``, one at a
time, so the difference is what HTTP, JSON, auth, the inference log and the worker threads cost.

The package: ``BENCH_SERVE_MODEL`` (a package path or registry ref) if set, else a bytecode detector of the
default size (conf/model/bytecode_detector.yaml) with untrained weights: latency depends on the network's
size, not on its weights, and a fresh clone has no trained model. A source scan compiles the contract with
solc-js (the source view then needs the code analyzer; with the default package only the compiled bytecode
is scored), so it measures the compiler as much as the model.

Targets (issue): p99 <= 300 ms for a bytecode-only scan and >= 20 bytecode scans/s on the 2-core machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from training_pipeline import taxonomy
from training_pipeline.config import compose_task
from training_pipeline.corpus.generator import generate_corpus
from training_pipeline.data.evm import EvmTokenizer
from training_pipeline.deploy.package import assemble
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.scan.inputs import ScanInput, compile_source, read_texts
from training_pipeline.scan.scanner import Scanner

CLIENTS = 4
TARGET_P99_MS = 300.0
TARGET_RPS = 20.0
BENCH_KEY = "bench-key"


def default_package(out_dir: Path) -> Path:
    """A package of a default-size bytecode detector with untrained weights (seed 0)."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_task("train.yaml", ["model=bytecode_detector"], Path(tmp))
    sizes = {
        k: v
        for k, v in OmegaConf.to_container(cfg.model, resolve=True).items()
        if k not in ("_target_", "optimizer", "scheduler", "encoder_ckpt")
    }
    tok = EvmTokenizer()
    import torch

    torch.manual_seed(0)
    model = BytecodeDetector(
        tok.vocab_size,
        list(taxonomy.VULNERABILITY_CLASSES),
        list(taxonomy.FAMILIES),
        tokenizer_state=tok.state_dict(),
        **sizes,
    ).eval()
    meta = {"name": "scathat-bytecode_detector", "kind": "model", "model": "bytecode_detector"}
    data = OmegaConf.to_container(cfg.data, resolve=True)
    return assemble(meta, {"model": (model, data)}, out_dir, archive=False).path


def contracts(n: int) -> list[dict[str, str]]:
    """``n`` distinct generated 0.8.26 contracts: source and its compiled runtime bytecode."""
    generated = generate_corpus(n, seed=0, compiler_versions=["0.8.26"])
    out = []
    for k, contract in enumerate(generated):
        bytecode, _ = compile_source(contract.source_code, f"bench{k}", "0.8.26")
        out.append({"name": f"bench{k}", "source": contract.source_code, "bytecode": bytecode})
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return {"p50_ms": round(q[49], 1), "p95_ms": round(q[94], 1), "p99_ms": round(q[98], 1)}


def start_service(model: str, log_dir: Path) -> tuple[subprocess.Popen, str]:
    """The service on a free loopback port; returns (process, base URL) once /readyz answers 200."""
    import httpx  # the `serve` extra, like the service itself

    port = _free_port()
    env = {**os.environ, "SCATHAT_API_KEYS": f"bench:{BENCH_KEY}:scan"}
    cmd = [
        sys.executable,
        "-m",
        "training_pipeline.serve",
        f"champion={model}",
        f"port={port}",
        "log_level=warning",
        f"inference_log.path={log_dir / 'inference.jsonl'}",
    ]
    # its working directory is the (empty) log dir: the compile cache (data/solc_cache, relative) starts cold
    proc = subprocess.Popen(
        cmd, env=env, cwd=log_dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited: {proc.stderr.read().strip()[-500:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("the service did not become ready in 120 s")


def load_run(url: str, bodies: list[dict[str, Any]], clients: int = CLIENTS) -> dict[str, Any]:
    """POST every body once, ``clients`` at a time; throughput and latency percentiles."""
    import httpx

    headers = {"Authorization": f"Bearer {BENCH_KEY}"}

    def one(client: Any, body: dict[str, Any]) -> float:
        start = time.perf_counter()
        response = client.post(f"{url}/v1/scan", json=body, headers=headers, timeout=120)
        if response.status_code != 200:
            raise RuntimeError(f"/v1/scan answered {response.status_code}: {response.text[:200]}")
        return (time.perf_counter() - start) * 1000

    with httpx.Client() as warm:  # first request: lazy imports and allocator warm-up, not measured
        one(warm, bodies[0])
    with httpx.Client(limits=httpx.Limits(max_connections=clients)) as client:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            latencies = list(pool.map(lambda b: one(client, b), bodies))
        seconds = time.perf_counter() - start
    rate = round(len(bodies) / seconds, 1)
    return {"requests": len(bodies), "clients": clients, "per_s": rate} | percentiles(latencies)


def in_process(scanner: Scanner, items: list[Any], read: Any = None) -> dict[str, Any]:
    """The same scans in this process, one at a time, as ``predict.py`` does per contract: ``read`` turns an
    item into its ScanInput inside the timing (a source is compiled there, as the service compiles it)."""
    read = read or (lambda item: item)
    scanner.scan([read(items[0])])
    latencies = []
    start = time.perf_counter()
    for item in items:
        t = time.perf_counter()
        scanner.scan([read(item)])
        latencies.append((time.perf_counter() - t) * 1000)
    seconds = time.perf_counter() - start
    rate = round(len(items) / seconds, 1)
    return {"requests": len(items), "clients": 1, "per_s": rate} | percentiles(latencies)


def run(
    quick: bool = False,
    n_bytecode: int | None = None,
    n_source: int | None = None,
    n_contracts: int | None = None,
) -> dict:
    """Bytecode-only and source scans through the service (a few clients) and in-process."""
    n_bytecode = n_bytecode or (40 if quick else 300)
    n_source = n_source or (6 if quick else 30)
    data = contracts(n_contracts or max(n_source, 12 if quick else 40))  # bytecode requests cycle through
    with tempfile.TemporaryDirectory() as tmp:
        model = os.environ.get("BENCH_SERVE_MODEL") or str(default_package(Path(tmp) / "packages"))
        bytecode_bodies = [
            {"bytecode": data[i % len(data)]["bytecode"], "name": f"b{i}"} for i in range(n_bytecode)
        ]
        source_bodies = [{"source": d["source"], "name": d["name"]} for d in data[:n_source]]
        proc, url = start_service(model, Path(tmp))
        try:
            served_bytecode = load_run(url, bytecode_bodies)
            served_source = load_run(url, source_bodies, clients=2)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
        scanner = Scanner.from_model(model)
        byte_items = [ScanInput(b["name"], bytecode=b["bytecode"]) for b in bytecode_bodies]
        local_bytecode = in_process(scanner, byte_items)
        cold = Path(tmp) / "in_process"
        cold.mkdir()
        with contextlib.chdir(cold):  # an empty compile cache here too: each source compiled as new
            local_source = in_process(
                scanner,
                source_bodies,
                lambda body: read_texts(source=body["source"], name=body["name"], workdir=cold),
            )
    described = os.environ.get("BENCH_SERVE_MODEL") or "default-size bytecode detector, untrained weights"
    return {
        "serving": {
            "model": described,
            "bytecode": {"service": served_bytecode, "in_process": local_bytecode},
            "source": {
                "service": served_source,
                "in_process": local_source,
                "note": "each source compiled with an empty compile cache, on both sides",
            },
            "service_over_in_process_p50": round(
                served_bytecode["p50_ms"] / max(local_bytecode["p50_ms"], 1e-6), 2
            ),
            "targets": {
                "bytecode_p99_ms": TARGET_P99_MS,
                "bytecode_per_s": TARGET_RPS,
                "met": served_bytecode["p99_ms"] <= TARGET_P99_MS and served_bytecode["per_s"] >= TARGET_RPS,
            },
        }
    }


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))

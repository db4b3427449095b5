"""Benchmarks in quick mode: they must run and produce sane numbers (speed is reported, never asserted)."""

from __future__ import annotations

import pytest
from conftest import TINY_CORPUS

from training_pipeline.benchmarks import corpus, dropout, eval_batches, serving, tokenizer, training


def test_tokenizer_benchmark_compares_with_pyevmasm() -> None:
    out = tokenizer.run(quick=True)["tokenizer"]
    assert out["same_instructions_as_pyevmasm"] is True
    assert out["pyevmasm_ms_per_10kb"] > 0 and out["ours_ms_per_10kb"] > 0
    ratio = out["pyevmasm_ms_per_10kb"] / out["ours_ms_per_10kb"]
    assert out["speedup_vs_pyevmasm"] == pytest.approx(ratio, rel=0.02)


def test_corpus_build_benchmark(tmp_path) -> None:
    out = corpus.run(quick=True, n_contracts=20)["corpus_build"]
    assert out["contracts"] == 20 and out["contracts_per_s"] > 0
    assert out["cached_reuse_seconds"] < out["seconds"]  # the second build is a cache hit


def test_training_benchmark_runs_both_loops(data_dir) -> None:
    out = training.run(
        quick=True,
        data_dir=str(data_dir),
        n_contracts=TINY_CORPUS,
        overrides=("model.channels=16", "model.embed_dim=16", "model.depth=2", "data.batch_size=8"),
    )["training"]
    assert out["plain_pytorch_samples_per_s"] > 0 and out["lightning_samples_per_s"] > 0
    assert out["samples_per_epoch"] > 0 and out["timed_epochs_each"] == 4  # 2 rounds x (3 epochs - 1 warm-up)


def test_dropout_benchmark_times_both_dropouts_alike() -> None:
    drop = dropout.run(quick=True)["dropout"]  # both on the same activations and the same CNN step
    assert drop["shape"] == [16, 96, 256]
    ratio = drop["nn_dropout_fwd_bwd_ms"] / drop["mask_dropout_fwd_bwd_ms"]  # of the rounded times
    assert drop["dropout_speedup"] == pytest.approx(ratio, rel=0.02)
    assert all(drop[f"{n}_cnn_step_ms"] > 0 for n in ("nn_dropout", "mask_dropout"))
    cost = drop["masked_norm_fwd_bwd_ms"] / drop["group_norm_fwd_bwd_ms"]  # the padding-masked norm beside it
    assert drop["masked_norm_cost"] == pytest.approx(cost, rel=0.02)


def test_serving_benchmark_measures_the_service_beside_in_process_scans() -> None:
    out = serving.run(quick=True, n_bytecode=8, n_source=2, n_contracts=4)["serving"]
    for view, n in (("bytecode", 8), ("source", 2)):
        for where in ("service", "in_process"):
            row = out[view][where]
            assert row["requests"] == n and row["per_s"] > 0
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert out["targets"]["met"] == (
        out["bytecode"]["service"]["p99_ms"] <= 300 and out["bytecode"]["service"]["per_s"] >= 20
    )


def test_scan_benchmark_reads_a_folder_cold_then_from_the_compile_cache(tmp_path) -> None:
    from training_pipeline.benchmarks import scan

    head = "// SPDX-License-Identifier: MIT\npragma solidity 0.8.26;\n"
    files = {
        "Base.sol": head + "abstract contract Base { uint256 public total;\n"
        "  function _add(uint256 x) internal { total += x; } }\n",
        "Token.sol": head + 'import "./Base.sol";\ncontract Token is Base {\n'
        "  function add(uint256 x) external { _add(x); } }\n",
        "Vault.sol": head + "contract Vault { mapping(address => uint256) public balance;\n"
        "  function deposit() external payable { balance[msg.sender] += msg.value; } }\n",
    }
    for name, text in files.items():
        (tmp_path / "contracts" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "contracts" / name).write_text(text)
    out = scan.run(quick=True, folder=tmp_path / "contracts", slither=False)["scan"]
    cold, warm, byte = out["source_cold"], out["source_warm"], out["bytecode"]
    assert cold["files"] == warm["files"] == 3 and cold["contracts"] == warm["contracts"] == 2
    assert cold["compiled_files"] == 2 and warm["compiled_files"] == 0  # the warm pass is all cache hits
    assert cold["errors"] == warm["errors"] == 0 and byte["contracts"] == 2
    for row in (cold, warm, byte):
        assert row["seconds"] >= 0 and row["contracts_per_s"] > 0
    assert out["slither"] is None and out["reason"] and out["ours_over_slither"]["bytecode"] is None


def test_eval_batches_benchmark_scores_alike_with_less_padding() -> None:
    out = eval_batches.run(quick=True)["eval_batches"]
    assert out["max_abs_diff"] < 1e-4  # the same features for every contract in either order
    assert out["sorted_padded_positions"] < out["dataset_order_padded_positions"]
    assert out["sorted_padded_positions"] >= out["opcodes"]  # a batch pads to its longest, never less
    ratio = out["dataset_order_padded_positions"] / out["sorted_padded_positions"]
    assert out["padding_ratio"] == pytest.approx(ratio, rel=0.02)
    assert out["dataset_order_s"] > 0 and out["sorted_s"] > 0

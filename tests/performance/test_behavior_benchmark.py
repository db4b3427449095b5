"""The behavior section of `make bench` in quick mode: it runs and produces sane numbers (never asserted)."""

from __future__ import annotations

from training_pipeline.benchmarks import behavior


def test_behavior_benchmark_measures_every_stage(data_dir) -> None:
    out = behavior.run(
        quick=True,
        data_dir=str(data_dir),
        n_contracts=60,  # the histories the integration tests build
        overrides=("model.hidden=16", "model.d_model=16", "data.batch_size=8", "data.max_length=64"),
    )["behavior"]
    for key in (
        "simulate_histories_per_s",
        "featurize_histories_per_s",
        "train_histories_per_s",
        "train_transactions_per_s",
        "inference_histories_per_s",
    ):
        assert out[key] > 0, key
    assert out["train_batches_per_epoch"] > 0 and out["encoder"] == "gru"

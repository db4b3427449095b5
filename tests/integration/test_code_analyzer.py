"""The code analyzer end to end on a tiny synthetic source-only contract file (no compiler needed):
fast dev run with localization, train → eval from the checkpoint alone, a local pretrained directory loaded
offline, and the masked-LM stage feeding the classifier."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from conftest import compose_config
from hydra.core.global_hydra import GlobalHydra

from training_pipeline.evaluation.predictions import write_model_predictions
from training_pipeline.tasks import evaluate, train

# Each class: a telltale statement (its line is the labelled vulnerable line) and a family.
BUGS = {
    "reentrancy": "require(msg.sender.call.value(amount)());",
    "time_manipulation": "require(now > deadline);",
    "bad_randomness": "uint pick = uint(keccak256(block.timestamp)) % size;",
    "arithmetic": "balances[to] = balances[to] + amount;",
}
FAMILIES = ["vault", "lottery", "auction"]


def synthetic_contract(i: int, rng: random.Random) -> dict:
    labels = [] if i % 3 == 0 else rng.sample(sorted(BUGS), k=1 + (i % 7 == 1))
    body = [f"uint public v{j};" for j in range(rng.randint(2, 4))]
    vulnerable: dict[str, list[int]] = {}
    functions = list(labels) + [None] * rng.randint(3, 6)
    rng.shuffle(functions)
    lines = [
        "pragma solidity ^0.4.24;",
        f"// {' '.join(labels) or 'safe'} contract",
        f"contract C{i} {{",
        *body,
    ]
    for k, bug in enumerate(functions):
        lines += [f"function f{k}(uint amount, uint deadline, uint size, address to) public {{"]
        lines += [f"v{rng.randint(0, 1)} = amount * {rng.randint(2, 9)};", "emit Done(msg.sender);"]
        if bug:
            lines.append(BUGS[bug])
            vulnerable[bug] = [len(lines)]
        lines += ["}"]
    lines.append("}")
    return {
        "id": f"syn-{i}",
        "source_code": "\n".join(lines) + "\n",
        "bytecode": None,
        "labels": labels,
        "vulnerable_lines": vulnerable or None,
        "family": FAMILIES[i % 3],
        "fold": i % 5,
    }


@pytest.fixture(scope="module")
def source_file(tmp_path_factory) -> Path:
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("source") / "contracts.jsonl"
    path.write_text("".join(json.dumps(synthetic_contract(i, rng)) + "\n" for i in range(60)))
    return path


@pytest.fixture(scope="module")
def source_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("source_data")


def tiny(source_file: Path, data_dir: Path, model: str = "code_analyzer") -> list[str]:
    return [
        f"model={model}",
        f"data.path={source_file}",
        f"paths.data_dir={data_dir}",
        "data.tokenizer.vocab_size=400",
        "data.window.size=32",
        "data.window.stride=24",
        "data.window.max_windows=6",
        "data.window.max_batch_windows=48",
        "data.num_proc=1",
        "data.batch_size=8",
        "model.hidden_size=32",
        "model.num_layers=1",
        "model.num_heads=2",
        "model.intermediate_size=64",
        "extras.print_config=false",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
    ]


@pytest.fixture(autouse=True)
def _clear_hydra():
    yield
    GlobalHydra.instance().clear()


def test_fast_dev_run_predicts_one_row_per_contract_and_localizes(
    tmp_path, source_file, source_data_dir
) -> None:
    cfg = compose_config("train.yaml", [*tiny(source_file, source_data_dir), "debug=fdr"], tmp_path / "fdr")
    metrics, objects = train(cfg)
    dm, model = objects["datamodule"], objects["model"]
    assert 0.0 <= metrics["test/f1_macro"] <= 1.0 and "test/auroc" in metrics
    assert 0.0 <= metrics["test/loc_top3"] <= 1.0 and metrics["test/loc_top1"] <= metrics["test/loc_top3"]
    # a contract longer than one window still gets exactly one prediction
    n_windows = dict(zip(dm.splits["test"].index.tolist(), dm.splits["test"].n_windows(), strict=True))
    assert max(n_windows.values()) > 1
    rows = [json.loads(x) for x in (tmp_path / "fdr" / "test_predictions.jsonl").read_text().splitlines()]
    batch_ids = {dm.records[i]["id"] for i in model.test_predictions["index"].tolist()}
    assert len(rows) == len(batch_ids) == len(model.test_predictions["index"])
    assert any(n_windows[i] > 1 for i in model.test_predictions["index"].tolist())
    for row in rows:
        for cls in set(row["predicted"]) | set(row["labels"]):
            top = row["top_lines"][cls]
            assert top and all(1 <= line <= 60 for line, _ in top)
    # without a test epoch, the predictions writer runs trainer.predict (with line ranking) on the test split
    model.test_predictions = {}
    path = write_model_predictions(tmp_path / "predict.jsonl", model.eval(), dm)
    predicted = {r["id"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert len(predicted) == len(dm.splits["test"])
    for row in rows:
        again = predicted[row["id"]]
        assert again["predicted"] == row["predicted"] and again["top_lines"].keys() == row["top_lines"].keys()
        assert again["probs"] == pytest.approx(row["probs"], abs=1e-4)
    assert (tmp_path / "fdr" / "tokenizer" / "tokenizer.json").exists()  # saved with the run
    assert list((source_data_dir / "tokenizers").glob("*/tokenizer.json"))
    assert list((source_data_dir / "tokenized").iterdir())


def test_training_reads_fewer_windows_than_validation_test_and_scans(
    tmp_path, source_file, source_data_dir
) -> None:
    """``data.window.eval_max_windows``: training contracts keep ``max_windows`` windows, val, test and "all"
    contracts (and the scanner's featurizer, from the same data config) up to ``eval_max_windows``."""
    from hydra.utils import instantiate

    from training_pipeline.data.featurizers import SourceFeaturizer

    overrides = [
        *tiny(source_file, source_data_dir),
        "data.window.max_windows=1",
        "data.window.eval_max_windows=5",
    ]
    cfg = compose_config("train.yaml", overrides, tmp_path / "run")
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup()
    assert max(dm.splits["train"].n_windows()) == 1
    for split in ("val", "test", "all"):
        assert 1 < max(dm.splits[split].n_windows()) <= 5, split
    scan = SourceFeaturizer.from_checkpoint_state(cfg.data, dm.tokenizer.state_dict())
    longest = max(range(len(dm.splits["test"])), key=lambda k: dm.splits["test"].n_windows()[k])
    record = dm.records[dm.splits["test"].index[longest]]
    (ids,), (lines,) = scan.tokenize([record["source_code"]])
    assert len(scan.windows(ids, lines)[0]) == dm.splits["test"].n_windows()[longest] > 1
    assert len(scan.windows(ids, lines, train=True)[0]) == 1


def test_train_then_eval_from_the_checkpoint_alone(tmp_path, source_file, source_data_dir) -> None:
    cfg = compose_config(
        "train.yaml",
        [
            *tiny(source_file, source_data_dir),
            "trainer.max_epochs=1",
            "~callbacks.rich_progress_bar",
            "logger=csv",
        ],
        tmp_path / "run",
    )
    metrics, objects = train(cfg)
    best = objects["trainer"].checkpoint_callback.best_model_path
    ckpt = torch.load(best, weights_only=False)
    assert ckpt["tokenizer_json"] and "json" not in ckpt["hyper_parameters"]["tokenizer_state"]
    assert ckpt["hyper_parameters"]["encoder_config"]["num_hidden_layers"] == 1
    for tok_dir in (source_data_dir / "tokenizers").glob("*"):  # eval must not need the tokenizer cache
        if tok_dir.is_dir():
            tok_dir.rename(tok_dir.with_name(tok_dir.name + ".moved"))
    cfg_eval = compose_config(
        "eval.yaml",
        [
            "model=code_analyzer",
            f"data.path={source_file}",
            f"paths.data_dir={source_data_dir}",
            "data.window.size=32",
            "data.window.stride=24",
            "data.window.max_windows=6",
            "data.window.max_batch_windows=48",
            "data.num_proc=1",
            f"ckpt_path={best}",
            "trainer.enable_progress_bar=false",
        ],
        tmp_path / "eval",
    )
    eval_metrics, _ = evaluate(cfg_eval)
    for name in ("test/f1_macro", "test/auroc", "test/loc_top3"):
        assert eval_metrics[name] == pytest.approx(metrics[name], abs=1e-5), name
    assert "top_lines" in (tmp_path / "eval" / "predictions.jsonl").read_text()
    # an exported model carries its tokenizer; the encoder dir reloads offline like any pretrained model
    from transformers import AutoModel, AutoTokenizer

    out = objects["model"].export(tmp_path / "export")
    assert (out / "heads.safetensors").exists() and (out / "code_analyzer.json").exists()
    AutoModel.from_pretrained(str(out / "encoder"), local_files_only=True)
    assert len(AutoTokenizer.from_pretrained(str(out / "encoder"), local_files_only=True)) > 256
    for tok_dir in (source_data_dir / "tokenizers").glob("*.moved"):
        tok_dir.rename(tok_dir.with_name(tok_dir.name[: -len(".moved")]))


def test_local_pretrained_directory_loads_offline(
    tmp_path, source_file, source_data_dir, monkeypatch
) -> None:
    """A saved encoder + tokenizer directory stands in for a hub checkpoint such as CodeBERT."""
    from training_pipeline.data.bpe import BpeConfig, normalize_source, train_bpe
    from training_pipeline.models.nets.transformer import build_encoder, small_encoder_config

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = [normalize_source(line) for line in source_file.read_text().splitlines()]
    tok = train_bpe(texts, BpeConfig(vocab_size=300))
    local = tmp_path / "tiny-codebert"
    build_encoder(small_encoder_config(len(tok), 1, 16, 1, 2, 32, 64)).save_pretrained(str(local))
    tok.save_pretrained(str(local))
    cfg = compose_config(
        "train.yaml",
        [*tiny(source_file, source_data_dir), "debug=fdr", f"model.pretrained_model_name_or_path={local}"],
        tmp_path / "pre",
    )
    metrics, objects = train(cfg)
    model = objects["model"]
    assert model.encoder.config.hidden_size == 16 and model.hparams.tokenizer_state["kind"] == "pretrained"
    assert objects["datamodule"].tokenizer.vocab_size == len(tok)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))


def test_mlm_stage_then_classifier_from_its_encoder(tmp_path, source_file, source_data_dir) -> None:
    cfg = compose_config(
        "train.yaml",
        [*tiny(source_file, source_data_dir, "code_analyzer_mlm"), "debug=fdr"],
        tmp_path / "mlm",
    )
    assert cfg.optimized_metric == "val/mlm_accuracy" and cfg.data.mlm_on == "train"
    metrics, objects = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"])) and "test/mlm_accuracy" in metrics
    dm = objects["datamodule"]
    assert len(dm.splits["train"]) > len(dm.indices("train"))  # windows are the samples
    encoder_dir = tmp_path / "mlm" / "encoder"
    assert (encoder_dir / "model.safetensors").exists() and (encoder_dir / "source_tokenizer.json").exists()
    mlm_weight = objects["model"].encoder.get_input_embeddings().weight.detach().clone()

    cfg = compose_config(
        "train.yaml",
        [*tiny(source_file, source_data_dir), "debug=fdr", f"model.encoder_ckpt={encoder_dir}"],
        tmp_path / "cls",
    )
    assert cfg.data.tokenizer.from_checkpoint == str(encoder_dir)
    _, objects = train(cfg)
    assert objects["datamodule"].tokenizer.fingerprint() == dm.tokenizer.fingerprint()
    assert objects["model"].encoder.get_input_embeddings().weight.shape == mlm_weight.shape

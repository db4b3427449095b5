"""Every option of every config group composes and resolves; the model choice selects its data."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF, compose_config
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

GROUPS = [
    "model",
    "data",
    "trainer",
    "callbacks",
    "logger",
    "debug",
    "experiment",
    "hparams_search",
    "extras",
    "paths",
]


def options(group: str) -> list[str]:
    return sorted(
        p.stem
        for p in (CONF / group).glob("*.yaml")
        if not (group == "debug" and p.stem == "default") and not p.stem.startswith("_")
    )


@pytest.mark.parametrize(("group", "option"), [(g, o) for g in GROUPS for o in options(g)])
def test_every_option_composes_and_resolves(group: str, option: str, tmp_path: Path) -> None:
    overrides = [f"{group}={option}"]
    if option == "bytecode_file":
        overrides.append("data.path=contracts.jsonl")
    cfg = compose_config("train.yaml", overrides, tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["_target_"].startswith("training_pipeline.data.")
    assert resolved["paths"]["output_dir"] == str(tmp_path)


def test_eval_config_composes(tmp_path: Path) -> None:
    cfg = compose_config("eval.yaml", ["ckpt_path=x.ckpt"], tmp_path)
    assert cfg.ckpt_path == "x.ckpt" and cfg.split == "test"


def test_choosing_a_model_chooses_its_data_and_data_still_overrides(tmp_path: Path) -> None:
    cfg = compose_config("train.yaml", ["model=bytecode_detector"], tmp_path)
    assert cfg.data._target_.endswith("ContractBytecodeDataModule") and cfg.data.path is None
    cfg = compose_config(
        "train.yaml", ["model=bytecode_detector", "data=bytecode_file", "data.path=f.jsonl"], tmp_path
    )
    assert cfg.data.path == "f.jsonl"


def test_debug_wins_over_experiment(tmp_path: Path) -> None:
    cfg = compose_config("train.yaml", ["experiment=bytecode_detector", "debug=fdr"], tmp_path)
    assert cfg.trainer.fast_dev_run is True and cfg.trainer.max_epochs == 1
    assert cfg.data.corpus.n_contracts == 1500 and "baseline" in cfg.tags  # the experiment's values survive


def test_gpu_trainers_inherit_the_default(tmp_path: Path) -> None:
    gpu = compose_config("train.yaml", ["trainer=gpu"], tmp_path).trainer
    assert (gpu.accelerator, gpu.precision, gpu.gradient_clip_val) == ("gpu", "bf16-mixed", 1.0)
    ddp_cpu = compose_config("train.yaml", ["trainer=ddp_cpu"], tmp_path).trainer
    assert (ddp_cpu.strategy, ddp_cpu.accelerator, ddp_cpu.devices) == ("ddp", "cpu", 2)


def test_unknown_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="bytecode_detecter"):
        compose_config("train.yaml", ["model=bytecode_detecter"], tmp_path)


def test_optuna_search_space_and_storage(tmp_path: Path) -> None:
    cfg = compose_config("train.yaml", ["hparams_search=bytecode_detector_optuna"], tmp_path)
    sweeper = HydraConfig.get().sweeper
    assert cfg.optimized_metric == "val/f1_macro" and sweeper.direction == "maximize"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert {"model.optimizer.lr", "model.channels", "model.depth", "model.dropout", "data.batch_size"} <= set(
        sweeper.params
    )
    assert sweeper.storage.startswith("sqlite:///") and sweeper.storage.endswith("studies.db")
    random = compose_config("train.yaml", ["hparams_search=bytecode_detector_random"], tmp_path)
    assert HydraConfig.get().sweeper.sampler._target_ == "optuna.samplers.RandomSampler" and random.model

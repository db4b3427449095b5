"""Shared fixtures: composed configs shrunk to seconds, and one tiny compiled corpus per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from training_pipeline.config import CONF_DIR as CONF  # registers the config resolvers too

ROOT = Path(__file__).resolve().parents[1]
# `make test` runs one pytest-xdist worker per core. Each keeps to one thread, and so do the entrypoints the
# tests start as subprocesses: two workers with two torch threads each on 2 cores took the suite from
# 7 min 52 s to 8 min 33 s. A plain `pytest` (no worker) keeps torch's default.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
# MLflow runs (train-all tracks by default), the model registry and the deployment audit log of the tests go
# to a temporary store, never to the project's outputs/.
_STORE = Path(tempfile.mkdtemp(prefix="scathat-tests-"))
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE / 'mlflow.db'}"
os.environ["SCATHAT_AUDIT_LOG"] = str(_STORE / "audit.jsonl")
# Compilers installed on demand (solc_resolver) come from an empty cache: a scan picks the same release on
# every machine (offline: the newest bundled one), whatever this machine's ~/.cache/scathat/solc holds.
os.environ["TRAINING_PIPELINE_SOLC_CACHE"] = str(_STORE / "solc")
os.environ.setdefault("TRAINING_PIPELINE_SOLC_DIR", str(ROOT / "scripts" / "solc"))
os.environ.setdefault("TRAINING_PIPELINE_SOLC_OFFLINE", "1")  # tests never reach npm
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
TINY_CORPUS = 80  # contracts: enough for 5 grouped folds, compiles in seconds


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per session, so the tiny corpus is generated and compiled once."""
    return tmp_path_factory.mktemp("data")


def compose_config(name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``conf/<name>`` as the entrypoints do, with Hydra's runtime config set for interpolations."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF)):
        cfg = compose(config_name=name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]  # entrypoints never see it; ${hydra:...} resolves from the HydraConfig set above
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir.parent / "logs")
    return cfg


# A network of a few thousand parameters and no progress output: seconds per epoch on the tiny corpus.
FAST_OVERRIDES = [
    "data.batch_size=8",
    "model.channels=16",
    "model.embed_dim=16",
    "model.depth=2",
    "extras.print_config=false",
    "trainer.enable_progress_bar=false",
]


def tiny_overrides(data_dir: Path, corpus: bool = True) -> list[str]:
    corpus_size = [f"data.corpus.n_contracts={TINY_CORPUS}"] if corpus else []
    return [f"paths.data_dir={data_dir}", *corpus_size, *FAST_OVERRIDES, "trainer.enable_model_summary=false"]


@pytest.fixture
def cfg_train(tmp_path: Path, data_dir: Path) -> DictConfig:
    """train.yaml for a 2-epoch run on the tiny corpus, outputs in tmp_path."""
    cfg = compose_config(
        "train.yaml",
        [*tiny_overrides(data_dir), "trainer.max_epochs=2", "~callbacks.rich_progress_bar"],
        tmp_path / "run",
    )
    yield cfg
    GlobalHydra.instance().clear()


def file_bytecode_module(tmp_path: Path, records: Path, batch_size: int = 8, **kw):
    """A set-up bytecode datamodule over one JSON-lines file of records (3 folds)."""
    from training_pipeline.data.bytecode import ContractBytecodeDataModule

    dm = ContractBytecodeDataModule(
        data_dir=str(tmp_path / "data"),
        sources=["file"],
        path=str(records),
        split={"n_folds": 3},
        batch_size=batch_size,
        **kw,
    )
    dm.setup()
    return dm


def run_cli(script: str, *args: str, tmp_path: Path, data_dir: Path | None = None, timeout: int = 300):
    """Run an entrypoint as a user would (a new process); outputs and data stay under tmp_path."""
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) must precede the overrides
    overrides = [a for a in args if not a.startswith("-")]
    cmd = [
        sys.executable,
        str(ROOT / "src" / script),
        *flags,
        f"paths.log_dir={tmp_path / 'outputs'}",
        *overrides,
    ]
    if data_dir is not None:
        cmd.append(f"paths.data_dir={data_dir}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "0"}
    env.pop("HYDRA_FULL_ERROR")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def tiny_detector(seed: int = 0):
    """An untrained bytecode detector of a few thousand parameters over the EVM tokenizer (seeded): what
    scanner, package and service tests run when the model's quality is not under test."""
    import torch

    from training_pipeline import taxonomy
    from training_pipeline.data.evm import EvmTokenizer
    from training_pipeline.models.bytecode_detector import BytecodeDetector

    torch.manual_seed(seed)
    tok = EvmTokenizer()
    return BytecodeDetector(
        tok.vocab_size,
        list(taxonomy.VULNERABILITY_CLASSES),
        list(taxonomy.FAMILIES),
        tokenizer_state=tok.state_dict(),
        embed_dim=8,
        channels=8,
        depth=1,
    ).eval()

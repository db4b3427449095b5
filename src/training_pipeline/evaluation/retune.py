"""Re-tune a trained contract model's class thresholds under another false-alarm budget, without retraining.

Checkpoints are selected on ``val/f1_macro`` at 0.5 thresholds, so the budget never changes which epoch is
kept or its weights: re-tuning the kept checkpoint's thresholds on its own validation split gives the model a
retrain with that budget would give. The result is a new run dir (the original is never touched)::

    python scripts/retune_thresholds.py outputs/train/runs/<run> --out outputs/retune/share10 \\
        --max-flagged-share 0.1 --max-flag-rate none
    python scripts/retune_thresholds.py outputs/train/runs/<run> --out outputs/retune/f2 --beta 2 \\
        --max-flag-rate 0.01     # F2 instead of F1, under make train's own 1% budget
    python scripts/retune_thresholds.py outputs/train/runs/<run> --out outputs/retune/eras \\
        --threshold-eras 0.5 --max-flag-rate 0.01   # + thresholds of their own for code of 0.5 or newer
    python scripts/retune_thresholds.py outputs/train/runs/<run> --out outputs/retune/cap1 \\
        --era-max-flags 1 --max-flag-rate 0.01       # + at most one class flagged per contract of those eras
    python src/eval.py experiment=real_world \\
        real_world.models.bytecode_detector=outputs/retune/share10/checkpoints/best.ckpt

Without audited rows in validation (``data.val_sources`` lacking ``real_code``) the budgets change nothing and
the thresholds come out as the checkpoint's own.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from training_pipeline.errors import ConfigError, DataError
from training_pipeline.metrics.classification import check_threshold_beta, class_flag_budgets, flag_summary
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.models.contract_classifier import check_threshold_eras, row_thresholds
from training_pipeline.utils.run import one_line, quiet_known_warnings, user_errors

log = logging.getLogger(__name__)
BUDGET_KEYS = ("max_audited_flag_rate", "max_audited_flagged_share")
COPIED = ("tokenizer", "provenance.json")  # beside the config: what loading the model for scanning reads


def _class_budget(text: str) -> float | dict[str, float] | None:
    """``--max-flag-rate``: a share for every class, none, or ``default=0.02,time_manipulation=0.1``."""
    if "=" not in text:
        return _budget(text)
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        rate = _budget(value.strip()) if sep and name.strip() else None
        if rate is None:
            raise argparse.ArgumentTypeError(f"{part!r}: expected class=share, e.g. time_manipulation=0.1")
        out[name.strip()] = rate
    return out


def _budget(text: str) -> float | None:
    if text.lower() in ("none", "null"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share in [0, 1] or none") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a share in [0, 1] or none")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="retune_thresholds.py",
        description="Re-tune a contract model's thresholds under a false-alarm budget (a new run dir).",
    )
    p.add_argument("run_dir", type=Path, help="a src/train.py run dir (config_resolved.yaml, checkpoints/)")
    p.add_argument("--out", type=Path, required=True, help="the new run dir (must not exist)")
    p.add_argument("--checkpoint", default="best.ckpt", help="file under <run_dir>/checkpoints/")
    p.add_argument(
        "--max-flag-rate",
        type=_class_budget,
        default=None,
        help="per class (default none); one per class: default=0.02,time_manipulation=0.1",
    )
    p.add_argument("--max-flagged-share", type=_budget, default=None, help="for any class (default none)")
    p.add_argument(
        "--beta",
        type=_beta,
        default=None,
        help="thresholds maximize F-beta (default: the model's own, 1 = F1; 2 favours recall)",
    )
    p.add_argument(
        "--threshold-eras",
        type=_eras,
        default=argparse.SUPPRESS,
        help="thresholds of their own for code of these compiler eras and newer, e.g. 0.5 (none: one set); "
        "default: the model's own",
    )
    p.add_argument(
        "--era-max-flags",
        type=_max_flags,
        default=argparse.SUPPRESS,
        help="at most this many classes flagged per contract of the threshold eras (none: no cap); "
        "default: the model's own",
    )
    return p


def _max_flags(text: str) -> int | None:
    """``--era-max-flags``: an integer >= 1, or none."""
    if text.lower() in ("none", "null"):
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1 or none")
    return int(text)


def _eras(text: str) -> list[str] | None:
    """``--threshold-eras``: ``0.5`` or ``0.5,0.8`` (era groups), or none."""
    if text.lower() in ("none", "null"):
        return None
    eras = [e.strip() for e in text.split(",")]
    try:
        check_threshold_eras(eras)
    except ConfigError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ascending compiler eras, e.g. 0.5") from None
    return eras


def _beta(text: str) -> float:
    try:
        return check_threshold_beta(float(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0") from None


def retune(
    run_dir: Path,
    out: Path,
    budgets: dict[str, float | None],
    checkpoint: str = "best.ckpt",
) -> dict[str, Any]:
    """Write ``out`` (config, tokenizer, ``checkpoints/best.ckpt`` with re-tuned thresholds and ``budgets`` in
    its hyperparameters); returns the old and new thresholds per class."""
    config, ckpt = run_dir / "config_resolved.yaml", run_dir / "checkpoints" / checkpoint
    if not config.is_file():
        raise DataError(f"{run_dir}: not a training run dir (no config_resolved.yaml)")
    if out.exists():
        raise ConfigError(f"--out {out}: already exists; choose a new dir (nothing is overwritten)")
    cfg = OmegaConf.load(config)
    model = load_checkpoint(cfg.model._target_, ckpt)
    if not hasattr(model, "thresholds") or "max_audited_flag_rate" not in model.hparams:
        raise ConfigError(f"{ckpt}: {type(model).__name__} has no tuned class thresholds to re-tune")
    old = _tables(model)
    before = model.thresholds.clone()
    class_flag_budgets(budgets.get("max_audited_flag_rate"), model.class_names)  # a class it lacks: one line
    if {"threshold_eras", "era_max_flags"} & set(budgets):
        if not hasattr(model, "init_era_thresholds"):
            raise ConfigError(f"{ckpt}: {type(model).__name__} has no era-group thresholds")
        model.hparams["era_max_flags"] = budgets.get("era_max_flags", model.hparams.get("era_max_flags"))
        model.init_era_thresholds(budgets.get("threshold_eras", model.hparams.get("threshold_eras")))
    model.hparams.update(budgets)
    datamodule = instantiate(cfg.data, _convert_="all")
    if getattr(model.hparams, "tokenizer_state", None):
        datamodule.use_tokenizer_state(model.hparams.tokenizer_state)  # featurize exactly as in training
    datamodule.prepare_data()
    datamodule.setup("fit")
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, inference_mode=False,  # no_grad as in fit: the aggregator's
    )  # fmt: skip                                         # temperature fit needs autograd
    trainer.validate(model, datamodule=datamodule, verbose=False)  # on_validation_epoch_end re-tunes
    validation = _validation_effect(model.gathered.get("val") or {}, old, _tables(model))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "checkpoints").mkdir(parents=True)
    trainer.save_checkpoint(tmp / "checkpoints" / "best.ckpt", weights_only=True)
    for key, value in budgets.items():
        OmegaConf.update(cfg, f"model.{key}", value, force_add=True)
    OmegaConf.save(cfg, tmp / "config_resolved.yaml")
    for name in COPIED:
        src = run_dir / name
        if src.is_dir():
            shutil.copytree(src, tmp / name)
        elif src.is_file():
            shutil.copy2(src, tmp / name)
    tmp.rename(out)  # all or nothing: a failure above leaves no half-written run dir at --out
    names = list(model.class_names)
    result = {
        "before": dict(zip(names, [round(float(t), 3) for t in before], strict=True)),
        "after": dict(zip(names, [round(float(t), 3) for t in model.thresholds], strict=True)),
        "validation": validation,
    }
    if getattr(model, "era_thresholds", None) is not None:
        result["after_by_era"] = {
            f">= {era}": dict(zip(names, [round(float(t), 3) for t in row], strict=True))
            for era, row in zip(model.hparams.threshold_eras, model.era_thresholds, strict=True)
        }
        result["era_max_flags"] = model.hparams.get("era_max_flags")
    return result


Tables = tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, int | None]


def _tables(model: Any) -> Tables:
    """A model's thresholds, era-group thresholds and era bounds (copies; None without era groups), and its
    cap on flags per contract of those eras."""
    by_era, bounds = getattr(model, "era_thresholds", None), getattr(model, "era_bounds", None)
    return (
        model.thresholds.clone(),
        None if by_era is None else by_era.clone(),
        None if bounds is None else bounds.clone(),
        model.hparams.get("era_max_flags"),
    )


def _validation_effect(
    val: dict[str, torch.Tensor], before: Tables, after: Tables
) -> dict[str, dict[str, float | int]]:
    """``flag_summary`` of the validation rows at the old and the new thresholds, each row at its era group's
    ({} without rows). The contract models keep ``probs``/``targets``/``mask``/``era``; the aggregator
    ``class_probs``, ``labels`` and ``label_mask``."""
    keys = ("class_probs", "labels", "label_mask") if "class_probs" in val else ("probs", "targets", "mask")
    probs, targets, mask = (val.get(k) for k in keys)
    if probs is None or targets is None:
        return {}
    era = val.get("era")
    return {
        name: flag_summary(probs, targets, row_thresholds(t, g, b, era, len(probs), probs, k).to(probs), mask)
        for name, (t, g, b, k) in (("before", before), ("after", after))
    }


def main(argv: Sequence[str] | None = None) -> int:
    """0 with the thresholds printed; 2 and one ``error:`` line on bad input."""
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    quiet_known_warnings()
    budgets = {
        "max_audited_flag_rate": args.max_flag_rate,
        "max_audited_flagged_share": args.max_flagged_share,
    }
    if args.beta is not None:
        budgets["threshold_beta"] = args.beta
    for key in ("threshold_eras", "era_max_flags"):
        if hasattr(args, key):
            budgets[key] = getattr(args, key)
    try:
        result = retune(args.run_dir, args.out, budgets, args.checkpoint)
    except user_errors() as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr, flush=True)
        return 2
    print(f"{args.out}: thresholds re-tuned with {budgets}")
    for name, old in result["before"].items():
        print(f"  {name:28s} {old:.2f} -> {result['after'][name]:.2f}")
    for group, values in result.get("after_by_era", {}).items():
        cap = result.get("era_max_flags")
        print(f"code of compiler {group}" + (f" (at most {cap} flagged per contract):" if cap else ":"))
        for name, value in values.items():
            print(f"  {name:28s} {value:.2f}")
    if result["validation"]:
        was, now = result["validation"]["before"], result["validation"]["after"]
        print(f"on validation ({now['rows']} labelled contracts, {now['audited_rows']} audited):")
        for key in ("recall", "contract_recall", "wrong_flags_per_contract", "audited_flagged"):
            print(f"  {key:28s} {was[key]:.2f} -> {now[key]:.2f}")
    return 0

"""The command lines: ``train``, ``eval`` and ``train-all`` as Hydra apps over ``training_pipeline.tasks``.

``src/train.py``, ``src/eval.py``, ``scripts/train_all.py``, the console scripts (``scathat-train``,
``scathat-eval``, ``scathat-train-all``) and ``python -m training_pipeline <command>`` all end here.
Before Hydra starts, the command line is composed once: a misspelled key or config option is one ``error:``
line naming it (with the closest match) and exit status 2, not Hydra's multi-line message. The tasks (torch,
Lightning) are imported only once the command line composes: a typo fails in well under a second, not after
the several seconds Lightning takes to import.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any

import hydra
from hydra._internal.utils import get_args_parser  # Hydra's own parser: the flags it will accept
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException
from omegaconf import DictConfig, OmegaConf

from training_pipeline.config import CONF_DIR, compose_config
from training_pipeline.utils.rich_tree import print_config_tree
from training_pipeline.utils.run import one_line, quiet_known_warnings, task_wrapper

_MISSING = object()


def _closest(word: str, candidates: Sequence[str]) -> str:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _explain(exc: Exception, config_name: str, overrides: list[str]) -> str:
    """One line for a composition error: the bad key or option and its closest match."""
    if isinstance(exc, MissingConfigException):
        found = re.search(r"Could not find '([^']+)'", str(exc))
        if found and "/" in found.group(1):
            group, option = found.group(1).rsplit("/", 1)
            options = list(exc.options or [])
            return (
                f"{group}={option}: no such option{_closest(option, options)}; "
                f"available: {', '.join(options) or '(none)'}"
            )
        return one_line(exc)
    found = re.search(r"Could not override '([^']+)'", str(exc))
    if not found:
        return one_line(exc)
    key = found.group(1)
    rest = [o for o in overrides if not o.lstrip("~+").startswith(f"{key}=")]
    try:
        cfg = compose_config(config_name, rest, return_hydra_config=True)
    except Exception:  # another override is broken too: name this one without a suggestion
        cfg = None
    return _no_such_key(cfg, key)


def _no_such_key(cfg: DictConfig | None, key: str) -> str:
    """``key: no such config key (did you mean <sibling>?)``, the sibling found in ``cfg``."""
    parent, _, leaf = key.rpartition(".")
    node = (OmegaConf.select(cfg, parent, default=None) if parent else cfg) if cfg is not None else None
    siblings = [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    match = difflib.get_close_matches(leaf, siblings, n=1, cutoff=0.6)
    hint = f" (did you mean {parent + '.' if parent else ''}{match[0]}?)" if match else ""
    return f"{key}: no such config key{hint}; use +{key}=... to add one"


def check_command_line(config_name: str, args: Sequence[str]) -> str | None:
    """None when ``args`` compose with ``conf/<config_name>``; else one line naming what does not.
    Sweeps (``a=1,2``) are checked by key; Hydra's own flags are left to Hydra."""
    try:
        ns = get_args_parser().parse_args(list(args))
    except SystemExit:  # a flag Hydra does not know: Hydra prints its own usage line
        return None
    if ns.config_dir or ns.config_name or ns.config_path or ns.help or ns.hydra_help or ns.info:
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(ns.overrides)
    except Exception as exc:  # OverrideParseException: unbalanced quotes, bad sweep syntax
        return one_line(exc)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        cfg = compose_config(config_name, fixed, return_hydra_config=True)
    except Exception as exc:
        return _explain(exc, config_name, fixed)
    for o in parsed:
        key = o.key_or_group
        if o.is_sweep_override() and "." in key and not key.startswith("hydra."):
            if OmegaConf.select(cfg, key, default=_MISSING) is _MISSING and not o.is_add():
                return _no_such_key(cfg, key)
    return None


def _run(config_name: str, app: Callable[[], Any], argv: Sequence[str] | None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    problem = check_command_line(config_name, sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(2)
    app()


def _prepare(cfg: DictConfig) -> None:
    if cfg.extras.get("ignore_warnings"):
        quiet_known_warnings()
    if cfg.extras.get("print_config"):
        print_config_tree(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train.yaml")
@task_wrapper
def _train_app(cfg: DictConfig) -> float | None:
    from training_pipeline.tasks import metric_value, train  # heavy: after the command line is checked

    _prepare(cfg)
    metrics, _ = train(cfg)
    return metric_value(metrics, cfg.get("optimized_metric"))


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="eval.yaml")
@task_wrapper
def _eval_app(cfg: DictConfig) -> None:
    _prepare(cfg)
    if cfg.get("real_world") is not None:
        from training_pipeline.scan.benchmark import run_real_world

        run_real_world(cfg)
    else:
        from training_pipeline.tasks import evaluate

        evaluate(cfg)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="pipeline.yaml")
@task_wrapper
def _train_all_app(cfg: DictConfig) -> None:
    from training_pipeline.pipeline.runner import run_pipeline

    if cfg.extras.get("ignore_warnings"):
        quiet_known_warnings()
    run_pipeline(cfg)


def train_main(argv: Sequence[str] | None = None) -> None:
    """``train``: fit and test one model (``conf/train.yaml``); ``-m`` runs a sweep."""
    _run("train.yaml", _train_app, argv)


def eval_main(argv: Sequence[str] | None = None) -> None:
    """``eval``: a checkpoint on a test split or a contract file (``conf/eval.yaml``)."""
    _run("eval.yaml", _eval_app, argv)


def train_all_main(argv: Sequence[str] | None = None) -> None:
    """``train-all``: cross-fitted base models and the aggregator (``conf/pipeline.yaml``); resumes.
    ``--force`` retrains every stage (``force=true``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _run("pipeline.yaml", _train_all_app, ["force=true" if a == "--force" else a for a in args])

"""The config as a rich tree, printed at the start of a run and saved in the run dir."""

from __future__ import annotations

import io

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf

ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")


def _tree(cfg: DictConfig) -> rich.tree.Tree:
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in ORDER if k in cfg] + [k for k in cfg if k not in ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    return tree


def config_tree_text(cfg: DictConfig) -> str:
    buf = io.StringIO()
    rich.console.Console(file=buf, width=110, color_system=None).print(_tree(cfg))
    return buf.getvalue()


def print_config_tree(cfg: DictConfig) -> None:
    rich.print(_tree(cfg))

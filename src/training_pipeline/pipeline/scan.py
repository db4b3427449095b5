"""Scan contracts: read the inputs (Solidity, runtime bytecode, a transaction CSV, a contract file), run the
trained base models on the views each input has, fuse them with the aggregator, and build the risk report.

Featurization reuses each base model's own datamodule (from the resolved config saved in its run dir) on a
temporary interchange file, with the tokenizer or normalizer state stored in the checkpoint: a scanned
contract is featurized exactly as the model's training data was.
"""

from __future__ import annotations

import csv
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from training_pipeline.errors import DataError, UserError
from training_pipeline.risk import DEFAULT_LEVELS, RiskTarget, risk_level, view_risk
from training_pipeline.utils.run import REPO_ROOT

HEX_SUFFIXES = (".hex", ".bin", ".txt", ".evm")
RECORD_SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass
class ScanInput:
    """One contract to scan: any subset of source, runtime bytecode and a transaction history."""

    name: str
    source_code: str | None = None
    bytecode: str | None = None
    tx_path: str | None = None
    address: str | None = None
    compiler: str | None = None
    notes: list[str] = field(default_factory=list)


# -- readers -------------------------------------------------------------------------------------------------
def _read_text(path: Path, what: str) -> str:
    if not path.exists():
        raise DataError(f"{path}: no such file ({what})")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected a {what} file")
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        raise DataError(f"{path}: empty file ({what})")
    return text


def compile_source(source: str, name: str, solc: str | None = None) -> tuple[str, str]:
    """(runtime bytecode, compiler version) of ``source``; the version from its pragma (oldest bundled solc
    that satisfies it and compiles) unless ``solc`` is given."""
    from training_pipeline import taxonomy
    from training_pipeline.corpus.solc import CompileError, CompileJob, SolcNotInstalledError, compile_many
    from training_pipeline.data.importers.solidity import (
        compatible_compilers,
        main_contract,
        pragma_constraints,
    )

    bundled = sorted(taxonomy.COMPILER_VERSIONS.values())
    if solc:
        if solc not in bundled:
            raise UserError(f"--solc {solc}: not a bundled compiler; bundled: {', '.join(bundled)}")
        versions = [solc]
    else:
        constraints = pragma_constraints(source)
        if not constraints:
            raise DataError(
                f"{name}: no 'pragma solidity' line, cannot choose a compiler (give --solc VERSION)"
            )
        versions = compatible_compilers(source)
        if not versions:
            raise DataError(
                f"{name}: pragma solidity {' '.join(constraints)}: no bundled compiler satisfies it "
                f"(bundled: {', '.join(bundled)})"
            )
    contract = main_contract(source)
    if contract is None:
        raise DataError(f"{name}: no contract declaration found (not Solidity source?)")
    try:
        results = compile_many([CompileJob(source, v, contract) for v in versions], n_workers=1)
    except (SolcNotInstalledError, CompileError) as exc:
        raise UserError(f"{name}: cannot compile ({exc})") from None
    for version, result in zip(versions, results, strict=True):
        if result.ok:
            return result.bytecode, version
    first = (results[0].error or "no bytecode").strip().splitlines()[0][:200]
    raise DataError(f"{name}: does not compile with solc {versions[0]}: {first}")


def read_solidity(path: str | Path, solc: str | None = None, compile_bytecode: bool = True) -> ScanInput:
    path = Path(path)
    source = _read_text(path, "Solidity source")
    item = ScanInput(name=str(path), source_code=source)
    if compile_bytecode:
        item.bytecode, item.compiler = compile_source(source, str(path), solc)
    return item


def read_bytecode(value: str, name: str | None = None) -> ScanInput:
    """Runtime bytecode hex, given inline or as a file (``.hex``/``.bin``/``.txt`` or any existing path)."""
    from training_pipeline.data.evm import InvalidBytecodeError, parse_hex

    path = Path(value)
    is_file = len(value) < 4096 and (path.suffix in HEX_SUFFIXES or path.exists())
    text = _read_text(path, "runtime bytecode") if is_file else value
    label = name or (str(path) if is_file else "bytecode")
    try:
        code = parse_hex(text.strip(), source=label)
    except InvalidBytecodeError as exc:
        raise DataError(f"{label}: invalid bytecode hex ({exc})") from None
    if not code:
        raise DataError(f"{label}: empty bytecode")
    return ScanInput(name=label, bytecode="0x" + code.hex())


def detect_address(path: Path) -> str:
    """The address a transaction export is about: the created contract, else the most frequent receiver."""
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if "to" not in header:
            raise DataError(f"{path}: missing column(s) to; header is {header}")
        counts: Counter = Counter()
        for row in reader:
            row = {(k or "").strip(): (v or "").strip().lower() for k, v in row.items()}
            if row.get("contractAddress"):
                return row["contractAddress"]
            if row.get("to"):
                counts[row["to"]] += 1
    if not counts:
        raise DataError(f"{path}: no transactions")
    return counts.most_common(1)[0][0]


def read_transactions(path: str | Path, address: str | None = None) -> ScanInput:
    path = Path(path)
    _read_text(path, "transaction CSV")
    address = (address or detect_address(path)).lower()
    return ScanInput(name=str(path), tx_path=str(path), address=address)


def read_contract_file(path: str | Path, solc: str | None = None) -> list[ScanInput]:
    """Every record of an interchange file; a record with source but no bytecode is compiled."""
    from training_pipeline.data.records import read_records

    items = []
    for r in read_records(path):
        item = ScanInput(
            name=f"{path}#{r['id']}", source_code=r.get("source_code"), bytecode=r.get("bytecode")
        )
        if item.bytecode is None and item.source_code:
            item.bytecode, item.compiler = compile_source(
                item.source_code, item.name, solc or r.get("compiler_version")
            )
        if item.source_code is None and item.bytecode is None:
            raise DataError(f"{item.name}: neither source_code nor bytecode")
        items.append(item)
    return items


def read_inputs(
    inputs: list[str],
    bytecode: str | None = None,
    transactions: str | None = None,
    address: str | None = None,
    solc: str | None = None,
) -> list[ScanInput]:
    """Positional inputs by suffix (.sol, hex file, .csv, contract file), plus the views given by flags.

    A single positional contract and the flags describe one contract (their views are merged); with several
    positional inputs each is scanned on its own."""
    items: list[ScanInput] = []
    for value in inputs:
        path = Path(value)
        suffix = path.suffix.lower()
        if suffix == ".sol":
            items.append(read_solidity(path, solc))
        elif suffix == ".csv":
            items.append(read_transactions(path, address))
        elif suffix in RECORD_SUFFIXES:
            items.extend(read_contract_file(path, solc))
        elif suffix in HEX_SUFFIXES or value.startswith("0x") or not path.exists():
            items.append(read_bytecode(value))
        else:
            raise UserError(
                f"{value}: unknown input type (expected .sol, .hex/.bin/.txt, .csv, .jsonl/.json/.parquet)"
            )
    extra = ScanInput(name="")
    if bytecode:
        extra.bytecode, extra.name = (
            read_bytecode(bytecode).bytecode,
            bytecode if len(bytecode) < 80 else "bytecode",
        )
    if transactions:
        tx = read_transactions(transactions, address)
        extra.tx_path, extra.address = tx.tx_path, tx.address
        extra.name = extra.name or tx.name
    if extra.bytecode or extra.tx_path:
        if len(items) > 1:
            raise UserError(
                "--bytecode/--transactions describe one contract: give at most one positional input"
            )
        if items:
            base = items[0]
            if extra.bytecode:
                if base.bytecode and base.compiler:
                    base.notes.append("bytecode given: used instead of the compiled one")
                base.bytecode, base.compiler = extra.bytecode, None
            if extra.tx_path:
                base.tx_path, base.address = extra.tx_path, extra.address
        else:
            items.append(extra)
    if not items:
        raise UserError("nothing to scan: give a .sol file, bytecode, a transaction CSV or a contract file")
    return items


# -- models --------------------------------------------------------------------------------------------------
def load_module(target: str, ckpt: Path):
    from hydra.utils import get_class

    if not ckpt.is_file():
        raise DataError(f"{ckpt}: no such checkpoint")
    try:
        return get_class(target).load_from_checkpoint(ckpt, map_location="cpu", weights_only=False).eval()
    except Exception as exc:
        raise DataError(
            f"{ckpt}: cannot load checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None


@dataclass
class BaseView:
    """One trained base model and the data config it was trained with."""

    view: str
    kind: str
    model_name: str
    module: Any
    data_cfg: DictConfig

    @property
    def needs(self) -> str:
        return (
            "tx_path"
            if self.kind == "anomaly_classes"
            else ("source_code" if self.view_uses_source else "bytecode")
        )

    @property
    def view_uses_source(self) -> bool:
        return "window_size" in self.module.hparams  # the code analyzer reads source windows

    def has_input(self, item: ScanInput) -> bool:
        return getattr(item, self.needs) is not None

    def predict(self, items: list[ScanInput]) -> list[dict[str, Any] | None]:
        todo = [i for i, it in enumerate(items) if self.has_input(it)]
        out: list[dict[str, Any] | None] = [None] * len(items)
        if not todo:
            return out
        with tempfile.TemporaryDirectory(prefix="scan-") as tmp:
            if self.kind == "anomaly_classes":
                for i in todo:
                    out[i] = self._predict_history(items[i], Path(tmp))
            else:
                for i, res in zip(
                    todo, self._predict_contracts([items[i] for i in todo], Path(tmp)), strict=True
                ):
                    out[i] = res
        return out

    def _datamodule(self, tmp: Path, **kwargs: Any):
        from hydra.utils import instantiate

        cfg = OmegaConf.to_container(self.data_cfg, resolve=True)
        cfg.update(kwargs)
        cfg["data_dir"] = str(tmp / "data")
        return instantiate(cfg, _convert_="all")

    def _predict_contracts(self, items: list[ScanInput], tmp: Path) -> list[dict[str, Any]]:
        from training_pipeline.data.records import write_records

        path = tmp / "contracts.jsonl"
        write_records(
            [
                {"id": f"scan-{k}", "source_code": it.source_code, "bytecode": it.bytecode, "labels": []}
                for k, it in enumerate(items)
            ],
            path,
            overwrite=True,
        )
        extra: dict[str, Any] = {
            "sources": ["file"],
            "path": str(path),
            "eval_split": "all",
            "eval_sources": None,
        }
        if "augment" in self.data_cfg:
            extra["augment"] = {**OmegaConf.to_container(self.data_cfg.augment), "enabled": False}
        if self.view_uses_source:
            extra["cache"] = False
        dm = self._datamodule(tmp, **extra)
        dm.use_tokenizer_state(self.module.hparams.tokenizer_state)
        dm.setup("predict")
        model, names = self.module, list(self.module.class_names)
        results: dict[int, dict[str, Any]] = {}
        for batch in dm.predict_dataloader():
            if self.view_uses_source:
                with torch.inference_mode(False), torch.enable_grad():
                    embeds = model.embed(batch["input_ids"]).detach().requires_grad_(True)
                    logits = model._logits(batch, embeds)[0]
                    probs = torch.sigmoid(logits.detach())
                    batch = {
                        **batch,
                        "labels": torch.nn.functional.one_hot(probs.argmax(1), len(names)).float(),
                    }
                    located = model.locate(batch, embeds, logits)
            else:
                with torch.no_grad():
                    probs = model.predict_proba(batch["input_ids"])
                located = [None] * len(probs)
            for row, idx in enumerate(batch["index"].tolist()):
                k = int(dm.records[idx]["id"].split("-")[1])
                results[k] = {
                    "probs": {c: float(p) for c, p in zip(names, probs[row].tolist(), strict=True)},
                    "predicted": [
                        c for c, p, t in zip(names, probs[row], model.thresholds, strict=True) if p >= t
                    ],
                    "top_lines": located[row],
                }
        return [results[k] for k in range(len(items))]

    def _predict_history(self, item: ScanInput, tmp: Path) -> dict[str, Any]:
        labels = tmp / "labels.csv"
        labels.write_text(f"address,label\n{item.address},normal\n")
        dm = self._datamodule(
            tmp, path=item.tx_path, labels_path=str(labels), corpus=None, sim=None, eval_split="all"
        )
        dm.use_normalizer_state(self.module.hparams.normalizer_state)
        dm.setup("predict")
        if not dm.records:
            raise DataError(f"{item.tx_path}: no transactions of {item.address}")
        model, names = self.module, list(self.module.class_names)
        batch = next(iter(dm.predict_dataloader()))
        with torch.no_grad():
            logits, tx_logits = model(batch)
            probs = torch.softmax(logits, 1)[0]
            tx = torch.sigmoid(tx_logits)[0][batch["mask"][0]]
        refs = dm.tx_refs(int(batch["index"][0]))
        flagged = [refs[k] for k in range(len(tx)) if tx[k] >= model.tx_threshold]
        return {
            "probs": {c: float(p) for c, p in zip(names, probs.tolist(), strict=True)},
            "predicted": names[int(model.decide(probs.unsqueeze(0))[0])],
            "flagged_tx": flagged,
            "transactions": int(batch["lengths"][0]),
        }


def _hparams_kind(hp: dict[str, Any]) -> tuple[str, str, str]:
    """(view, adapter kind, model class) of a base-model checkpoint, from its hyperparameters."""
    if "view_names" in hp:
        raise UserError("an aggregator checkpoint needs its base models: use --pipeline-dir")
    if "feature_names" in hp:
        return "behavior", "anomaly_classes", "training_pipeline.models.behavior_model.BehaviorModel"
    if "window_size" in hp:
        return "source", "contract_classes", "training_pipeline.models.code_analyzer.CodeAnalyzer"
    if "vocab_size" in hp:
        return "bytecode", "contract_classes", "training_pipeline.models.bytecode_detector.BytecodeDetector"
    raise UserError("unknown checkpoint: not a bytecode detector, code analyzer or behavior model")


def _data_cfg_for(ckpt: Path, model_option: str) -> DictConfig:
    """The data config a checkpoint's run used (its config_resolved.yaml), else the model's default one."""
    for run_dir in (ckpt.parent.parent, ckpt.parent):
        resolved = run_dir / "config_resolved.yaml"
        if resolved.is_file():
            return OmegaConf.load(resolved).data
    from training_pipeline.pipeline.compose import compose_task

    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_task("train.yaml", [f"model={model_option}"], Path(tmp))
        return OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))


MODEL_OPTION = {"bytecode": "bytecode_detector", "source": "code_analyzer", "behavior": "behavior_model"}


class Scanner:
    """The trained models of a pipeline run dir (or one base-model checkpoint) and the report builder."""

    def __init__(self, views: list[BaseView], aggregator: Any = None, origin: str = "") -> None:
        self.views, self.aggregator, self.origin = views, aggregator, origin
        self.target = RiskTarget(**(dict(aggregator.hparams.target) if aggregator is not None else {}))
        self.levels = dict(aggregator.hparams.risk_levels) if aggregator is not None else dict(DEFAULT_LEVELS)

    @classmethod
    def from_pipeline(cls, pipeline_dir: str | Path | None = None) -> Scanner:
        import json

        root = Path(pipeline_dir) if pipeline_dir else latest_pipeline_dir()
        manifest = root / "pipeline.json"
        if not manifest.is_file():
            raise UserError(
                f"{root}: not a finished pipeline run dir (no pipeline.json); run `make train-all`"
            )
        info = json.loads(manifest.read_text())
        views = []
        for view, art in info["artifacts"]["base_models"].items():
            if not art.get("checkpoint"):
                raise UserError(f"{root}: {art['model']} has no checkpoint")
            module = load_module(art["model_target"], root / art["checkpoint"])
            data_cfg = OmegaConf.load(root / art["config"]).data
            views.append(BaseView(view, art["kind"], art["model"], module, data_cfg))
        agg = None
        if info["artifacts"].get("aggregator"):
            agg = load_module(
                "training_pipeline.models.aggregator.Aggregator", root / info["artifacts"]["aggregator"]
            )
            order = {v: i for i, v in enumerate(agg.view_names)}
            views = sorted([v for v in views if v.view in order], key=lambda v: order[v.view])
        return cls(views, agg, str(root))

    @classmethod
    def from_checkpoint(cls, ckpt: str | Path) -> Scanner:
        ckpt = Path(ckpt)
        if not ckpt.is_file():
            raise DataError(f"{ckpt}: no such checkpoint")
        try:
            hp = torch.load(ckpt, map_location="cpu", weights_only=False).get("hyper_parameters", {})
        except Exception as exc:
            raise DataError(f"{ckpt}: cannot read checkpoint ({type(exc).__name__})") from None
        view, kind, target = _hparams_kind(hp)
        module = load_module(target, ckpt)
        option = MODEL_OPTION[view]
        return cls([BaseView(view, kind, option, module, _data_cfg_for(ckpt, option))], None, str(ckpt))

    # -- scanning ----------------------------------------------------------------------------------------
    def scan(self, items: list[ScanInput]) -> list[dict[str, Any]]:
        if not any(v.has_input(it) for it in items for v in self.views):
            have = ", ".join(v.view for v in self.views)
            raise UserError(f"no input has a view these models read ({have})")
        per_view = {v.view: v.predict(items) for v in self.views}
        reports = []
        for k, item in enumerate(items):
            outs = {v.view: per_view[v.view][k] for v in self.views}
            reports.append(self._report(item, outs))
        return reports

    def _report(self, item: ScanInput, outs: dict[str, dict | None]) -> dict[str, Any]:
        views_report: dict[str, Any] = {}
        for v in self.views:
            out = outs[v.view]
            if out is None:
                views_report[v.view] = {
                    "present": False,
                    "model": v.model_name,
                    "reason": f"no {_what(v)} given",
                }
                continue
            views_report[v.view] = {
                "present": True,
                "model": v.model_name,
                "risk": round(view_risk(self.target, v.kind, out["probs"]), 4),
                "predicted": out["predicted"],
                "probs": {c: round(p, 4) for c, p in sorted(out["probs"].items(), key=lambda kv: -kv[1])},
            }
            if v.kind == "anomaly_classes":
                views_report[v.view]["flagged_tx"] = out["flagged_tx"]
                views_report[v.view]["transactions"] = out["transactions"]
        present = [v for v in self.views if outs[v.view] is not None]
        report: dict[str, Any] = {"input": item.name, "views": views_report}
        if item.compiler:
            report["compiler"] = item.compiler
        if item.notes:
            report["notes"] = item.notes
        if not present:
            report.update(
                {"risk": None, "risk_level": None, "error": "no view of this input is read by the models"}
            )
            return report
        if self.aggregator is not None:
            report.update(self._fuse(outs))
        else:  # one base model: its own risk (uncalibrated)
            v = present[0]
            risk = views_report[v.view]["risk"]
            report.update({"risk": risk, "risk_level": risk_level(risk, self.levels), "calibrated": False})
            if v.kind != "anomaly_classes":
                report["vulnerabilities"] = views_report[v.view]["probs"]
            report["contributions"] = {v.view: {"gate": 1.0, "delta": risk}}
        source_view = next((v for v in present if v.view_uses_source and v.kind != "anomaly_classes"), None)
        if source_view is not None and item.source_code:
            report["top_lines"] = top_lines(outs[source_view.view]["top_lines"], item.source_code, report)
        return report

    def _fuse(self, outs: dict[str, dict | None]) -> dict[str, Any]:
        agg = self.aggregator
        feats, mask = [], []
        for v in agg.view_names:
            names = agg.hparams.view_features[v]
            out = outs.get(v)
            mask.append(out is not None)
            feats.extend(
                [out["probs"].get(f, 0.0) for f in names] if out is not None else [float("nan")] * len(names)
            )
        x = torch.tensor([feats], dtype=torch.float32)
        m = torch.tensor([mask])
        pred = agg.predict_risk(x, m)
        deltas = agg.explain(x, m)[0]
        risk = float(pred["risk"][0])
        return {
            "risk": round(risk, 4),
            "risk_level": agg.risk_level(risk),
            "risk_raw": round(float(pred["risk_raw"][0]), 4),
            "calibrated": agg.calibration_method,
            "vulnerabilities": {
                c: round(float(p), 4)
                for c, p in sorted(
                    zip(agg.class_names, pred["class_probs"][0].tolist(), strict=True), key=lambda kv: -kv[1]
                )
            },
            "contributions": {
                v: {"gate": round(float(pred["gates"][0, j]), 4), "delta": round(float(deltas[j]), 4)}
                for j, v in enumerate(agg.view_names)
                if mask[j]
            },
            "missing_views": [v for j, v in enumerate(agg.view_names) if not mask[j]],
        }


def _what(v: BaseView) -> str:
    return {"anomaly_classes": "transaction history"}.get(v.kind) or (
        "source" if v.view_uses_source else "bytecode"
    )


def top_lines(
    ranked: dict[str, list] | None, source: str, report: dict[str, Any], k: int = 5
) -> list[dict[str, Any]]:
    """The code analyzer's best-ranked lines for the likeliest classes, with their text."""
    if not ranked:
        return []
    lines = source.splitlines()
    probs = report.get("vulnerabilities") or {}
    order = sorted(ranked, key=lambda c: -probs.get(c, 0.0))
    out, seen = [], set()
    for cls in order:
        for line, score in ranked[cls]:
            line = int(line)
            if (cls, line) in seen or not 1 <= line <= len(lines):
                continue
            seen.add((cls, line))
            out.append(
                {"class": cls, "line": line, "score": round(float(score), 4), "text": lines[line - 1].strip()}
            )
            if len(out) >= k:
                return out
    return out


def latest_pipeline_dir(root: Path | None = None) -> Path:
    base = root or REPO_ROOT / "outputs" / "pipeline"
    runs = sorted(base.glob("*/pipeline.json"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise UserError(
            f"no pipeline run under {base}: run `make train-all` or give --pipeline-dir/--checkpoint"
        )
    return runs[-1].parent


def render(reports: list[dict[str, Any]], console=None) -> None:
    """A readable summary on the terminal: one row per input, then each input's contributions and lines."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        console = console if console.is_terminal else Console(width=150)
    table = Table(title="Risk report")
    for col in ("input", "risk", "level", "views", "top vulnerabilities"):
        table.add_column(col, justify="right" if col == "risk" else "left")
    colors = {"low": "green", "medium": "yellow", "high": "red", "critical": "bold red"}
    for r in reports:
        views = ", ".join(v for v, info in r["views"].items() if info["present"])
        vulns = ", ".join(f"{c} {p:.2f}" for c, p in list((r.get("vulnerabilities") or {}).items())[:3])
        level = r.get("risk_level") or "-"
        risk = "-" if r.get("risk") is None else f"{r['risk']:.3f}"
        table.add_row(escape(r["input"]), risk, f"[{colors.get(level, 'white')}]{level}[/]", views, vulns)
    console.print(table)
    for r in reports:
        parts = [
            f"{v}: gate {c['gate']:.2f}, delta {c['delta']:+.3f}"
            for v, c in (r.get("contributions") or {}).items()
        ]
        behavior = r["views"].get("behavior")
        if behavior and behavior.get("present"):
            parts.append(f"history: {behavior['predicted']} ({len(behavior['flagged_tx'])} flagged tx)")
        console.print(f"[bold]{escape(r['input'])}[/bold]  " + " | ".join(parts))
        for line in r.get("top_lines") or []:
            tag = escape("[" + line["class"] + "]")
            console.print(f"    line {line['line']:>4} {tag} {escape(line['text'][:100])}")

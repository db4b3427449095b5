"""Data quality report over contract records and their splits: what `make data` prints and writes.

``quality_report(records, split_of)`` counts records per label, family, era, source and split, summarizes
lengths, finds duplicates (normalized-source clones and identical bytecode), label co-occurrence, and checks
that no group straddles splits or folds. ``render_markdown`` turns it into the ``report.md`` text;
``check_report`` raises when a group leaks across splits. ``load_configured_records`` gets the records and
splits of any ``train.yaml`` data config (every configured source) through the shared datamodule base.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from rich.console import Console
from rich.markdown import Markdown

from training_pipeline import taxonomy
from training_pipeline.config import compose_config
from training_pipeline.data.clean import normalized_source_hash
from training_pipeline.data.evm import parse_hex, strip_metadata
from training_pipeline.errors import DataError

SPLIT_ORDER = ("train", "val", "test", "unused")
NO_LABEL = "(none)"
LENGTH_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def era(compiler_version: str | None) -> str:
    """``0.4.26`` → ``0.4``; records without a compiler version are ``unknown``."""
    parts = str(compiler_version or "").lstrip("v").split(".")
    return ".".join(parts[:2]) if len(parts) >= 2 and all(p.isdigit() for p in parts[:2]) else "unknown"


def _sorted_counts(values: Sequence[Any]) -> dict[str, int]:
    return dict(sorted(Counter(str(v) for v in values).items()))


def _summary(values: Sequence[float]) -> dict[str, float]:
    if not len(values):
        return {"n": 0}
    arr = np.asarray(values, dtype=float)
    qs = np.quantile(arr, LENGTH_QUANTILES)
    names = ("min", "p5", "p25", "median", "p75", "p95", "max")
    return {
        "n": int(arr.size),
        "mean": round(float(arr.mean()), 1),
        **{k: float(q) for k, q in zip(names, qs, strict=True)},
    }


def _bytecode_size(code: str | None) -> int:
    return (len(code) - 2) // 2 if code and code.startswith("0x") else 0


def _stripped_hash(code: str) -> str:
    return hashlib.sha256(strip_metadata(parse_hex(code))).hexdigest()


def _duplicate_sets(keys: dict[str, list[int]], records: Sequence[dict], split_of: Sequence[str]) -> dict:
    """Sets of records sharing a key: how many, how big, and how many cross groups or splits."""
    sets = [idx for idx in keys.values() if len(idx) > 1]
    cross_group = [idx for idx in sets if len({records[i]["group"] for i in idx}) > 1]
    cross_split = [idx for idx in sets if len({split_of[i] for i in idx} - {"unused"}) > 1]
    return {
        "sets": len(sets),
        "records": sum(len(idx) for idx in sets),
        "largest": max((len(idx) for idx in sets), default=0),
        "across_groups": len(cross_group),
        "across_splits": len(cross_split),
        "examples_across_splits": [[records[i]["id"] for i in idx[:4]] for idx in cross_split[:5]],
    }


def quality_report(records: Sequence[dict[str, Any]], split_of: Sequence[str]) -> dict[str, Any]:
    """Counts, lengths, duplicates, label co-occurrence and the split/group leak checks of ``records``."""
    if len(records) != len(split_of):
        raise ValueError(f"{len(records)} records but {len(split_of)} split names")
    labels = [list(r.get("labels") or []) for r in records]
    per_split: dict[str, Counter] = defaultdict(Counter)
    for lbls, split in zip(labels, split_of, strict=True):
        per_split[split].update(lbls or [NO_LABEL])

    # label co-occurrence over the taxonomy's classes (diagonal: contracts with the label)
    classes = [c for c in taxonomy.VULNERABILITY_CLASSES if any(c in lbls for lbls in labels)]
    index = {c: i for i, c in enumerate(classes)}
    co = np.zeros((len(classes), len(classes)), dtype=int)
    for lbls in labels:
        present = sorted({index[lbl] for lbl in lbls if lbl in index})
        for i in present:
            co[i, i] += 1
        for i, j in combinations(present, 2):
            co[i, j] += 1
            co[j, i] += 1

    # duplicates: identical normalized source (clones group_clones merges), identical bytecode
    by_source: dict[str, list[int]] = defaultdict(list)
    by_code: dict[str, list[int]] = defaultdict(list)
    by_stripped: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.get("source_code"):
            by_source[normalized_source_hash(r["source_code"])].append(i)
        if r.get("bytecode"):
            by_code[r["bytecode"]].append(i)
            by_stripped[_stripped_hash(r["bytecode"])].append(i)
    group_sizes = Counter(r["group"] for r in records)

    # the leak checks: a group in two splits, or in two folds (then some fold's splits share it)
    splits_of_group: dict[str, set[str]] = defaultdict(set)
    folds_of_group: dict[str, set[int]] = defaultdict(set)
    for r, split in zip(records, split_of, strict=True):
        if split != "unused":
            splits_of_group[r["group"]].add(split)
        if r.get("fold") is not None:
            folds_of_group[r["group"]].add(int(r["fold"]))
    shared = {
        f"{a}&{b}": sorted(g for g, s in splits_of_group.items() if {a, b} <= s)
        for a, b in combinations([s for s in SPLIT_ORDER if s != "unused"], 2)
    }
    multi_fold = sorted(g for g, f in folds_of_group.items() if len(f) > 1)
    split_groups = {
        s: len({r["group"] for r, x in zip(records, split_of, strict=True) if x == s}) for s in SPLIT_ORDER
    }

    return {
        "n_records": len(records),
        "n_groups": len(group_sizes),
        "counts": {
            "per_label": _sorted_counts([lbl for lbls in labels for lbl in (lbls or [NO_LABEL])]),
            "per_family": _sorted_counts([r.get("family") for r in records]),
            "per_era": _sorted_counts([era(r.get("compiler_version")) for r in records]),
            "per_compiler_version": _sorted_counts([r.get("compiler_version") for r in records]),
            "per_source": _sorted_counts([r.get("origin", "unknown") for r in records]),
            "per_split": {s: n for s in SPLIT_ORDER if (n := list(split_of).count(s))},
            "per_split_label": {s: dict(sorted(per_split[s].items())) for s in SPLIT_ORDER if s in per_split},
            "multi_label": sum(1 for lbls in labels if len(lbls) > 1),
        },
        "lengths": {
            "source_lines": _summary(
                [r["source_code"].count("\n") + 1 for r in records if r.get("source_code")]
            ),
            "bytecode_bytes": _summary(
                [_bytecode_size(r.get("bytecode")) for r in records if r.get("bytecode")]
            ),
        },
        "duplicates": {
            "group_size": _summary(list(group_sizes.values())),
            "groups_with_several_records": sum(1 for n in group_sizes.values() if n > 1),
            "normalized_source": _duplicate_sets(by_source, records, split_of),
            "exact_bytecode": _duplicate_sets(by_code, records, split_of),
            "bytecode_without_metadata": _duplicate_sets(by_stripped, records, split_of),
        },
        "label_cooccurrence": {"labels": classes, "matrix": co.tolist()},
        "splits": {
            "groups_per_split": {s: n for s, n in split_groups.items() if n},
            "shared_groups": {k: len(v) for k, v in shared.items()},
            "shared_group_examples": {k: v[:5] for k, v in shared.items() if v},
            "groups_in_several_folds": len(multi_fold),
            "ok": not any(shared.values()) and not multi_fold,
        },
    }


def split_verdict(report: dict[str, Any]) -> str:
    """One plain line on the split check (what `make data` and the notebook print)."""
    splits = report["splits"]
    if splits["ok"]:
        return "split check: OK, no split shares a group"
    leaks = {k: n for k, n in splits["shared_groups"].items() if n}
    several = splits["groups_in_several_folds"]
    return f"split check: FAILED, groups shared by splits {leaks}, {several} in several folds"


def check_report(report: dict[str, Any]) -> None:
    """Raise DataError when a group is in two splits (or two folds): the split would leak."""
    splits = report["splits"]
    if not splits["ok"]:
        leaks = {k: n for k, n in splits["shared_groups"].items() if n}
        raise DataError(
            f"group leak: groups shared by splits {leaks} (e.g. {splits['shared_group_examples']}), "
            f"{splits['groups_in_several_folds']} groups in several folds"
        )


def _table(title: str, counts: dict[str, Any], total: int | None = None) -> list[str]:
    rows = [f"| {title} | count |" + (" share |" if total else ""), "|---|---:|" + ("---:|" if total else "")]
    for k, v in counts.items():
        rows.append(f"| {k} | {v} |" + (f" {100 * v / total:.1f}% |" if total else ""))
    return [*rows, ""]


def render_markdown(report: dict[str, Any], title: str = "Data quality report") -> str:
    """The report as markdown (``report.md``; `make data` prints it through rich)."""
    c, n = report["counts"], report["n_records"]
    s, d = report["splits"], report["duplicates"]
    verdict = "OK: no split shares a group" if s["ok"] else "FAILED: some splits share a group"
    out = [
        f"# {title}",
        "",
        f"{n} records in {report['n_groups']} groups; {c['multi_label']} with several labels. "
        f"**Split check: {verdict}.**",
        "",
        "## Splits",
        "",
        "| split | records | groups |",
        "|---|---:|---:|",
        *(f"| {k} | {v} | {s['groups_per_split'].get(k, 0)} |" for k, v in c["per_split"].items()),
        "",
        "| splits | shared groups |",
        "|---|---:|",
        *(f"| {k} | {v} |" for k, v in s["shared_groups"].items()),
        f"| several folds | {s['groups_in_several_folds']} |",
        "",
        "## Counts",
        "",
        *_table("label", c["per_label"], n),
        *_table("family", c["per_family"], n),
        *_table("era", c["per_era"], n),
        *_table("source", c["per_source"], n),
    ]
    splits = list(c["per_split_label"])
    out += ["| label | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
    for label in c["per_label"]:
        out.append(
            f"| {label} | " + " | ".join(str(c["per_split_label"][sp].get(label, 0)) for sp in splits) + " |"
        )
    out += ["", "## Lengths", "", "| measure | n | mean | min | p5 | p25 | median | p75 | p95 | max |"]
    out.append("|---|" + "---:|" * 9)
    for name, stats in report["lengths"].items():
        if stats.get("n"):
            keys = ("n", "mean", "min", "p5", "p25", "median", "p75", "p95", "max")
            out.append(f"| {name} | " + " | ".join(f"{stats[k]:g}" for k in keys) + " |")
    out += ["", "## Duplicates", ""]
    out.append(
        f"Groups: {report['n_groups']}, {d['groups_with_several_records']} with more than one record "
        f"(largest {d['group_size'].get('max', 0):g})."
    )
    out += [
        "",
        "| kind | sets | records | largest | across groups | across splits |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("normalized_source", "exact_bytecode", "bytecode_without_metadata"):
        x = d[kind]
        out.append(
            f"| {kind} | {x['sets']} | {x['records']} | {x['largest']} "
            f"| {x['across_groups']} | {x['across_splits']} |"
        )
    labels, matrix = report["label_cooccurrence"]["labels"], report["label_cooccurrence"]["matrix"]
    if labels:
        out += [
            "",
            "## Label co-occurrence",
            "",
            "| | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        out += [
            f"| {a} | " + " | ".join(str(v) for v in row) + " |"
            for a, row in zip(labels, matrix, strict=True)
        ]
    return "\n".join(out) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``report.json`` and ``report.md`` into ``out_dir``; returns the markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({**(extra or {}), **report}, indent=2) + "\n")
    md = out / "report.md"
    md.write_text(render_markdown(report))
    return md


def print_report(report: dict[str, Any]) -> None:
    """Print the markdown report with rich (tables drawn in the terminal)."""
    Console(width=None if sys.stdout.isatty() else 120).print(Markdown(render_markdown(report)))


def load_configured_records(overrides: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[str], Any]:
    """Records and split names of the data config ``train.yaml`` composes with ``overrides`` (every source).

    Goes through the datamodule base (``load_records``), so clone grouping and fold assignment are the ones
    training sees. Returns (records, split names, the composed config).
    """
    cfg = compose_config("train.yaml", overrides)
    dm = instantiate(cfg.data, _convert_="all")
    records, split_of = dm.load_records()
    return records, split_of, cfg

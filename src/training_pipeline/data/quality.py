"""Data quality report over contract records and their splits: what `make data` prints and writes.

``quality_report(records, split_of)`` counts records per label, family, era, source and split, summarizes
lengths, finds duplicates (normalized-source clones and identical bytecode), label co-occurrence, and checks
that no group straddles splits or folds. ``render_markdown`` turns it into the ``report.md`` text;
``check_report`` raises when a group leaks across splits. ``load_configured_records`` gets the records and
splits of any ``train.yaml`` data config (every configured source) through the shared datamodule base.

Per source, side by side (``report["by_source"]``): records and groups, per class positive / assessed
negative / masked counts (``contracts.label_mask``: CGT's partial labels, ``real_code``'s unlabeled records),
compiler eras, compile settings (bytecode present; per ``bytecode_variants`` key: records, median bytecode
size, and how many build the same code as ``o0``), size distributions, and the clone groups that hold records
of several sources. With Slither's cached predictions for the records
(``slither_predictions``), ``report["slither"]`` scores them against each source's assessed labels
(``weak_labels.agreement``); without a cache it holds a one-line note.
"""

from __future__ import annotations

import hashlib
import json
import re
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
from training_pipeline.data.contracts import label_mask
from training_pipeline.data.evm import parse_hex, strip_metadata
from training_pipeline.data.weak_labels.agreement import ClassAgreement, agreement, micro
from training_pipeline.data.weak_labels.cache import FindingsCache, cached_predictions
from training_pipeline.data.weak_labels.mapping import DetectorMapping, load_config
from training_pipeline.errors import DataError, UserError

SPLIT_ORDER = ("train", "val", "test", "unused")
NO_LABEL = "(none)"
LENGTH_QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
SIZE_STATS = {"min": 0.0, "median": 0.5, "p90": 0.9, "max": 1.0}  # per-source size columns
CLONE_EXAMPLES = 5  # cross-source clone groups shown, ids per source shown in each
NO_CACHE_NOTE = "Slither agreement: skipped, no Slither weak-label cache"


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


def _source_lines(r: dict[str, Any]) -> int | None:
    return r["source_code"].count("\n") + 1 if r.get("source_code") else None


def _size_stats(values: Sequence[float]) -> dict[str, float]:
    """n, min, median, p90 and max (what the per-source size table shows); just n=0 when empty."""
    if not len(values):
        return {"n": 0}
    qs = np.quantile(np.asarray(values, dtype=float), list(SIZE_STATS.values()))
    return {"n": len(values), **{k: float(q) for k, q in zip(SIZE_STATS, qs, strict=True)}}


def assessed_truth(record: dict[str, Any]) -> dict[str, bool]:
    """class → label, for the classes ``label_mask`` says the record assessed (masked classes left out)."""
    labels = set(record.get("labels") or [])
    mask = label_mask(record)
    return {c: c in labels for c, m in zip(taxonomy.VULNERABILITY_CLASSES, mask, strict=True) if m}


def source_of(record: dict[str, Any]) -> str:
    """The source a record came from (its ``origin``), ``unknown`` without one."""
    return str(record.get("origin") or "unknown")


def variant_order(key: str) -> list[str | int]:
    """Sort key of compile variant keys with their numbers as numbers: o0, o1-r200, o1-r1000."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _variant_stats(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float | int]]:
    """Per compile variant key: the median bytecode bytes of the records having it, and how many of them
    build the same code as their own ``o0`` once solc's metadata tail is stripped (it hashes the compile
    settings, so it always differs)."""
    sizes: dict[str, list[int]] = defaultdict(list)
    same: Counter = Counter()
    for r in records:
        built = {k: v for k, v in (r.get("bytecode_variants") or {}).items() if v}
        base = _stripped_hash(built["o0"]) if "o0" in built else None
        for k, code in built.items():
            sizes[k].append(_bytecode_size(code))
            if base is not None and k != "o0":
                same[k] += _stripped_hash(code) == base
    return {
        "median_bytes": {k: float(np.median(sizes[k])) for k in sorted(sizes, key=variant_order)},
        "same_as_o0": {k: same[k] for k in sorted(sizes, key=variant_order) if k != "o0"},
    }


def _per_source(
    records: Sequence[dict[str, Any]], skipped: Sequence[dict[str, Any]] = ()
) -> dict[str, dict[str, Any]]:
    """Counts, class assessment, eras, compile settings and sizes of each source's records.

    Compile counts cover every loaded record (``skipped`` too); the rest covers the records in the splits.
    """
    by_source: dict[str, list[dict[str, Any]]] = defaultdict(list)
    left_out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_source[source_of(r)].append(r)
    for r in skipped:
        left_out[source_of(r)].append(r)
    out = {}
    for name in sorted(set(by_source) | set(left_out)):
        recs, loaded = by_source[name], [*by_source[name], *left_out[name]]
        classes = {c: {"positive": 0, "negative": 0, "masked": 0} for c in taxonomy.VULNERABILITY_CLASSES}
        assessed_any = 0
        variants: Counter = Counter()
        for r in recs:
            truth = assessed_truth(r)
            assessed_any += bool(truth)
            for c, counts in classes.items():
                key = "masked" if c not in truth else "positive" if truth[c] else "negative"
                counts[key] += 1
        for r in loaded:
            variants.update(k for k, v in (r.get("bytecode_variants") or {}).items() if v)
        with_code = [r for r in loaded if r.get("bytecode")]
        out[name] = {
            "loaded": len(loaded),
            "skipped": len(left_out[name]),
            "records": len(recs),
            "groups": len({r["group"] for r in recs}),
            "assessed": assessed_any,  # records with at least one assessed class
            "unassessed": len(recs) - assessed_any,
            "classes": classes,
            "eras": _sorted_counts([era(r.get("compiler_version")) for r in recs]),
            "compile": {
                "with_source": sum(1 for r in loaded if r.get("source_code")),
                "with_bytecode": len(with_code),
                "without_bytecode": len(loaded) - len(with_code),
                "single_build": sum(1 for r in with_code if not r.get("bytecode_variants")),
                "variants": {k: variants[k] for k in sorted(variants, key=variant_order)},
                **{f"variant_{k}": v for k, v in _variant_stats(loaded).items()},
            },
            "sizes": {
                "source_lines": _size_stats([n for r in recs if (n := _source_lines(r)) is not None]),
                "bytecode_bytes": _size_stats(
                    [_bytecode_size(r["bytecode"]) for r in recs if r.get("bytecode")]
                ),
            },
        }
    return out


def _cross_source_clones(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Groups holding records of more than one source: how many, per source combination, examples."""
    members: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        members[r["group"]][source_of(r)].append(str(r["id"]))
    mixed = {g: m for g, m in sorted(members.items()) if len(m) > 1}
    return {
        "groups": len(mixed),
        "records": sum(len(ids) for m in mixed.values() for ids in m.values()),
        "by_sources": _sorted_counts(["+".join(sorted(m)) for m in mixed.values()]),
        "examples": [
            {"group": g, "records": {s: ids[:CLONE_EXAMPLES] for s, ids in sorted(m.items())}}
            for g, m in list(mixed.items())[:CLONE_EXAMPLES]
        ],
    }


def slither_predictions(
    records: Sequence[dict[str, Any]], cache_dir: str | Path | None = None
) -> tuple[list[list[str] | None] | None, str]:
    """Slither's cached per-class predictions for each record's source (None where not analysed), and a note.

    Reads the weak-label cache only (``weak_labels.cached_predictions``, no analysis). Returns (None, why)
    when there is no cache (or Slither is not installed) or it holds nothing for these records.
    """
    cfg = load_config()
    root = Path(cache_dir or cfg.get("cache_dir") or "data/weak_labels/slither")
    try:
        cache = FindingsCache(root)
    except UserError as exc:  # slither-analyzer not installed: its version keys the cache
        return None, f"{NO_CACHE_NOTE} ({exc})."
    if not cache.dir.is_dir():
        return None, f"{NO_CACHE_NOTE} ({cache.dir} does not exist; see scripts/weak_label.py)."
    found = cached_predictions(
        [r.get("source_code") or "" for r in records], cache, DetectorMapping.from_config(cfg)
    )
    predictions = [
        p.labels if p is not None and r.get("source_code") else None
        for p, r in zip(found, records, strict=True)
    ]
    if not any(p is not None for p in predictions):
        return None, f"{NO_CACHE_NOTE} entries for these records (cache {cache.dir})."
    return predictions, f"Slither predictions from {cache.dir}."


def _slither_agreement(
    records: Sequence[dict[str, Any]], predictions: Sequence[Sequence[str] | None] | None, note: str | None
) -> dict[str, Any]:
    """Per source, Slither's agreement with the assessed labels (records assessing nothing left out)."""
    if predictions is None:
        return {"note": note or f"{NO_CACHE_NOTE}.", "sources": {}}
    if len(predictions) != len(records):
        raise ValueError(f"{len(records)} records but {len(predictions)} Slither predictions")
    pairs: dict[str, list[tuple[dict[str, Any], Sequence[str] | None]]] = defaultdict(list)
    for r, p in zip(records, predictions, strict=True):
        truth = assessed_truth(r)
        if truth:
            ref = {
                "labels": [c for c, t in truth.items() if t],
                "negative_labels": [c for c, t in truth.items() if not t],
            }
            pairs[source_of(r)].append((ref, list(p) if p is not None else None))
    sources = {}
    for name, src_pairs in sorted(pairs.items()):
        per_class, coverage = agreement(src_pairs)
        if coverage["analysed"]:
            sources[name] = {
                "coverage": coverage,
                "per_class": {c: a.to_dict() for c, a in per_class.items()},
            }
    if not sources:
        return {
            "note": note or "Slither agreement: no labelled record has a cached prediction.",
            "sources": {},
        }
    return {"note": note or "", "sources": sources}


def quality_report(
    records: Sequence[dict[str, Any]],
    split_of: Sequence[str],
    slither: Sequence[Sequence[str] | None] | None = None,
    slither_note: str | None = None,
    skipped: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """Counts, lengths, duplicates, label co-occurrence and the split/group leak checks of ``records``.

    Also the per-source view (``by_source``, ``cross_source_clones``) and, when ``slither`` holds Slither's
    predicted labels per record (None where not analysed; ``slither_predictions``), its agreement with each
    source's assessed labels; otherwise ``slither`` holds only ``slither_note`` (why it was skipped).
    ``skipped``: records the sources loaded but the datamodule left out (no bytecode for a bytecode model);
    they count in the per-source record and compile tables only.
    """
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
        "by_source": _per_source(records, skipped),
        "cross_source_clones": _cross_source_clones(records),
        "slither": _slither_agreement(records, slither, slither_note),
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


def _fmt_score(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def _fmt_count(x: float | None) -> str:
    return "–" if x is None else f"{x:g}"


def _side_by_side(first: str, names: list[str], rows: list[tuple[str, list[Any]]]) -> list[str]:
    """A markdown table with one column per source."""
    out = [f"| {first} | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    out += [f"| {k} | " + " | ".join(str(v) for v in values) + " |" for k, values in rows]
    return [*out, ""]


def render_sources(report: dict[str, Any]) -> list[str]:
    """The per-source sections (side by side), cross-source clone groups and the Slither agreement."""
    src = report["by_source"]
    names = list(src)
    if not names:
        return []
    out = [
        "## Sources",
        "",
        "One column per configured source (`origin`): the records in the splits, except the compile table, "
        "which counts every loaded record (also those the datamodule skipped for lack of its input).",
        "",
    ]
    out += _side_by_side(
        "records",
        names,
        [
            ("loaded", [src[n]["loaded"] for n in names]),
            ("skipped (no model input)", [src[n]["skipped"] for n in names]),
            ("in the splits", [src[n]["records"] for n in names]),
            ("groups", [src[n]["groups"] for n in names]),
            ("with an assessed class", [src[n]["assessed"] for n in names]),
            ("nothing assessed (unlabeled)", [src[n]["unassessed"] for n in names]),
        ],
    )
    out += ["### Classes: positive / assessed negative / masked", ""]
    out += _side_by_side(
        "class",
        names,
        [
            (c, ["{positive} / {negative} / {masked}".format(**src[n]["classes"][c]) for n in names])
            for c in taxonomy.VULNERABILITY_CLASSES
        ],
    )
    eras = sorted({e for n in names for e in src[n]["eras"]})
    out += ["### Eras (compiler major.minor)", ""]
    out += _side_by_side("era", names, [(e, [src[n]["eras"].get(e, 0) for n in names]) for e in eras])
    variants = sorted({v for n in names for v in src[n]["compile"]["variants"]}, key=variant_order)
    compiled = [src[n]["compile"] for n in names]
    variant_rows: list[tuple[str, list[Any]]] = []
    for v in variants:  # per variant: records, median size, same code as o0
        variant_rows += [
            (f"variant `{v}`", [c["variants"].get(v, 0) for c in compiled]),
            (
                f"variant `{v}`: median bytes",
                [_fmt_count(c["variant_median_bytes"].get(v)) for c in compiled],
            ),
        ]
        if v != "o0":
            same = [_fmt_count(c["variant_same_as_o0"].get(v)) for c in compiled]
            variant_rows.append((f"variant `{v}`: same code as `o0`", same))
    out += ["### Compile settings", ""]
    out += _side_by_side(
        "records",
        names,
        [
            ("with source", [c["with_source"] for c in compiled]),
            ("with bytecode", [c["with_bytecode"] for c in compiled]),
            ("without bytecode", [c["without_bytecode"] for c in compiled]),
            ("one build (no variants)", [c["single_build"] for c in compiled]),
            *variant_rows,
        ],
    )
    if variants:
        out += [
            "Same code as `o0`: the variant's runtime bytecode equals the record's own `o0` build once "
            "solc's metadata tail (which hashes the compile settings) is stripped.",
            "",
        ]
    out += ["### Sizes: n, min / median / p90 / max", ""]

    def size(stats: dict[str, float]) -> str:
        if not stats.get("n"):
            return "–"
        return f"{stats['n']}: " + " / ".join(f"{stats[k]:g}" for k in SIZE_STATS)

    out += _side_by_side(
        "measure",
        names,
        [
            (m.replace("_", " "), [size(src[n]["sizes"][m]) for n in names])
            for m in ("source_lines", "bytecode_bytes")
        ],
    )
    x = report["cross_source_clones"]
    out += [
        "### Cross-source clone groups",
        "",
        f"{x['groups']} groups hold records of more than one source ({x['records']} records).",
        "",
    ]
    if x["groups"]:
        out += _table("sources", x["by_sources"])
        out += ["| group | records |", "|---|---|"]
        for ex in x["examples"]:
            ids = "; ".join(f"{s}: " + ", ".join(f"`{i}`" for i in r) for s, r in ex["records"].items())
            out.append(f"| `{ex['group']}` | {ids} |")
        out.append("")
    return [*out, *render_slither(report)]


def render_slither(report: dict[str, Any]) -> list[str]:
    """Slither vs each source's assessed labels per class (n, precision, recall, F1), or the note why not."""
    sl = report["slither"]
    if not sl["sources"]:
        return [sl["note"], ""]
    names = list(sl["sources"])
    out = ["### Slither agreement with the assessed labels", ""]
    if sl["note"]:
        out += [sl["note"], ""]
    out += [
        "Per class: n assessed (and analysed by Slither), precision, recall, F1. "
        + "; ".join(
            f"{n}: {c['coverage']['analysed']} of {c['coverage']['contracts']} labelled records analysed"
            for n, c in sl["sources"].items()
        )
        + ".",
        "",
        "| class | " + " | ".join(f"{n} n | {n} P | {n} R | {n} F1" for n in names) + " |",
        "|---|" + "---:|" * 4 * len(names),
    ]
    for c in taxonomy.VULNERABILITY_CLASSES:
        cells = []
        for n in names:
            a = sl["sources"][n]["per_class"][c]
            cells += [str(a["assessed"]), *(_fmt_score(a[k]) for k in ("precision", "recall", "f1"))]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    micro_cells = []
    for n in names:
        pooled = micro(
            {
                c: ClassAgreement(a["tp"], a["fp"], a["fn"], a["tn"])
                for c, a in sl["sources"][n]["per_class"].items()
            }
        )
        micro_cells += [
            str(pooled.assessed),
            *(_fmt_score(v) for v in (pooled.precision, pooled.recall, pooled.f1)),
        ]
    out.append("| micro (all classes) | " + " | ".join(micro_cells) + " |")
    return [*out, ""]


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
    out += ["", *render_sources(report)]
    return "\n".join(out).rstrip("\n") + "\n"


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


def load_configured_data(
    overrides: Sequence[str] = (),
) -> tuple[list[dict[str, Any]], list[str], Any, list[dict[str, Any]]]:
    """Like ``load_configured_records``, plus the records the datamodule skipped (no bytecode, say).

    Returns (records, split names, the composed config, skipped records with their ``origin``).
    """
    cfg = compose_config("train.yaml", overrides)
    dm = instantiate(cfg.data, _convert_="all")
    records, split_of = dm.load_records()
    # the sources are cached on the datamodule after load_records: reading them again loads nothing
    skipped = [
        {**r, "origin": name, "group": f"{name}:{r.get('group') or r['id']}"}
        for name in dm.sources
        for r in dm.loaded_source(name).records
        if not r.get(dm.needs)
    ]
    return records, split_of, cfg, skipped


def load_configured_records(overrides: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[str], Any]:
    """Records and split names of the data config ``train.yaml`` composes with ``overrides`` (every source).

    Goes through the datamodule base (``load_records``), so clone grouping and fold assignment are the ones
    training sees. Returns (records, split names, the composed config).
    """
    records, split_of, cfg, _ = load_configured_data(overrides)
    return records, split_of, cfg

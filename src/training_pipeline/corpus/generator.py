"""Labelled Solidity contracts from templates: twelve families, five compiler eras, 36 vulnerability shapes.

A *skeleton* fixes a family, an era, every name, the filler, the layout and formatting, and one or two *slots*
(vulnerability shapes). Its variants differ only in which slots carry the flaw: each vulnerable variant comes
with a *safe twin* (every slot repaired) in the same ``group``, so a model has to learn the pattern, not the
template. Shapes, the families they fit and the lines they label are listed in ``templates/shapes.py``.

A skeleton is long (a family's full contract, 100-400 lines, ``templates/families.py``) or *short* (one small
single-purpose contract, 20-150 lines, ``templates/short.py``, the form most real 0.4-era code takes; shapes
marked ``short_only`` render only there). A 0.4 skeleton may be *legacy*: written with pre-0.4.22 habits
(``throw``, ``constant``, ``sha3``, ``suicide``, ``var``, contract-named constructors, old pragmas).
"""

from __future__ import annotations

import random
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from training_pipeline import taxonomy
from training_pipeline.corpus.templates.markets import BUILDERS
from training_pipeline.corpus.templates.render import Ctx, assemble, assemble_compact
from training_pipeline.corpus.templates.shapes import ERAS, SHAPES, Plan, Shape, Slot
from training_pipeline.corpus.templates.short import SHORT_BUILDERS, SHORT_SHAPES

GENERATOR_VERSION = "2.1.0"  # bump when the output for a given seed changes: corpus caches key on it
COMPILER_VERSIONS: tuple[str, ...] = ERAS


@dataclass(frozen=True)
class GeneratedContract:
    """One generated contract with its labels (the corpus record before compilation)."""

    id: str  # "gen-<seed>-<index>", stable for (seed, index)
    group: str  # skeleton id shared by the vulnerable variants and the safe twin
    family: str
    compiler_version: str
    contract_name: str  # the deployable (last, most derived) contract
    source_code: str
    labels: tuple[str, ...]  # sorted taxonomy classes; empty = no injected flaw
    vulnerable_lines: dict[str, list[int]]  # label -> sorted 1-based lines holding the flaw
    shapes: tuple[str, ...]  # injected flawed shapes, e.g. ("reentrancy/call_before_write",)
    short: bool = False  # a short single-purpose contract (templates/short.py)


@dataclass(frozen=True)
class Skeleton:
    """What a group shares: the key every draw derives from, family, era, slots, repaired-only slots."""

    key: str
    family: str
    version: str
    slots: tuple[str, ...]  # shapes flawed in some variant
    fixed: tuple[str, ...] = ()  # shapes present only in repaired form (hard negatives)
    short: bool = False  # a short single-purpose contract (templates/short.py), not the family's long one
    legacy: bool = False  # 0.4 only: pre-0.4.22 idioms


def coverage() -> list[tuple[str, str, str, str]]:
    """Every (family, compiler_version, class, shape id) the generator can produce."""
    return [
        (fam, ver, shape.cls, shape.id)
        for fam in taxonomy.FAMILIES
        for ver in COMPILER_VERSIONS
        for shape in SHAPES.values()
        if fam in shape.sites and ver in shape.versions
    ]


def compatible(family: str, shapes: Sequence[str]) -> bool:
    """True when the shapes can share one contract of ``family``: distinct sites, no excluded site taken."""
    sites = [SHAPES[s].sites.get(family) for s in shapes]
    if None in sites or len(set(sites)) != len(sites):
        return False
    return not any(ex in sites for s in shapes for ex in SHAPES[s].excludes)


def render_group(
    skel: Skeleton, variants: Sequence[frozenset[str]], ids: Sequence[str], group: str
) -> list[GeneratedContract]:
    """Render each variant of a skeleton (the set of flawed shapes) into a labelled contract."""
    ctx = Ctx(skel.key, skel.family, skel.version, legacy=skel.legacy)
    builder = SHORT_BUILDERS[skel.family] if skel.short else BUILDERS[skel.family]
    built = []
    for flawed in variants:
        slots = {
            SHAPES[s].sites[skel.family]: Slot(SHAPES[s], s in flawed) for s in (*skel.slots, *skel.fixed)
        }
        built.append(builder(ctx, Plan(ctx, slots)))
    out = []
    for flawed, b, cid in zip(variants, built, ids, strict=True):
        if skel.short:
            source, lines = assemble_compact(ctx, b.members)
        else:
            source, lines = assemble(ctx, b.members, b.base, b.interfaces, b.parents)
        labels = tuple(sorted({SHAPES[s].cls for s in flawed}))
        if tuple(lines) != labels:  # every label needs its lines and no line may be tagged without a label
            raise AssertionError(f"{skel}: labels {labels} but tagged lines for {sorted(lines)}")
        out.append(
            GeneratedContract(
                cid,
                group,
                skel.family,
                skel.version,
                ctx["contract"],
                source,
                labels,
                lines,
                tuple(sorted(flawed)),
                skel.short,
            )
        )
    return out


def _resolve(spec: str | tuple[str, str]) -> str:
    """A shape id from "cls/shape", ("cls", "shape") or ("cls", "cls/shape")."""
    sid = spec if isinstance(spec, str) else (spec[1] if "/" in spec[1] else f"{spec[0]}/{spec[1]}")
    if sid not in SHAPES:
        raise ValueError(f"unknown shape {sid!r}; known: {', '.join(SHAPES)}")
    return sid


def _check(family: str, version: str, shapes: Sequence[str], short: bool = False) -> None:
    if family not in taxonomy.FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {', '.join(taxonomy.FAMILIES)}")
    if version not in COMPILER_VERSIONS:
        raise ValueError(
            f"unsupported compiler version {version!r}; expected one of {', '.join(COMPILER_VERSIONS)}"
        )
    for s in shapes:
        if family not in SHAPES[s].sites or version not in SHAPES[s].versions:
            raise ValueError(f"shape {s} does not fit {family} / {version}")
    if not compatible(family, shapes):
        raise ValueError(f"shapes {list(shapes)} cannot share one {family} contract")
    if short:
        fits = SHORT_SHAPES.get(family)
        if fits is None:
            raise ValueError(
                f"no short contract for family {family!r}; short ones: {', '.join(SHORT_SHAPES)}"
            )
        if len(shapes) > 1 or any(s not in fits for s in shapes):
            raise ValueError(
                f"a short {family} contract carries one of {', '.join(fits)}; got {list(shapes)}"
            )
    elif any(SHAPES[s].short_only for s in shapes):
        raise ValueError(f"shapes {list(shapes)} render only in short contracts (short=True)")


def generate_group(
    family: str,
    compiler_version: str,
    vulnerabilities: Sequence[str | tuple[str, str]],
    seed: int = 0,
    fixed: Sequence[str | tuple[str, str]] = (),
    short: bool | None = None,
    legacy: bool = False,
) -> list[GeneratedContract]:
    """One skeleton with the given shapes: [all flawed, safe twin]; ``fixed`` adds repaired-only shapes.
    ``short`` asks for a short contract (None: short exactly when a shape renders only there); ``legacy``
    writes a 0.4 skeleton with pre-0.4.22 idioms."""
    vul, fix = [_resolve(v) for v in vulnerabilities], [_resolve(v) for v in fixed]
    if short is None:
        short = any(SHAPES[s].short_only for s in vul + fix)
    _check(family, compiler_version, vul + fix, short)
    tag = "+".join(vul + fix) or "none"
    form = ("-short" if short else "") + ("-legacy" if legacy else "")
    group = f"one-{seed}-{family}-{compiler_version}-{tag}{form}"
    skel = Skeleton(
        f"one/{seed}/{family}/{compiler_version}/{tag}{form}",
        family,
        compiler_version,
        tuple(vul),
        tuple(fix),
        short,
        legacy and compiler_version.startswith("0.4."),
    )
    variants = [frozenset(vul), frozenset()] if vul else [frozenset()]
    return render_group(skel, variants, [f"{group}-{i}" for i in range(len(variants))], group)


def generate_one(
    family: str,
    compiler_version: str,
    vulnerabilities: Sequence[str | tuple[str, str]],
    seed: int = 0,
    safe_twin: bool = False,
    short: bool | None = None,
    legacy: bool = False,
) -> GeneratedContract:
    """A ``family`` contract carrying the given (class, shape) flaws, or (``safe_twin``) its repaired twin."""
    group = generate_group(family, compiler_version, vulnerabilities, seed, short=short, legacy=legacy)
    return group[-1] if safe_twin else group[0]


# --- corpus scheduling --------------------------------------------------------------------------------------
# group kind -> variants over slots A (0) and B (1); records, safe and multi-label counts follow from them
_KINDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "single": ((0,), ()),
    "split": ((0,), (1,), ()),
    "multi": ((0, 1), ()),
    "full": ((0, 1), (0,), (1,), ()),
    "safe_only": ((),),
    "single_v": ((0,),),
    "split_v": ((0,), (1,)),
    "multi_v": ((0, 1),),
}


def _kind_stats(kind: str) -> tuple[int, int, int]:
    v = _KINDS[kind]
    return len(v), sum(not x for x in v), sum(len(x) > 1 for x in v)


class _Scheduler:
    """Picks shapes so classes, then (family, era, shape) tuples, are used evenly."""

    def __init__(self, rng: random.Random, families: Sequence[str], versions: Sequence[str]) -> None:
        self.rng = rng
        self.tuples = [
            (f, v, s)
            for f, v, _, s in coverage()
            if f in families and v in versions and not SHAPES[s].short_only
        ]
        self.short_tuples = [
            (f, v, s)
            for f in families
            for v in versions
            for s in SHORT_SHAPES.get(f, ())
            if v in SHAPES[s].versions
        ]
        self.short_fe = sorted({t[:2] for t in self.short_tuples})
        if not self.tuples:
            raise ValueError(
                f"no vulnerability shape fits families {list(families)} × versions {list(versions)}"
            )
        self.fe = sorted({(f, v) for f in families for v in versions})
        self.by_fe: dict[tuple[str, str], list[tuple[str, str, str]]] = {}
        self.by_cls: dict[str, list[tuple[str, str, str]]] = {}
        self.cls_of = {t: SHAPES[t[2]].cls for t in self.tuples}
        for t in self.tuples:
            self.by_fe.setdefault(t[:2], []).append(t)
            self.by_cls.setdefault(self.cls_of[t], []).append(t)
        self.use: Counter = Counter()
        self.cls_use: Counter = Counter()
        self.fe_use: Counter = Counter()
        self.fam_use: Counter = Counter()
        self.shape_use: Counter = Counter()
        self.short_cls_use: Counter = Counter()
        self.short_shape_use: Counter = Counter()

    def _least(self, items: list, key) -> object:
        best = min(key(x) for x in items)
        return self.rng.choice([x for x in items if key(x) == best])

    def primary(self) -> tuple[str, str, str]:
        """Least-used class; within it the tuple that is least used, counting its family's use too, so that
        families a class shares with others are favoured over the family that every class can use."""
        cls = self._least(sorted(self.by_cls), lambda c: self.cls_use[c])
        total = 1 + sum(self.fam_use.values())
        return self._least(self.by_cls[cls], lambda t: self.use[t] + 40 * self.fam_use[t[0]] // total)

    def short_primary(self) -> tuple[str, str, str]:
        """For a short skeleton: the least-used class short contracts can carry, then its least-used tuple."""
        classes = sorted({SHAPES[t[2]].cls for t in self.short_tuples})
        # classes even among short skeletons (long ones, which take every class, even out the corpus)
        cls = self._least(classes, lambda c: (self.short_cls_use[c], self.cls_use[c]))
        # shapes of the class evenly (the 0.4-only shapes would be rare if every era's tuple counted alike)
        shape = self._least(
            sorted({t[2] for t in self.short_tuples if SHAPES[t[2]].cls == cls}),
            lambda s: (self.short_shape_use[s], self.shape_use[s]),
        )
        return self._least(
            [t for t in self.short_tuples if t[2] == shape], lambda t: (self.use[t], self.fe_use[t[:2]])
        )

    def short_extra(self, fe: tuple[str, str]) -> list[str]:
        """A repaired-only shape for a safe short skeleton (its hard negative), or none."""
        options = [t[2] for t in self.short_tuples if t[:2] == fe]
        return [self.rng.choice(options)] if options and self.rng.random() < 0.6 else []

    def partner(self, first: tuple[str, str, str]) -> tuple[str, str, str] | None:
        f, _, s = first
        options = [
            t
            for t in self.by_fe.get(first[:2], [])
            if self.cls_of[t] != self.cls_of[first] and compatible(f, (s, t[2]))
        ]
        if not options:
            return None
        return self._least(options, lambda t: (self.cls_use[self.cls_of[t]], self.use[t]))

    def extras(self, fe: tuple[str, str], taken: list[str], k: int) -> list[str]:
        """Up to k repaired-only shapes that fit next to ``taken``."""
        out: list[str] = []
        options = [t[2] for t in self.by_fe.get(fe, [])]
        self.rng.shuffle(options)
        for s in options:
            if len(out) == k:
                break
            if compatible(fe[0], (*taken, *out, s)):
                out.append(s)
        return out

    def count(self, fe: tuple[str, str], flawed: Sequence[str], n_variants: int, short: bool = False) -> None:
        self.fe_use[fe] += n_variants
        self.fam_use[fe[0]] += n_variants
        for s in flawed:
            self.use[(*fe, s)] += 1
            self.shape_use[s] += 1
            self.short_cls_use[SHAPES[s].cls] += short
            self.short_shape_use[s] += short
            self.cls_use[SHAPES[s].cls] += 1


def _pick_kind(rng: random.Random, n: int, done: int, safe: int, multi: int, sf: float, mf: float) -> str:
    remaining = n - done
    if sf >= 1.0:
        return "safe_only"
    kinds = (
        ["single", "split", "multi", "full", "safe_only"] if sf >= 0.2 else ["single_v", "split_v", "multi_v"]
    )
    if sf > 0 and sf < 0.2:
        kinds += ["single", "split", "full", "safe_only"]
    if mf <= 0:
        kinds = [k for k in kinds if _kind_stats(k)[2] == 0]
    fits = [k for k in kinds if _kind_stats(k)[0] <= remaining] or ["safe_only" if sf > 0 else "single_v"]

    def err(k: str) -> float:
        r, s, m = _kind_stats(k)
        total = done + r
        return (safe + s - sf * total) ** 2 + (multi + m - mf * total) ** 2

    best = min(err(k) for k in fits)
    return rng.choice([k for k in fits if err(k) <= best + 0.5])


def generate_corpus(
    n_contracts: int,
    seed: int = 0,
    families: Sequence[str] | None = None,
    compiler_versions: Sequence[str] | None = None,
    safe_fraction: float = 0.4,
    multi_label_fraction: float = 0.15,
    short_fraction: float = 0.0,
    legacy_fraction: float = 0.0,
) -> list[GeneratedContract]:
    """Exactly ``n_contracts`` labelled contracts in skeleton groups, deterministic for ``seed``.

    About ``short_fraction`` of the records are short single-purpose contracts (where the family has one);
    ``legacy_fraction`` of the 0.4 skeletons use pre-0.4.22 idioms. Both 0 (the defaults) reproduce the
    corpus of generator 2.0.0."""
    families = list(families or taxonomy.FAMILIES)
    versions = list(compiler_versions or COMPILER_VERSIONS)
    for f in families:
        _check(f, COMPILER_VERSIONS[0], [])
    for v in versions:
        _check(taxonomy.FAMILIES[0], v, [])
    fractions = (safe_fraction, multi_label_fraction, short_fraction, legacy_fraction)
    if not all(0.0 <= f <= 1.0 for f in fractions):
        raise ValueError(
            "safe_fraction, multi_label_fraction, short_fraction and legacy_fraction must lie in [0, 1]"
        )
    rng = random.Random(seed)
    sched = _Scheduler(rng, families, versions)
    out: list[GeneratedContract] = []
    safe = multi = n_short = 0
    g = 0
    while len(out) < n_contracts:
        # a share of the records (no draw: with short_fraction 0 the corpus is the one generator 2.0.0 made)
        short = bool(sched.short_tuples) and n_short < short_fraction * (len(out) + 1)
        if short:  # one slot: a flawed contract and its twin (long skeletons keep the safe share on target)
            twin = safe_fraction >= 0.2 and n_contracts - len(out) >= 2
            kind = "safe_only" if safe_fraction >= 1.0 else ("single" if twin else "single_v")
        else:
            kind = _pick_kind(rng, n_contracts, len(out), safe, multi, safe_fraction, multi_label_fraction)
        slots: list[str] = []
        if short and kind == "safe_only":
            fe = sched._least(sched.short_fe, lambda x: sched.fe_use[x])
            fixed = sched.short_extra(fe)
        elif short:
            first = sched.short_primary()
            fe, slots, fixed = first[:2], [first[2]], []
        elif kind == "safe_only":
            fe = sched._least(sched.fe, lambda x: sched.fe_use[x])
            fixed = sched.extras(fe, [], rng.choice((0, 1, 2)))
        else:
            first = sched.primary()
            fe, slots = first[:2], [first[2]]
            if kind not in ("single", "single_v"):
                second = sched.partner(first)
                if second is None:
                    kind = "single" if kind in ("split", "multi", "full") else "single_v"
                    if _kind_stats(kind)[0] > n_contracts - len(out):
                        kind = "single_v"
                else:
                    slots.append(second[2])
            fixed = sched.extras(fe, slots, 1) if rng.random() < 0.3 else []
        variants = [frozenset(slots[i] for i in v) for v in _KINDS[kind]]
        sched.count(fe, [s for v in variants for s in v], len(variants), short)
        ids = [f"gen-{seed}-{len(out) + i}" for i in range(len(variants))]
        legacy = fe[1].startswith("0.4.") and random.Random(f"{seed}/{g}/legacy").random() < legacy_fraction
        skel = Skeleton(f"{seed}/{g}", fe[0], fe[1], tuple(slots), tuple(fixed), short, legacy)
        out.extend(render_group(skel, variants, ids, f"gen-{seed}-g{g}"))
        n_short += len(variants) if short else 0
        safe += sum(not v for v in variants)
        multi += sum(len(v) > 1 for v in variants)
        g += 1
    return out


__all__ = [
    "COMPILER_VERSIONS",
    "GENERATOR_VERSION",
    "GeneratedContract",
    "SHAPES",
    "Shape",
    "Skeleton",
    "compatible",
    "coverage",
    "coverage_markdown",
    "generate_corpus",
    "generate_group",
    "generate_one",
    "render_group",
]


# --- coverage report ----------------------------------------------------------------------------------------
def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def coverage_markdown(corpus: Sequence[GeneratedContract] | None = None) -> str:
    """Markdown tables of what the generator can produce (family × era × class × shape) and, given a
    generated corpus, how many records of each family, era and class it holds."""
    cov = coverage()
    fams, eras = list(taxonomy.FAMILIES), list(COMPILER_VERSIONS)
    classes = [c for c in taxonomy.VULNERABILITY_CLASSES if any(t[2] == c for t in cov)]
    out = [
        "# Generator coverage",
        "",
        f"Generator {GENERATOR_VERSION}: {len(fams)} families, {len(eras)} compiler eras, "
        f"{len(classes)} classes, "
        f"{len(SHAPES)} shapes, {len(cov)} (family, era, shape) combinations, each with a safe twin.",
        "",
        "## Shapes × families",
        "",
        "A cell lists the eras a shape renders in for that family (`all` = every era, `-` = does not fit).",
        "",
        "| class | shape | " + " | ".join(fams) + " |",
        "|---|---|" + "---|" * len(fams),
    ]
    have = {(f, v, s) for f, v, _, s in cov}
    for sid, shape in sorted(SHAPES.items(), key=lambda kv: (classes.index(kv[1].cls), kv[0])):
        cells = []
        for f in fams:
            vs = [v for v in eras if (f, v, sid) in have]
            cells.append("all" if len(vs) == len(eras) else (", ".join(_short(v) for v in vs) or "-"))
        out.append(f"| {shape.cls} | {shape.name} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Classes × eras",
        "",
        "Cell: shapes / families / (family, shape) pairs available for the class in that era.",
        "",
        "| class | " + " | ".join(eras) + " |",
        "|---|" + "---|" * len(eras),
    ]
    for cls in classes:
        cells = []
        for v in eras:
            rows = [(f, s) for f, vv, c, s in cov if c == cls and vv == v]
            cells.append(f"{len({s for _, s in rows})} / {len({f for f, _ in rows})} / {len(rows)}")
        out.append(f"| {cls} | " + " | ".join(cells) + " |")
    out += [
        "",
        "## Classes × families",
        "",
        "Cell: number of shapes of the class the family can carry (in at least one era).",
        "",
        "| class | " + " | ".join(fams) + " |",
        "|---|" + "---|" * len(fams),
    ]
    for cls in classes:
        cells = [str(len({s for f2, _, c, s in cov if f2 == f and c == cls})) for f in fams]
        out.append(f"| {cls} | " + " | ".join(cells) + " |")
    if corpus:
        out += _corpus_tables(corpus, fams, eras, classes)
    return "\n".join(out) + "\n"


def _corpus_tables(
    corpus: Sequence[GeneratedContract], fams: list[str], eras: list[str], classes: list[str]
) -> list[str]:

    sizes = [c.source_code.count("\n") for c in corpus]
    shapes = Counter(s for c in corpus for s in c.shapes)
    out = [
        "",
        f"## The corpus: {len(corpus)} contracts",
        "",
        f"Safe: {sum(not c.labels for c in corpus)}, multi-label: {sum(len(c.labels) > 1 for c in corpus)}, "
        f"groups: {len({c.group for c in corpus})}, shapes used: {len(shapes)} of {len(SHAPES)}. "
        f"Lines per contract: mean {statistics.mean(sizes):.0f}, median {statistics.median(sizes):.0f}, "
        f"min {min(sizes)}, max {max(sizes)}.",
        "",
        "Records per family and label (`safe` = no label; a multi-label record counts once per label).",
        "",
        "| family | " + " | ".join([*classes, "safe", "total"]) + " |",
        "|---|" + "---|" * (len(classes) + 2),
    ]
    for f in fams:
        recs = [c for c in corpus if c.family == f]
        per = Counter(lbl for c in recs for lbl in c.labels)
        cells = [str(per[c]) for c in classes] + [str(sum(not c.labels for c in recs)), str(len(recs))]
        out.append(f"| {f} | " + " | ".join(cells) + " |")
    out += ["", "Records per era and label.", "", "| era | " + " | ".join([*classes, "safe", "total"]) + " |"]
    out.append("|---|" + "---|" * (len(classes) + 2))
    for v in eras:
        recs = [c for c in corpus if c.compiler_version == v]
        per = Counter(lbl for c in recs for lbl in c.labels)
        cells = [str(per[c]) for c in classes] + [str(sum(not c.labels for c in recs)), str(len(recs))]
        out.append(f"| {v} | " + " | ".join(cells) + " |")
    return out

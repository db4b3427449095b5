"""Fresh identifiers and the ``rename`` transform."""

from __future__ import annotations

import random
import re

from training_pipeline.corpus.augment.scope import RESERVED, Scan
from training_pipeline.utils.solidity import Tok

_NOUNS = (
    "value amount count index item entry result data flag ref slot key total sum store cache mark "
    "point level state record target holder account balance limit rate share score round stake credit "
    "unit size base"
).split()
_ADJS = "tmp new cur next prev local my main old raw net last first inner aux own the this one".split()
_VERBS = "handle process compute apply update do run perform exec settle sync load make".split()
_EVENT_TAILS = "Updated Changed Logged Recorded Noted Set Done Made".split()
_MODIFIER_HEADS = "guard when require ensure gate with".split()


def _fresh_name(kind: str, rng: random.Random, taken: set[str]) -> str:
    def cap(w: str) -> str:
        return w[:1].upper() + w[1:]

    for attempt in range(100):
        noun = rng.choice(_NOUNS)
        if kind in ("function",):
            name = rng.choice(_VERBS) + cap(noun)
            name = ("_" + name) if rng.random() < 0.3 else name
        elif kind == "modifier":
            name = rng.choice(_MODIFIER_HEADS) + cap(noun)
        elif kind == "event":
            name = cap(noun) + rng.choice(_EVENT_TAILS)
        else:
            name = rng.choice(_ADJS) + cap(noun)
            if kind == "param" and rng.random() < 0.3:
                name = "_" + name
            elif kind == "var" and rng.random() < 0.2:
                name = "s_" + name
        if attempt > 20:
            name += str(rng.randrange(10, 100))
        if name not in taken and name not in RESERVED:
            taken.add(name)
            return name
    raise RuntimeError("no fresh identifier found")  # pragma: no cover - 100 tries over ~600 names


def rename(toks: list[Tok], rng: random.Random, info: Scan) -> dict[str, str]:
    """Rename eligible identifiers everywhere in the file; returns old → new."""
    if not info.renamable or not info.eligible:
        return {}
    taken = set(info.all_idents)
    names = sorted(info.eligible)
    chosen = [n for n in names if rng.random() < 0.8] or names[:1]
    mapping = {n: _fresh_name(info.eligible[n], rng, taken) for n in chosen}
    for t in toks:
        if t.kind == "ident" and t.text in mapping:
            t.text = mapping[t.text]
        elif t.kind in ("comment", "block") and "@" in t.text:  # NatSpec names parameters: keep it true
            t.text = _NATSPEC_NAME.sub(lambda m: m.group(1) + mapping.get(m.group(2), m.group(2)), t.text)
    return mapping


_NATSPEC_NAME = re.compile(r"(@(?:param|return)\s+)([A-Za-z_$][\w$]*)")

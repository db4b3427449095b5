"""Code model the templates write into, and the per-era Solidity idioms they write with.

A template writes ``Line``s (text, nesting depth, label tags) into members; ``Ctx`` holds the skeleton's names
and style choices and renders each idiom for its compiler era (0.4 / 0.5 / 0.8); ``assemble`` lays the members
out, adds comments and formatting, and turns tags into 1-based ``vulnerable_lines``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass

from training_pipeline.corpus.templates import names as N
from training_pipeline.corpus.templates import texture as T  # a module import: texture imports this one too


@dataclass(frozen=True)
class Line:
    """One source line: text without indentation, nesting depth, the labels it carries."""

    text: str
    depth: int
    tags: tuple[str, ...] = ()
    decl: bool = False  # a declaration header: the brace style decides where its "{" goes


class W:
    """Writes one member's lines; ``open``/``close`` track nesting, tags mark labelled lines."""

    def __init__(self) -> None:
        self.lines: list[Line] = []
        self.depth = 0

    def __call__(self, text: str, *tags: str) -> W:
        self.lines.append(Line(text, self.depth, tuple(t for t in tags if t)))
        return self

    def open(self, text: str, *tags: str) -> W:
        """A block opener written as is (``if (x) {``)."""
        self(text, *tags)
        self.depth += 1
        return self

    def decl(self, header: str, *tags: str) -> W:
        """A declaration header (contract, function, modifier); the formatter adds its brace."""
        self.lines.append(Line(header, self.depth, tuple(t for t in tags if t), decl=True))
        self.depth += 1
        return self

    def mid(self, text: str) -> W:
        """A line at the enclosing depth inside a block, e.g. ``} else {``."""
        self.lines.append(Line(text, self.depth - 1))
        return self

    def close(self, text: str = "}") -> W:
        self.depth -= 1
        self.lines.append(Line(text, self.depth))
        return self


@dataclass
class Member:
    """A contract member: its kind decides the section it goes to, its key the comment and order draws."""

    kind: str  # using | struct | state | event | error | modifier | ctor | fallback | func | view
    key: str
    lines: list[Line]
    doc: str | None = None


_CMP = (" == ", " != ", " >= ", " <= ", " > ", " < ")
_NEG = {" == ": " != ", " != ": " == ", " >= ": " < ", " <= ": " > ", " > ": " <= ", " < ": " >= "}
_SIMPLE = re.compile(r"^[\w.\[\]()]+$")


def negate(cond: str) -> str:
    """Logical negation of a simple condition: one comparison, a ``!x`` or a plain operand."""
    hits = [op for op in _CMP if op in cond]
    if len(hits) == 1 and cond.count(hits[0]) == 1 and "&&" not in cond and "||" not in cond:
        if hits[0] == " > " and cond.endswith(" > 0"):  # unsigned: nothing is below zero
            return cond[: -len(" > 0")] + " == 0"
        return cond.replace(hits[0], _NEG[hits[0]])
    if cond.startswith("!") and _SIMPLE.match(cond[1:]):
        return cond[1:]
    if _SIMPLE.match(cond):
        return "!" + cond
    return f"!({cond})"


class Ctx:
    """One skeleton's names and style, shared by its variants; renders every era-specific idiom."""

    def __init__(self, key: str, family: str, version: str, legacy: bool = False) -> None:
        self.key, self.family, self.version = key, family, version
        self.major = int(version.split(".")[1])
        r = self.rng("style")
        self.n = N.pick_names(family, self.rng("names"))
        self.indent = r.choices(("    ", "  "), (3, 1))[0]
        self.allman = r.random() < 0.2
        self.u = r.choice(("uint256", "uint"))
        self.safemath = self.major < 8
        self.now = {
            4: r.choices(("now", "block.timestamp"), (4, 1))[0],
            5: r.choice(("now", "block.timestamp")),
            6: r.choices(("now", "block.timestamp"), (1, 2))[0],
        }.get(self.major, "block.timestamp")
        self.req_style = r.choice(
            {4: ("plain", "msg", "throw"), 8: ("msg", "custom")}.get(self.major, ("plain", "msg"))
        )
        self.emit_kw = self.major > 4 or r.random() < 0.75
        self.ctor_named = self.major == 4 and r.random() < 0.4
        self.view_kw = "constant" if self.major == 4 and r.random() < 0.35 else "view"
        self.omit_public = self.major == 4 and r.random() < 0.15
        self.hash_style = r.choice(("packed", "multi", "sha3")) if self.major == 4 else "packed"
        self.old_balance = self.major == 4 and r.random() < 0.3
        self.spdx = (
            r.choice(("MIT", "GPL-3.0", "UNLICENSED", "Apache-2.0", "MIT", "AGPL-3.0"))
            if self.major >= 6 or r.random() < 0.2
            else ""
        )
        self.new_call = self.major >= 7 or (self.major == 6 and r.random() < 0.6)  # call{value: x}
        self.loop_style = "unchecked_inc" if self.major >= 8 and r.random() < 0.4 else "plain"
        self.override_itf = self.major in (6, 7) or (self.major == 8 and r.random() < 0.5)
        # texture: how big and how documented this skeleton's file is (variant-stable)
        self.size = r.choices(("small", "medium", "large", "xl"), (2, 4, 4, 2))[0]
        self.doc_density = r.choice((0.15, 0.35, 0.6, 0.85))
        self.call_assign = r.random() < 0.5  # unchecked low-level calls written as `(bool ok, ) = ...;`
        self.inline_unchecked = r.random() < 0.5
        self.errors: dict[str, str] = {}  # custom errors used by any variant of the skeleton (0.8)
        self.legacy = legacy and self.major == 4
        self.use_var = False  # locals declared with `var` (legacy 0.4 only)
        self.bare_fallback = False  # a non-payable `function () { throw; }` where nothing pays in (legacy)
        if self.legacy:
            self._legacy_style()

    def _legacy_style(self) -> None:
        """Pre-0.4.22 habits, drawn from their own stream so a non-legacy skeleton renders as before: throw,
        ``constant``, ``sha3``, contract-named constructors, events without ``emit``, ``this.balance``."""
        r = self.rng("legacy")
        self.req_style = r.choices(("throw", "plain"), (3, 2))[0]
        self.view_kw = "constant" if r.random() < 0.75 else "view"
        self.hash_style = r.choices(("sha3", "multi"), (3, 1))[0]
        self.ctor_named = r.random() < 0.85
        self.emit_kw = r.random() < 0.2
        self.omit_public = r.random() < 0.5
        self.old_balance = r.random() < 0.6
        self.spdx = ""
        self.use_var = r.random() < 0.6
        self.bare_fallback = r.random() < 0.8

    # --- randomness and names -------------------------------------------------------------------------
    def rng(self, what: str) -> random.Random:
        """A generator keyed by the skeleton and ``what``: identical across a skeleton's variants."""
        return random.Random(f"{self.key}/{what}")

    def draw(self, what: str) -> float:
        """A uniform [0, 1) number keyed by the skeleton and ``what`` (cheaper than a seeded generator)."""
        digest = hashlib.blake2b(f"{self.key}/{what}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def choose(self, what: str, options: tuple | list):
        """A variant-stable choice among options."""
        return options[int(self.draw(what) * len(options))]

    def __getitem__(self, role: str) -> str:
        return self.n[role]

    # --- declarations ---------------------------------------------------------------------------------
    @property
    def pay_t(self) -> str:
        """The type of an address that receives ether."""
        return "address" if self.major == 4 else "address payable"

    @property
    def sender_pay(self) -> str:
        """``msg.sender`` as a payable address."""
        return "payable(msg.sender)" if self.major >= 8 else "msg.sender"

    @property
    def mem(self) -> str:
        """Data location suffix for reference-type parameters of public functions."""
        return "" if self.major == 4 else " memory"

    @property
    def this_balance(self) -> str:
        return "this.balance" if self.old_balance else "address(this).balance"

    @property
    def zero_addr(self) -> str:
        return "address(0)"

    def func(
        self,
        name: str,
        params: str = "",
        vis: str = "public",
        mut: str = "",
        mods: Iterable[str] = (),
        returns: str = "",
    ) -> str:
        """A function header; 0.4 code sometimes leaves ``public`` implicit."""
        if vis == "public" and self.omit_public and mut not in ("view", "pure"):
            vis = ""
        if mut == "view":
            mut = self.view_kw
        parts = [f"function {name}({params})", vis, mut, *mods]
        if returns:
            parts.append(f"returns ({returns})")
        return " ".join(p for p in parts if p)

    def ctor(self, params: str = "", contract: str | None = None, named: bool | None = None) -> str:
        """A constructor header in the era's spelling (0.4: contract-named function or ``constructor``)."""
        named = self.ctor_named if named is None else named
        if self.major == 4:
            return (
                f"function {contract or self['contract']}({params}) public"
                if named
                else f"constructor({params}) public"
            )
        return f"constructor({params}) public" if self.major in (5, 6) else f"constructor({params})"

    def fallback(self) -> str:
        if self.legacy:
            return "function () payable" if self.omit_public else "function () public payable"
        return "receive() external payable" if self.major >= 6 else "function () external payable"

    def local_t(self, typ: str) -> str:
        """The type a local is declared with: ``var`` in legacy 0.4 code, else ``typ``."""
        return "var" if self.use_var else typ

    @property
    def old_units(self) -> bool:
        """``finney`` / ``szabo`` exist before 0.7."""
        return self.major < 7

    @property
    def ovr(self) -> str:
        """What a function implementing an interface function adds to its header (0.6 and 0.7 need it)."""
        return "override" if self.override_itf else ""

    def loop(self, w: W, i: str, bound: str, *tags: str, start: str = "0") -> None:
        """Open ``for (i = start; i < bound; ...)``; 0.8 code may increment in an ``unchecked`` block."""
        if self.loop_style == "unchecked_inc":
            init = (
                f"{self.u} {i}"
                if start == "0" and self.draw("loop-init/" + i) < 0.5
                else f"{self.u} {i} = {start}"
            )
            w.open(f"for ({init}; {i} < {bound}; ) {{", *tags)
        else:
            w.open(f"for ({self.u} {i} = {start}; {i} < {bound}; {i}++) {{", *tags)

    def end_loop(self, w: W, i: str) -> None:
        if self.loop_style == "unchecked_inc":
            w(f"unchecked {{ ++{i}; }}")
        w.close()

    def state(self, typ: str, name: str, vis: str = "public", init: str = "", immutable: bool = False) -> str:
        mod = " immutable" if immutable and self.major >= 8 else ""
        vis = f" {vis}" if vis else ""
        return f"{typ}{vis}{mod} {name}" + (f" = {init};" if init else ";")

    # --- statements -----------------------------------------------------------------------------------
    def emit(self, event: str, args: str) -> str:
        return f"{'emit ' if self.emit_kw else ''}{event}({args});"

    def error(self, role: str, params: str = "") -> str:
        name = self[role]
        self.errors[name] = f"error {name}({params});"
        return name

    def req(self, w: W, ok: str, msg: str, err: str, *tags: str) -> None:
        """``require``-like guard in the skeleton's style: require, require+message, throw, custom error."""
        style = self.req_style
        if style == "plain":
            w(f"require({ok});", *tags)
        elif style == "msg":
            w(f'require({ok}, "{msg}");', *tags)
        elif style == "throw":
            w(f"if ({negate(ok)}) throw;", *tags)
        else:
            w(f"if ({negate(ok)}) revert {self.error(err)}();", *tags)

    def call_expr(self, target: str, amount: str, data: str = "") -> str:
        if self.major == 4:
            return f"{target}.call.value({amount})({data})"
        data = data or '""'
        if not self.new_call:
            return f"{target}.call.value({amount})({data})"
        return f"{target}.call{{value: {amount}}}({data})"

    def checked_call(self, w: W, target: str, amount: str, *tags: str, data: str = "") -> None:
        """A low-level call whose failure reverts; the tags go on the call line."""
        call, ok = self.call_expr(target, amount, data), self["ok_var"]
        if self.major == 4:
            if self.req_style == "throw":
                w(f"if (!{call}) throw;", *tags)
            elif self.req_style == "msg":
                w(f'require({call}, "transfer failed");', *tags)
            else:
                w(f"require({call});", *tags)
            return
        w(f"(bool {ok}, ) = {call};", *tags)
        self.req(w, ok, "transfer failed", "err_transfer")

    def bare_call(self, w: W, target: str, amount: str, *tags: str, data: str = "") -> None:
        """A low-level call whose result nobody reads."""
        call = self.call_expr(target, amount, data)
        if self.major > 4 and self.call_assign:
            w(f"(bool {self['ok_var']}, ) = {call};", *tags)
        else:
            w(f"{call};", *tags)

    def checked_send(self, w: W, target: str, amount: str, *tags: str) -> None:
        self.req(w, f"{target}.send({amount})", "send failed", "err_transfer", *tags)

    def hash(self, *args: str) -> str:
        """keccak256 over packed arguments in the era's spelling."""
        if self.hash_style == "multi":
            return f"keccak256({', '.join(args)})"
        if self.hash_style == "sha3":
            return f"sha3({', '.join(args)})"
        return f"keccak256(abi.encodePacked({', '.join(args)}))"

    # --- arithmetic -----------------------------------------------------------------------------------
    def add(self, a: str, b: str) -> str:
        return f"{a}.add({b})" if self.safemath else f"{a} + {b}"

    def sub(self, a: str, b: str) -> str:
        return f"{a}.sub({b})" if self.safemath else f"{a} - {b}"

    def mul(self, a: str, b: str) -> str:
        return f"{a}.mul({b})" if self.safemath else f"{a} * {b}"

    def inc(self, w: W, lhs: str, rhs: str, *tags: str) -> None:
        w(f"{lhs} = {lhs}.add({rhs});" if self.safemath else f"{lhs} += {rhs};", *tags)

    def dec(self, w: W, lhs: str, rhs: str, *tags: str) -> None:
        w(f"{lhs} = {lhs}.sub({rhs});" if self.safemath else f"{lhs} -= {rhs};", *tags)

    def raw(self, w: W, stmts: list[str], *tags: str) -> None:
        """Statements with wrapping arithmetic: plain before 0.8, inside ``unchecked`` from 0.8 on."""
        if self.major < 8:
            for s in stmts:
                w(s, *tags)
        elif self.inline_unchecked and len(stmts) == 1:
            w(f"unchecked {{ {stmts[0]} }}", *tags)
        else:
            w.open("unchecked {")
            for s in stmts:
                w(s, *tags)
            w.close()


# --- layout -----------------------------------------------------------------------------------------------
SAFEMATH_FUNCS = (
    (
        "mul",
        ["if (a == 0) {", "    return 0;", "}", "uint256 c = a * b;", "{chk}(c / a == b);", "return c;"],
        "Multiplies two numbers.",
    ),
    ("div", ["uint256 c = a / b;", "return c;"], "Integer division of two numbers, truncating the quotient."),
    ("sub", ["{chk}(b <= a);", "return a - b;"], "Subtracts two numbers."),
    ("add", ["uint256 c = a + b;", "{chk}(c >= a);", "return c;"], "Adds two numbers."),
)


def safemath_library(ctx: Ctx) -> list[Line]:
    """The classic SafeMath library, in the era's style."""
    r = ctx.rng("safemath")
    chk = "assert" if ctx.major == 4 and r.random() < 0.5 else "require"
    docs = r.random() < 0.6
    w = W()
    if r.random() < 0.5:
        w("/**")
        w(" * @title SafeMath")
        w(" * @dev Math operations that revert on error")
        w(" */")
    w.decl("library SafeMath")
    for i, (name, body, doc) in enumerate(SAFEMATH_FUNCS):
        if i:
            w("")
        if docs:
            w(f"/// @dev {doc}")
        w.decl(f"function {name}(uint256 a, uint256 b) internal pure returns (uint256)")
        for stmt in body:
            depth = 1 if stmt.startswith("    ") else 0
            w.depth += depth
            w(stmt.strip().replace("{chk}", chk))
            w.depth -= depth
        w.close()
    w.close()
    return w.lines


SECTION_LAYOUTS = (
    ("using", "struct", "state", "error", "event", "modifier", "ctor", "fallback", "func", "view"),
    ("using", "struct", "event", "error", "state", "modifier", "ctor", "func", "fallback", "view"),
    ("using", "state", "struct", "event", "error", "ctor", "modifier", "fallback", "func", "view"),
    ("using", "event", "state", "struct", "error", "modifier", "ctor", "view", "func", "fallback"),
)


def _comment(ctx: Ctx, m: Member) -> list[str]:
    if not m.doc or m.doc not in N.DOCS:
        return []
    p = ctx.draw("doc/" + m.key)
    if p >= (0.2 if m.kind in ("state", "event", "struct") else max(0.7, ctx.doc_density)):
        return []
    text = ctx.choose("doc-text/" + m.key, N.DOCS[m.doc])
    if "{" in text:
        text = re.sub(r"\{(\w+)\}", lambda mt: ctx.n.get(mt.group(1), mt.group(1)), text)
    if m.kind in ("state", "event", "struct"):
        return [f"// {text}"]
    if p < ctx.doc_density * 0.8:
        return T.natspec(ctx, m, text)
    if p < 0.4:
        return [f"/// @notice {text}"] if p < 0.28 else [f"/// @dev {text}"]
    if p < 0.55:
        return ["/**", f" * @notice {text}", " */"]
    if p < 0.7:
        return [f"// {text}"]
    return []


BODY_COMMENTS = {
    "emit ": ("// notify listeners", "// log it", "// let off-chain indexers know", "// record the event"),
    "for (": ("// walk the list", "// one pass over every entry", "// go through all of them"),
}


def _body_comment(ctx: Ctx, m: Member) -> list[Line]:
    """Now and then an ordinary comment above an event emission or a loop (same place in every variant)."""
    if m.kind not in ("func", "ctor") or ctx.draw("body-comment/" + m.key) >= 0.12:
        return m.lines
    for i, ln in enumerate(m.lines):
        for start, phrases in BODY_COMMENTS.items():
            if ln.text.startswith(start) or (
                start == "emit " and not ctx.emit_kw and ln.text.endswith(");") and ln.text[:1].isupper()
            ):
                text = ctx.choose("body-comment-text/" + m.key, phrases)
                return [*m.lines[:i], Line(text, ln.depth), *m.lines[i:]]
    return m.lines


def _format(ctx: Ctx, lines: list[Line], base_depth: int, out: list[str], tags: dict[str, list[int]]) -> None:
    for ln in lines:
        pad = ctx.indent * (ln.depth + base_depth)
        if ln.tags:
            for t in ln.tags:
                tags.setdefault(t, []).append(len(out) + 1)
        if ln.decl:
            if ctx.allman:
                out.append(pad + ln.text)
                out.append(pad + "{")
            else:
                out.append(f"{pad}{ln.text} {{")
        else:
            out.append(pad + ln.text if ln.text else "")


# Old carets (the bundled 0.4.26 satisfies each) and the exact release: what pre-0.4.22 files declare.
LEGACY_PRAGMAS = (
    "^0.4.0",
    "^0.4.4",
    "^0.4.8",
    "^0.4.11",
    "^0.4.13",
    "^0.4.16",
    "^0.4.18",
    "^0.4.19",
    "0.4.26",
)


def pragmas(ctx: Ctx) -> tuple[str, ...]:
    """The ``pragma solidity`` constraints a file of this era may declare (all satisfied by the bundled
    compiler of the era)."""
    if ctx.legacy:
        return LEGACY_PRAGMAS if ctx.ctor_named else ("^0.4.22", "^0.4.24", "0.4.26")
    return {
        4: ("^0.4.24", "^0.4.23", "0.4.26", ">=0.4.22 <0.6.0", "^0.4.25")
        if not ctx.ctor_named
        else ("^0.4.18", "^0.4.21", "^0.4.24"),
        5: ("^0.5.0", "^0.5.16", "0.5.17", ">=0.5.0 <0.6.0", "^0.5.12"),
        6: ("^0.6.2", "^0.6.12", "0.6.12", ">=0.6.2 <0.7.0", "^0.6.6"),
        7: ("^0.7.0", "^0.7.6", "0.7.6", ">=0.7.0 <0.8.0", "^0.7.4"),
        8: ("^0.8.20", "^0.8.19", "0.8.26", ">=0.8.19 <0.9.0", "^0.8.24"),
    }[ctx.major]


def assemble_compact(ctx: Ctx, members: list[Member]) -> tuple[str, dict[str, list[int]]]:
    """Lay out a short single-purpose file: pragma, SafeMath only when the contract uses it, one contract."""
    r = ctx.rng("layout")
    out: list[str] = [f"// SPDX-License-Identifier: {ctx.spdx}"] if ctx.spdx else []
    tags: dict[str, list[int]] = {}
    out += [f"pragma solidity {r.choice(pragmas(ctx))};", ""]
    if ctx.safemath:
        _format(ctx, safemath_library(ctx), 0, out, tags)
        out.append("")
        members = [Member("using", "using", [Line(f"using SafeMath for {ctx.u};", 0)]), *members]
    if (
        r.random() < 0.4 and ctx.family != "multisig_wallet"
    ):  # a short wallet has one owner: no multisig title
        out.append("// " + r.choice(N.CONTRACT_TITLES[ctx.family]).replace("{name}", ctx["contract"]))
    _contract(ctx, f"contract {ctx['contract']}", members, r.choice(SECTION_LAYOUTS), r, out, tags, True)
    return "\n".join(out) + "\n", {k: sorted(set(v)) for k, v in sorted(tags.items())}


def assemble(
    ctx: Ctx,
    members: list[Member],
    base: list[Member] | None,
    interfaces: list[list[Line]],
    parents: Iterable[str] = (),
) -> tuple[str, dict[str, list[int]]]:
    """Lay out one contract file: header, SafeMath, interfaces, optional base contract, the main contract."""
    r = ctx.rng("layout")
    out: list[str] = []
    tags: dict[str, list[int]] = {}
    if ctx.spdx:
        out.append(f"// SPDX-License-Identifier: {ctx.spdx}")
    out += T.file_header(ctx)
    out.append(f"pragma solidity {r.choice(pragmas(ctx))};")
    out.append("")
    if ctx.safemath:
        _format(ctx, safemath_library(ctx), 0, out, tags)
        out.append("")
    calls_token = any(ln.text.find(ctx["itf_token"] + "(") >= 0 for m in members for ln in m.lines)
    for itf in [*T.extra_blocks(ctx, calls_token), *interfaces]:
        _format(ctx, itf, 0, out, tags)
        out.append("")
    layout = r.choice(SECTION_LAYOUTS)
    if base is not None:
        _contract(ctx, f"contract {ctx['base']}", base, layout, r, out, tags, True)
        out.append("")
    title = r.choice(N.CONTRACT_TITLES[ctx.family]).replace("{name}", ctx["contract"])
    style = r.random()
    if style < 0.35:
        out += ["/**", f" * @title {ctx['contract']}", f" * @notice {title}", " */"]
    elif style < 0.55:
        out.append(f"/// @title {title}")
    elif style < 0.7:
        out.append(f"// {title}")
    bases = ([ctx["base"]] if base is not None else []) + list(parents)
    head = f"contract {ctx['contract']}" + (f" is {', '.join(bases)}" if bases else "")
    if ctx.safemath:
        members = [Member("using", "using", [Line(f"using SafeMath for {ctx.u};", 0)]), *members]
    _contract(ctx, head, members, layout, r, out, tags, base is None)
    return "\n".join(out) + "\n", {k: sorted(set(v)) for k, v in sorted(tags.items())}


def _contract(
    ctx: Ctx,
    head: str,
    members: list[Member],
    layout: tuple[str, ...],
    r: random.Random,
    out: list[str],
    tags: dict[str, list[int]],
    with_errors: bool,
) -> None:
    _format(ctx, [Line(head, 0, decl=True)], 0, out, tags)
    if ctx.errors and with_errors:  # custom errors go in the first contract so a base can use them too
        members = members + [Member("error", "err/" + n, [Line(d, 0)]) for n, d in sorted(ctx.errors.items())]
    sections: dict[str, list[Member]] = {}
    for m in members:
        sections.setdefault(m.kind, []).append(m)
    first = True
    for kind in layout:
        group = sections.get(kind, [])
        if kind in ("func", "view", "event", "modifier") and len(group) > 1:
            # a keyed draw per member: members shared by two variants keep their relative order
            group = sorted(group, key=lambda m: ctx.draw("order/" + m.key))
        compact = kind in ("state", "event", "error", "using")
        for i, m in enumerate(group):
            if not first and (not compact or i == 0):
                out.append("")
            first = False
            for c in _comment(ctx, m):
                out.append(ctx.indent + c)
            _format(ctx, _body_comment(ctx, m), 1, out, tags)
    out.append("}")

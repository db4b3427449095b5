"""Vulnerability shapes: the registry (class, site per family, labelled lines) and the shared site renderers.

Each shape is written once here and rendered for every era through ``Ctx``'s idioms; a family decides where
its site lives (which function, which names) and calls these renderers. A ``Slot`` is a shape placed in a
skeleton; ``slot.vuln`` says whether this variant carries the flaw or its repair. Lines tagged with the class
name become the record's ``vulnerable_lines``.

The family × era × shape table is printed by ``scripts/build_corpus.py --coverage`` (``docs/coverage.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from training_pipeline.corpus.templates.render import Ctx, Member, W

ERAS: tuple[str, ...] = ("0.4.26", "0.5.17", "0.6.12", "0.7.6", "0.8.26")
ALL_FAMILIES = (
    "erc20_token",
    "erc721_collection",
    "vault",
    "auction",
    "lottery",
    "crowdsale",
    "multisig_wallet",
    "staking_rewards",
    "simple_exchange",
    "upgradeable_proxy",
    "investment_scheme",
    "escrow",
)
LEDGER_FAMILIES = (
    "erc20_token",
    "vault",
    "auction",
    "lottery",
    "crowdsale",
    "staking_rewards",
    "simple_exchange",
    "investment_scheme",
    "escrow",
)
OWNED_FAMILIES = tuple(f for f in ALL_FAMILIES if f != "multisig_wallet")  # those with an owner block


@dataclass(frozen=True)
class Shape:
    """One way to write a flaw: its class, the site it rewrites in each family, what its labels point at."""

    id: str
    sites: dict[str, str]  # family -> site
    lines: str  # which lines ``vulnerable_lines`` names
    versions: tuple[str, ...] = ERAS
    adds_identifiers: bool = False  # the repair declares names the flawed variant lacks
    needs: tuple[str, ...] = ()  # sites that must be present (in their default form)
    excludes: tuple[str, ...] = ()  # sites that must not carry another shape
    short_only: bool = False  # rendered only in short single-purpose contracts (``templates/short.py``)

    @property
    def cls(self) -> str:
        return self.id.split("/")[0]

    @property
    def name(self) -> str:
        return self.id.split("/")[1]


def _on(families: tuple[str, ...], site: str) -> dict[str, str]:
    return {f: site for f in families}


_SHAPES = (
    # reentrancy
    Shape(
        "reentrancy/call_before_write",
        _on(LEDGER_FAMILIES, "withdraw"),
        "the external call, and the balance write after it",
    ),
    Shape(
        "reentrancy/withdraw_all",
        _on(LEDGER_FAMILIES, "withdraw"),
        "the external call, and the zeroing of the balance after it",
    ),
    Shape(
        "reentrancy/cross_function",
        {"vault": "withdraw"},
        "the external call, and the zeroing after it (the internal transfer reads the stale balance)",
        needs=("move",),
    ),
    Shape(
        "reentrancy/flag_after_call",
        {"auction": "finalize", "multisig_wallet": "withdraw", "escrow": "release"},
        "the external call, and the done-flag write after it",
    ),
    Shape(
        "reentrancy/call_then_debit",
        {"vault": "withdraw"},
        "the `if (call.value(...)())` line, and the balance debit inside it",
        versions=("0.4.26",),
        short_only=True,
    ),
    Shape(
        "reentrancy/call_value_all",
        {"vault": "withdraw"},
        "the call sending the whole stored balance, and the zeroing after it",
        versions=("0.4.26",),
        short_only=True,
    ),
    Shape(
        "reentrancy/token_callback",
        {"erc721_collection": "mint"},
        "the receiver hook call, and the mint-count write after it",
    ),
    # access control
    Shape(
        "access_control/missing_modifier",
        _on(ALL_FAMILIES, "privileged"),
        "the header of the privileged function that lacks the access modifier",
    ),
    Shape("access_control/tx_origin", _on(ALL_FAMILIES, "privileged"), "the tx.origin check"),
    Shape(
        "access_control/unprotected_selfdestruct",
        _on(ALL_FAMILIES, "kill"),
        "the header of the unguarded function and its selfdestruct line",
    ),
    Shape(
        "access_control/unprotected_initializer",
        _on(ALL_FAMILIES, "init"),
        "the header of the initializer that can be called again",
        excludes=("ctor",),
    ),
    Shape(
        "access_control/misnamed_constructor",
        _on(ALL_FAMILIES, "ctor"),
        "the header of the function meant as constructor",
        versions=("0.4.26",),
        excludes=("init",),
    ),
    # arithmetic
    Shape(
        "arithmetic/underflow_sub",
        {"erc20_token": "move", "vault": "move", "simple_exchange": "move"},
        "the wrapping subtraction",
    ),
    Shape(
        "arithmetic/overflow_mul",
        {"erc20_token": "price", "lottery": "price", "erc721_collection": "price", "crowdsale": "price"},
        "the wrapping multiplication",
    ),
    Shape(
        "arithmetic/overflow_add",
        {"vault": "limit", "multisig_wallet": "limit", "staking_rewards": "limit"},
        "the wrapping addition(s)",
    ),
    # unchecked low-level calls
    Shape(
        "unchecked_low_level_calls/ignored_call",
        _on((*LEDGER_FAMILIES, "multisig_wallet", "erc721_collection"), "withdraw"),
        "the low-level call whose result is dropped",
    ),
    Shape(
        "unchecked_low_level_calls/ignored_send",
        _on(LEDGER_FAMILIES, "withdraw"),
        "the send whose result is dropped",
    ),
    Shape(
        "unchecked_low_level_calls/ignored_delegatecall",
        {"upgradeable_proxy": "upgrade_call"},
        "the delegatecall whose result is dropped",
    ),
    Shape(
        "unchecked_low_level_calls/forward_call",
        {"multisig_wallet": "execute"},
        "the forwarded call.value(...)(data) whose result is dropped",
        versions=("0.4.26",),
        short_only=True,
    ),
    Shape(
        "unchecked_low_level_calls/signature_call",
        {"erc20_token": "approve_call"},
        "the call by function selector (bytes4 of a hash) whose result is dropped",
        versions=("0.4.26",),
        short_only=True,
    ),
    Shape(
        "unchecked_low_level_calls/payout_send",
        {"lottery": "payout", "crowdsale": "payout", "auction": "finalize"},
        "the send of the prize or proceeds whose result is dropped",
        versions=("0.4.26",),
        short_only=True,
    ),
    Shape(
        "unchecked_low_level_calls/delegate_forward",
        {"multisig_wallet": "delegate"},
        "the delegatecall forwarding data whose result is dropped",
        versions=("0.4.26",),
        short_only=True,
    ),
    # bad randomness
    *(
        Shape(
            f"bad_randomness/{name}",
            {
                "lottery": "draw",
                "crowdsale": "draw",
                "investment_scheme": "draw",
                "erc721_collection": "draw",
            },
            f"the line(s) deriving the outcome from {what}",
            adds_identifiers=True,
        )
        for name, what in (
            ("block_attributes", "block attributes"),
            ("blockhash", "a block hash"),
            ("private_seed", "a stored (readable) seed"),
        )
    ),
    # time manipulation
    Shape(
        "time_manipulation/short_window",
        {
            "erc20_token": "bonus",
            "auction": "bid",
            "lottery": "window",
            "investment_scheme": "window",
            "erc721_collection": "window",
        },
        "the timestamp comparison with a window of seconds",
    ),
    Shape(
        "time_manipulation/timestamp_modulo",
        {"erc20_token": "bonus", "lottery": "instant", "investment_scheme": "bonus"},
        "the condition on the timestamp's remainder",
    ),
    Shape(
        "time_manipulation/per_second_rate",
        {"crowdsale": "bonus", "investment_scheme": "interest"},
        "the amount computed from the timestamp at one-second granularity",
    ),
    # denial of service
    Shape(
        "denial_of_service/refund_push",
        {"auction": "bid", "investment_scheme": "payout"},
        "the push payment to the previous participant",
    ),
    Shape(
        "denial_of_service/loop_push",
        {
            "erc20_token": "distribute",
            "vault": "distribute",
            "lottery": "distribute",
            "crowdsale": "distribute",
            "staking_rewards": "distribute",
        },
        "the loop header and the push payment inside it",
    ),
    Shape(
        "denial_of_service/unbounded_loop",
        {"staking_rewards": "loop", "investment_scheme": "loop", "crowdsale": "loop"},
        "the header of the loop over a list anyone can grow without a cap",
        adds_identifiers=True,
    ),
    # front running
    Shape("front_running/approve_race", {"erc20_token": "approve"}, "the allowance overwrite"),
    Shape(
        "front_running/price_change",
        {"erc20_token": "price", "crowdsale": "price", "simple_exchange": "swap"},
        "the amount computed from a price that can move before the transaction lands",
        adds_identifiers=True,
    ),
    Shape(
        "front_running/public_answer",
        {"lottery": "answer"},
        "the comparison with the published answer hash",
        adds_identifiers=True,
    ),
    # other
    Shape(
        "other/locked_ether",
        {"erc721_collection": "withdraw", "crowdsale": "withdraw"},
        "the header of the payable function whose ether nothing can move out",
        adds_identifiers=True,
        excludes=("kill", "distribute"),
    ),
    Shape(
        "other/uninitialized_storage",
        {"multisig_wallet": "submit", "escrow": "create", "investment_scheme": "invest"},
        "the local struct declared without a data location (a storage pointer to slot 0)",
        versions=("0.4.26",),
    ),
    Shape(
        "other/shadowed_state",
        _on(OWNED_FAMILIES, "shadow"),
        "the state variable that redeclares the base contract's owner",
        versions=("0.4.26", "0.5.17"),
        excludes=("init", "ctor"),
    ),
    Shape(
        "other/erc20_no_return",
        {"erc20_token": "erc20_return"},
        "the header of the ERC20 function that returns nothing",
    ),
)
SHAPES: dict[str, Shape] = {s.id: s for s in _SHAPES}


@dataclass(frozen=True)
class Slot:
    """A shape placed in a skeleton; ``vuln`` selects the flawed or the repaired rendering."""

    shape: Shape
    vuln: bool

    @property
    def tag(self) -> str:
        return self.shape.cls if self.vuln else ""

    @property
    def name(self) -> str:
        return self.shape.name


@dataclass
class Plan:
    """Which sites carry which slots, and which optional features a skeleton has (variant-stable draws)."""

    ctx: Ctx
    slots: dict[str, Slot]
    extra: dict[str, bool] = field(default_factory=dict)

    def slot(self, site: str) -> Slot | None:
        return self.slots.get(site)

    def is_(self, site: str, shape_name: str) -> bool:
        s = self.slots.get(site)
        return s is not None and s.name == shape_name

    def has(self, site: str, p: float = 0.0) -> bool:
        """Site present: slotted, needed by a slotted shape, or drawn present with probability ``p`` (unless a
        slotted shape excludes it)."""
        if any(site in s.shape.excludes for s in self.slots.values()):
            return False
        if site in self.slots or any(site in s.shape.needs for s in self.slots.values()):
            return True
        if site not in self.extra:
            self.extra[site] = self.ctx.draw("present/" + site) < p
        return self.extra[site]


def pick(ctx: Ctx, what: str, options: tuple | list):
    """A variant-stable choice among options."""
    return ctx.choose("pick/" + what, options)


# --- access control -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Privileged:
    """A privileged function a family offers: its name role, params and body writer."""

    role: str
    doc: str
    params: Callable[[Ctx], str]
    body: Callable[[Ctx, W], None]


def privileged(
    ctx: Ctx, slot: Slot | None, p: Privileged, modifier: str, auth: Callable[[str], str]
) -> Member:
    """A privileged function: modifier-guarded, or (tx_origin shape) guarded inline by the caller check."""
    w = W()
    inline = (slot is not None and slot.name == "tx_origin") or (
        slot is None and pick(ctx, "inline", (0, 0, 1))
    )
    missing = slot is not None and slot.name == "missing_modifier" and slot.vuln
    mods = () if inline or missing else (modifier,)
    w.decl(ctx.func(ctx[p.role], p.params(ctx), mods=mods), slot.tag if missing else "")
    if inline:
        who = "tx.origin" if slot is not None and slot.vuln else "msg.sender"
        ctx.req(w, auth(who), "caller is not the owner", "err_auth", slot.tag if slot else "")
    p.body(ctx, w)
    w.close()
    return Member("func", "privileged", w.lines, p.doc)


def kill(ctx: Ctx, slot: Slot | None, modifier: str, params: str, target: str) -> Member:
    """A selfdestruct function; flawed when its access modifier is missing."""
    vuln = slot is not None and slot.vuln
    w = W()
    w.decl(ctx.func(ctx["fn_kill"], params, mods=() if vuln else (modifier,)), slot.tag if slot else "")
    op = (
        "suicide"
        if ctx.major == 4 and pick(ctx, "suicide", (0, 1, 1) if ctx.legacy else (0, 0, 1))
        else "selfdestruct"
    )
    w(f"{op}({target});", slot.tag if slot else "")
    w.close()
    return Member("func", "kill", w.lines, "kill")


def initializer(ctx: Ctx, slot: Slot | None, params: str, body: Callable[[W], None]) -> Member:
    """A one-time initializer; flawed when nothing stops a second call."""
    vuln = slot is not None and slot.vuln
    w = W()
    w.decl(ctx.func(ctx["fn_init"], params), slot.tag if slot else "")
    if not vuln:
        ctx.req(w, f"!{ctx['initialized']}", "already initialized", "err_state")
    w(f"{ctx['initialized']} = true;")
    body(w)
    w.close()
    return Member("func", "init", w.lines, "init")


def constructor(ctx: Ctx, slot: Slot | None, params: str, body: Callable[[W], None]) -> Member:
    """The constructor; the misnamed_constructor shape turns it into a public function (0.4)."""
    w = W()
    if slot is not None:
        name = ctx["contract"]
        if slot.vuln:
            name = name[0].lower() + name[1:]
        w.decl(f"function {name}({params}) public", slot.tag)
    else:
        w.decl(ctx.ctor(params))
    body(w)
    w.close()
    return Member("ctor", "ctor", w.lines, "ctor")


# --- ether out ----------------------------------------------------------------------------------------------
def ledger_withdraw(
    ctx: Ctx,
    slot: Slot | None,
    pre: Callable[[W], None] | None = None,
    after_write: Callable[[W, str], None] | None = None,
    mods: tuple[str, ...] = (),
) -> Member:
    """Pull payment from the ledger mapping: checks, the balance write, the ether transfer, in shape order."""
    ledger, me = ctx["ledger"], "msg.sender"
    name = slot.name if slot else None
    form = {"call_before_write": "amount", "withdraw_all": "all", "cross_function": "all"}.get(
        name or "", pick(ctx, "withdraw_form", ("amount", "all"))
    )
    kind = (
        {"ignored_send": "send"}.get(name or "", "call")
        if slot
        else pick(ctx, "withdraw_kind", ("transfer", "call", "send"))
    )
    w = W()
    tag = slot.tag if slot else ""
    if form == "amount":
        value = ctx["p_amount"]
        w.decl(ctx.func(ctx["fn_withdraw"], f"{ctx.u} {value}", mods=mods))
        if pre:
            pre(w)
        ctx.req(w, f"{ledger}[{me}] >= {value}", "insufficient balance", "err_funds")
    else:
        value = ctx["l_due"]
        w.decl(ctx.func(ctx["fn_withdraw"], mods=mods))
        if pre:
            pre(w)
        w(f"{ctx.local_t(ctx.u)} {value} = {ledger}[{me}];")
        ctx.req(w, f"{value} > 0", "nothing to withdraw", "err_funds")

    def write(*tags: str) -> None:
        if form == "amount":
            ctx.dec(w, f"{ledger}[{me}]", value, *tags)
        else:
            w(f"{ledger}[{me}] = 0;", *tags)
        if after_write:
            after_write(w, value)

    def pay() -> None:
        if kind == "transfer":
            w(f"{ctx.sender_pay}.transfer({value});")
        elif kind == "send":
            if slot is not None and slot.vuln:
                w(f"{ctx.sender_pay}.send({value});", tag)
            else:
                ctx.checked_send(w, ctx.sender_pay, value)
        elif name == "ignored_call" and slot is not None and slot.vuln:
            ctx.bare_call(w, me, value, tag)
        else:
            ctx.checked_call(w, me, value, tag if slot is not None and slot.shape.cls == "reentrancy" else "")

    if slot is not None and slot.vuln and slot.shape.cls == "reentrancy":
        pay()
        write(tag)
    else:
        write()
        pay()
    w(ctx.emit(ctx["evt_withdraw"], f"{me}, {value}"))
    w.close()
    return Member("func", "withdraw", w.lines, "withdraw")


def pay_then_flag(
    ctx: Ctx,
    w: W,
    slot: Slot | None,
    target: str,
    amount: str,
    flag: str,
    data: str = "",
    default: str = "call",
) -> None:
    """Send ether and set a done-flag: the flag goes first unless flag_after_call is flawed; a flawed
    ignored_call drops the call's result."""
    tag = slot.tag if slot else ""
    if slot is not None and slot.name == "flag_after_call" and slot.vuln:
        ctx.checked_call(w, target, amount, tag, data=data)
        w(flag, tag)
        return
    w(flag)
    if slot is not None and slot.name == "ignored_call" and slot.vuln:
        ctx.bare_call(w, target, amount, tag, data=data)
    elif slot is None and default == "transfer" and not data:
        w(f"{target}.transfer({amount});")
    else:
        ctx.checked_call(w, target, amount, data=data)


def push_loop(ctx: Ctx, w: W, slot: Slot | None, payees: str, amount: str) -> None:
    """Pay every entry of an array: push payments in the loop (flawed) or credits to the ledger (pull)."""
    i, tag = ctx["l_idx"], slot.tag if slot else ""
    vuln = slot is not None and slot.vuln
    ctx.loop(w, i, f"{payees}.length", tag)
    if vuln and pick(ctx, "loop_send", (0, 1)):
        ctx.checked_send(w, f"{payees}[{i}]", amount, tag)
    elif vuln:
        w(f"{payees}[{i}].transfer({amount});", tag)
    else:
        ctx.inc(w, f"{ctx['ledger']}[{payees}[{i}]]", amount)
    ctx.end_loop(w, i)


def refund_previous(ctx: Ctx, w: W, slot: Slot | None, who: str, amount: str) -> None:
    """Return the outbid amount: pushed to the previous bidder (flawed) or credited for a later withdraw."""
    if slot is not None and slot.name == "refund_push" and slot.vuln:
        if pick(ctx, "refund_send", (0, 1)):
            ctx.checked_send(w, who, amount, slot.tag)
        else:
            w(f"{who}.transfer({amount});", slot.tag)
    else:
        ctx.inc(w, f"{ctx['ledger']}[{who}]", amount)


# --- arithmetic ---------------------------------------------------------------------------------------------
def subtract(
    ctx: Ctx, w: W, slot: Slot | None, lhs: str, rhs: str, msg: str = "insufficient balance"
) -> None:
    """``lhs -= rhs``: wrapping (flawed), or SafeMath / checked, or guarded then wrapping (hard negative)."""
    if slot is not None and slot.vuln:
        if ctx.major < 8 and pick(ctx, "sub_guard", (0, 0, 1)):
            ctx.req(w, f"{lhs} - {rhs} >= 0", msg, "err_funds", slot.tag)
        ctx.raw(w, [pick(ctx, "sub_form", (f"{lhs} -= {rhs};", f"{lhs} = {lhs} - {rhs};"))], slot.tag)
        return
    style = pick(ctx, "sub_fixed", ("lib", "guard", "guard_raw"))
    if style != "lib":
        ctx.req(w, f"{lhs} >= {rhs}", msg, "err_funds")
    if style == "guard_raw":
        ctx.raw(w, [f"{lhs} -= {rhs};"])
    else:
        ctx.dec(w, lhs, rhs)


def add_to(ctx: Ctx, w: W, slot: Slot | None, lhs: str, rhs: str) -> None:
    """``lhs += rhs``: wrapping (flawed) or SafeMath / checked."""
    if slot is not None and slot.name == "overflow_add" and slot.vuln:
        ctx.raw(w, [f"{lhs} += {rhs};"], slot.tag)
    else:
        ctx.inc(w, lhs, rhs)


def product(ctx: Ctx, w: W, slot: Slot | None, local: str, a: str, b: str) -> None:
    """``uint local = a * b``: wrapping (flawed) or SafeMath / checked."""
    if slot is not None and slot.name == "overflow_mul" and slot.vuln:
        if ctx.major < 8:
            w(f"{ctx.u} {local} = {a} * {b};", slot.tag)
        else:
            w(f"{ctx.u} {local};")
            ctx.raw(w, [f"{local} = {a} * {b};"], slot.tag)
    else:
        w(f"{ctx.u} {local} = {ctx.mul(a, b)};")


# --- time ---------------------------------------------------------------------------------------------------
SHORT = ("15 seconds", "30 seconds", "45 seconds", "1 minutes", "60 seconds", "20 seconds")
LONG = ("1 days", "12 hours", "2 days", "6 hours", "3 days", "1 weeks")


def window(ctx: Ctx, slot: Slot | None, what: str) -> str:
    """A time window literal: seconds (flawed short_window) or hours and days."""
    flawed = slot is not None and slot.name == "short_window" and slot.vuln
    return pick(ctx, "window/" + what, SHORT if flawed else LONG)


def lucky(ctx: Ctx, slot: Slot | None, counter: str) -> str:
    """A win condition on a remainder: of the timestamp (flawed timestamp_modulo) or of a play counter."""
    m = pick(ctx, "modulus", ("2", "5", "7", "10", "13", "15"))
    if slot is not None and slot.name == "timestamp_modulo" and slot.vuln:
        return f"{ctx.now} % {m} == 0"
    return f"{counter} % {m} == 0"


def per_second(ctx: Ctx, slot: Slot | None, start: str, rate: str) -> str:
    """Elapsed time times a rate: per second (flawed per_second_rate) or in whole days or hours."""
    elapsed = f"({ctx.now} - {start})"
    if slot is not None and slot.name == "per_second_rate" and slot.vuln:
        return ctx.mul(elapsed, rate)
    step = pick(ctx, "rate_step", ("1 days", "1 hours", "1 days"))
    return ctx.mul(f"({elapsed} / {step})", rate)


# --- denial of service by gas -------------------------------------------------------------------------------
def capped_push(ctx: Ctx, b, w: W, slot: Slot | None, arr: str, item: str) -> None:
    """Append to a list others iterate over: capped (repaired, default) or without a bound (flawed)."""
    if not (slot is not None and slot.name == "unbounded_loop" and slot.vuln):
        cap = ctx["list_cap"]
        if not any(m.key == "list_cap" for m in b.members):
            b.state(
                "list_cap", f"{ctx.u} public constant {cap} = {pick(ctx, 'list_cap', ('50', '100', '200'))};"
            )
        ctx.req(w, f"{arr}.length < {cap}", "list is full", "err_full")
    w(f"{arr}.push({item});")


def list_loop(ctx: Ctx, w: W, slot: Slot | None, arr: str) -> str:
    """Open a loop over a growing list inside a state-changing function; returns the index name."""
    i = ctx["l_idx"]
    tag = slot.tag if slot is not None and slot.name == "unbounded_loop" else ""
    ctx.loop(w, i, f"{arr}.length", tag)
    return i


# --- other --------------------------------------------------------------------------------------------------
def struct_local(ctx: Ctx, w: W, slot: Slot | None, typ: str, var: str) -> None:
    """A local struct to fill in: ``memory`` (repaired, default) or no location (0.4 storage pointer)."""
    if slot is not None and slot.name == "uninitialized_storage" and slot.vuln:
        w(f"{typ} {var};", slot.tag)
    else:
        w(f"{typ} memory {var};")


# --- bad randomness -----------------------------------------------------------------------------------------
def entropy(ctx: Ctx, b, w: W, slot: Slot, local: str, n: str, mix: str = "") -> None:
    """The flawed random draw: ``local`` = something miners or readers know, modulo ``n``."""
    tag, u = slot.tag, ctx.u
    if slot.name == "block_attributes":
        diff = (
            "block.prevrandao"
            if ctx.major >= 8 and pick(ctx, "prevrandao", (0, 1, 1))
            else "block.difficulty"
        )
        src = pick(
            ctx,
            "entropy",
            (
                (ctx.now, diff),
                (diff, ctx.now, mix or n),
                (ctx.now, "msg.sender", mix or n),
                ("block.coinbase", ctx.now),
                ("block.number", ctx.now, diff),
            ),
        )
        w(f"{u} {local} = uint256({ctx.hash(*src)}) % {n};", tag)
    elif slot.name == "blockhash":
        bh = "block.blockhash" if ctx.major == 4 and pick(ctx, "old_blockhash", (0, 1)) else "blockhash"
        if pick(ctx, "hash_wrap", (0, 1)):
            w(f"{u} {local} = uint256({ctx.hash(f'{bh}(block.number - 1)', mix or n)}) % {n};", tag)
        else:
            w(f"{u} {local} = uint256({bh}(block.number - 1)) % {n};", tag)
    else:
        seed = ctx["private_seed"]
        if not any(m.key == "private_seed" for m in b.members):
            b.state("private_seed", f"uint256 private {seed};")
        w(f"{seed} = uint256({ctx.hash(seed, mix or n)});", tag)
        w(f"{u} {local} = {seed} % {n};", tag)


def commit_seed(ctx: Ctx, b, oo: str, sh: str, require: tuple[str, str, str] | None = None) -> None:
    """State ``sh`` and the owner's ``commit_seed(bytes32)`` storing the hash of a seed revealed later;
    ``require`` is an optional (condition, message, error key) checked first."""
    b.state("seed_hash", ctx.state("bytes32", sh))
    with b.fn(
        "commit_seed",
        ctx.func(ctx["fn_commit_seed"], f"bytes32 {ctx['p_seed_hash']}", mods=(oo,)),
        doc="commit_seed",
    ) as w:
        if require is not None:
            ctx.req(w, *require)
        w(f"{sh} = {ctx['p_seed_hash']};")


def seeded_draw(
    ctx: Ctx, b, slot: Slot | None, pool: str, oo: str, fn: str, pick_winner, guard: str | None = None
) -> None:
    """A draw over ``pool``: an owner-committed seed revealed at the draw (repaired, default) or chain
    entropy (flawed bad_randomness shapes)."""
    r = ctx["l_rand"]
    if slot is None or not slot.vuln or slot.shape.cls != "bad_randomness":
        sh, seed = ctx["seed_hash"], ctx["p_seed"]
        commit_seed(ctx, b, oo, sh)
        with b.fn("draw", ctx.func(ctx[fn], f"uint256 {seed}", mods=(oo,)), doc="draw") as w:
            ctx.req(w, f"{pool}.length > 0", "nobody to draw from", "err_state")
            if guard:
                ctx.req(w, guard, "not yet", "err_early")
            ctx.req(w, f"{ctx.hash(seed)} == {sh}", "seed does not match", "err_input")
            w(f"{ctx.u} {r} = uint256({ctx.hash(seed, f'{pool}.length')}) % {pool}.length;")
            w(f"{sh} = bytes32(0);")
            pick_winner(w, r)
        return
    with b.fn("draw", ctx.func(ctx[fn], mods=(oo,)), doc="draw") as w:
        ctx.req(w, f"{pool}.length > 0", "nobody to draw from", "err_state")
        if guard:
            ctx.req(w, guard, "not yet", "err_early")
        entropy(ctx, b, w, slot, r, f"{pool}.length")
        pick_winner(w, r)

"""Family skeletons: the members of an ERC20 token, a vault, an auction, a lottery and a multisig wallet.

Each builder writes the family's benign members, decides (variant-stably, through ``Plan.has``) which optional
features it carries, and hands every site a shape can occupy to the shared renderers in ``shapes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from training_pipeline.corpus.templates import shapes as S
from training_pipeline.corpus.templates import texture
from training_pipeline.corpus.templates.render import Ctx, Line, Member, W
from training_pipeline.corpus.templates.shapes import Plan, Privileged, Slot, pick


@dataclass
class Built:
    """What a family builder returns: main contract members, optional base contract members, interfaces."""

    members: list[Member] = field(default_factory=list)
    base: list[Member] | None = None
    interfaces: list[list[Line]] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)  # interfaces the main contract implements


class Body:
    """Collects members; ``fn`` yields a writer whose lines become one member."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.members: list[Member] = []

    def one(self, kind: str, key: str, text: str, doc: str | None = None) -> None:
        self.members.append(Member(kind, key, [Line(text, 0)], doc))

    def state(self, key: str, text: str, doc: str | None = None) -> None:
        self.one("state", key, text, doc)

    def event(self, key: str, params: str) -> None:
        self.one("event", key, f"event {self.ctx[key]}({params});")

    @contextmanager
    def fn(
        self, key: str, header: str, *tags: str, doc: str | None = None, kind: str = "func"
    ) -> Iterator[W]:
        w = W()
        w.decl(header, *tags)
        yield w
        w.close()
        self.members.append(Member(kind, key, w.lines, doc))

    def modifier(self, key: str, cond: str, msg: str, err: str, doc: str | None = None) -> None:
        ctx = self.ctx
        bare = ctx.major == 4 and pick(ctx, "modifier_parens/" + key, (0, 1))
        with self.fn(key, f"modifier {ctx[key]}" + ("" if bare else "()"), doc=doc, kind="modifier") as w:
            ctx.req(w, cond, msg, err)
            w("_;")

    def add(self, m: Member) -> None:
        self.members.append(m)


# --- the owner block shared by four families ----------------------------------------------------------------
def _p_ownership(ctx: Ctx) -> Privileged:
    def body(c: Ctx, w: W) -> None:
        new = c["p_new_owner"]
        c.req(w, f"{new} != address(0)", "zero address", "err_zero")
        w(c.emit(c["evt_owner"], f"{c['owner']}, {new}"))
        w(f"{c['owner']} = {new};")

    return Privileged("fn_transfer_owner", "transfer_owner", lambda c: f"{c.pay_t} {c['p_new_owner']}", body)


def _p_sweep(ctx: Ctx) -> Privileged:
    return Privileged(
        "fn_sweep",
        "sweep",
        lambda c: f"{c.pay_t} {c['p_sweep_to']}",
        lambda c, w: w(f"{c['p_sweep_to']}.transfer({c.this_balance});"),
    )


def _p_fee(ctx: Ctx) -> Privileged:
    def body(c: Ctx, w: W) -> None:
        c.req(w, f"{c['p_fee']} <= 1000", "fee too high", "err_input")
        w(f"{c['fee']} = {c['p_fee']};")

    return Privileged("fn_set_fee", "set_fee", lambda c: f"{c.u} {c['p_fee']}", body)


def _p_collector(ctx: Ctx) -> Privileged:
    return Privileged(
        "fn_set_collector",
        "set_collector",
        lambda c: f"address {c['p_collector']}",
        lambda c, w: w(f"{c['collector']} = {c['p_collector']};"),
    )


class Owned:
    """Owner state, modifier, event, ownership transfer, pause switch, privileged/kill/init sites, ctor."""

    def __init__(self, ctx: Ctx, plan: Plan, body: Body, privileged: list[Privileged]) -> None:
        self.ctx, self.plan, self.b = ctx, plan, body
        if "locked_ether" in {s.name for s in plan.slots.values()}:  # no function may move ether out
            privileged = [p for p in privileged if p.role not in ("fn_sweep",)]
        self.priv = pick(ctx, "privileged", privileged)
        self.init = plan.has("init", 0.1)
        in_base = (
            not self.init
            and "ctor" not in plan.slots
            and ("shadow" in plan.slots or plan.has("ownable_base", 0.25))
        )
        self.base = Body(ctx) if in_base else None
        shadow = plan.slot("shadow")
        if shadow is not None and shadow.vuln:  # the derived contract declares the owner again
            body.members.append(
                Member("state", "owner_again", [Line(ctx.state(ctx.pay_t, ctx["owner"]), 0, (shadow.tag,))])
            )
        self.pausable = plan.has("pausable", 0.25)
        self.live: tuple[str, ...] = (ctx["when_live"],) if self.pausable else ()
        ob = self.base or body
        ob.state("owner", ctx.state(ctx.pay_t, ctx["owner"]), doc="owner")
        ob.event("evt_owner", "address indexed previousOwner, address indexed newOwner")
        ob.modifier(
            "only_owner",
            f"msg.sender == {ctx['owner']}",
            "caller is not the owner",
            "err_auth",
            doc="only_owner",
        )
        if in_base:
            with ob.fn("ctor", ctx.ctor("", contract=ctx["base"]), doc="ctor", kind="ctor") as w:
                w(self.owner_from_sender())
        if self.priv.role != "fn_transfer_owner":
            p = _p_ownership(ctx)
            with ob.fn(
                "transfer_owner",
                ctx.func(ctx[p.role], p.params(ctx), mods=(ctx["only_owner"],)),
                doc="transfer_owner",
            ) as w:
                p.body(ctx, w)
        if self.priv.role == "fn_set_fee":
            body.state("fee", ctx.state(ctx.u, ctx["fee"]))
        if self.priv.role == "fn_set_collector":
            body.state("collector", ctx.state("address", ctx["collector"]))

    def owner_from_sender(self) -> str:
        return f"{self.ctx['owner']} = {self.ctx.sender_pay};"

    def finish(
        self, ctor_params: str = "", ctor_body: Callable[[W], None] | None = None, kill_p: float = 0.3
    ) -> Built:
        """Add the pause switch, sites and constructor; return the built contract."""
        ctx, plan, b = self.ctx, self.plan, self.b
        oo = ctx["only_owner"]
        if self.pausable:
            b.state("paused", ctx.state("bool", ctx["paused"]))
            b.modifier("when_live", f"!{ctx['paused']}", "paused", "err_state")
            for key, value in (("fn_pause", "true"), ("fn_unpause", "false")):
                with b.fn(key, ctx.func(ctx[key], mods=(oo,)), doc=key[3:]) as w:
                    w(f"{ctx['paused']} = {value};")
        b.add(
            S.privileged(ctx, plan.slot("privileged"), self.priv, oo, lambda who: f"{who} == {ctx['owner']}")
        )
        if plan.has("kill", kill_p):
            b.add(S.kill(ctx, plan.slot("kill"), oo, "", ctx["owner"]))
        if self.init:
            b.state("initialized", ctx.state("bool", ctx["initialized"]))
            p = ctx["p_init_owner"]
            b.add(
                S.initializer(
                    ctx, plan.slot("init"), f"{ctx.pay_t} {p}", lambda w: w(f"{ctx['owner']} = {p};")
                )
            )

        def full_ctor(w: W) -> None:
            if not self.init and self.base is None:
                w(self.owner_from_sender())
            if ctor_body:
                ctor_body(w)

        if ctor_body or (not self.init and self.base is None):
            b.add(S.constructor(ctx, plan.slot("ctor"), ctor_params, full_ctor))
        if pick(ctx, "has_balance_view", (0, 1)):
            with b.fn(
                "balance", ctx.func(ctx["fn_balance"], mut="view", returns=ctx.u), doc="balance", kind="view"
            ) as w:
                w(f"return {ctx.this_balance};")
        ledger = ctx["ledger"] if any(m.key == "ledger" for m in b.members) else None
        b.members += texture.fillers(ctx, oo, ctx["owner"], ledger)[0]
        return Built(b.members, self.base.members if self.base else None)


def _immutable(ctx: Ctx, mutable: bool) -> bool:
    return ctx.major >= 8 and not mutable and pick(ctx, "use_immutable", (0, 1, 1))


def _payees(ctx: Ctx, b: Body, oo: str) -> str:
    """A capped, owner-managed array of payout addresses; returns its name."""
    payees, cap = ctx["payees"], ctx["max_payees"]
    b.state("payees", f"{ctx.pay_t}[] public {payees};")
    b.state("max_payees", f"{ctx.u} public constant {cap} = {pick(ctx, 'cap', ('20', '50', '100', '200'))};")
    who = ctx["p_who"]
    with b.fn(
        "add_payee", ctx.func(ctx["fn_add_payee"], f"{ctx.pay_t} {who}", mods=(oo,)), doc="add_payee"
    ) as w:
        ctx.req(w, f"{payees}.length < {cap}", "list is full", "err_full")
        w(f"{payees}.push({who});")
    return payees


def _distribute(ctx: Ctx, b: Body, slot: Slot | None, payees: str, oo: str) -> None:
    with b.fn("distribute", ctx.func(ctx["fn_distribute"], mut="payable", mods=(oo,)), doc="distribute") as w:
        ctx.req(w, f"{payees}.length > 0", "no members", "err_state")
        share = ctx["l_share"]
        w(f"{ctx.u} {share} = msg.value / {payees}.length;")
        S.push_loop(ctx, w, slot, payees, share)
        w(ctx.emit(ctx["evt_distribute"], "msg.value"))
    b.event("evt_distribute", f"{ctx.u} amount")


def _fallback(ctx: Ctx, b: Body, stmt: str) -> None:
    with b.fn("fallback", ctx.fallback(), doc="fallback", kind="fallback") as w:
        w(stmt)


# --- vault --------------------------------------------------------------------------------------------------
def build_vault(ctx: Ctx, plan: Plan) -> Built:
    """An ether vault: deposits to a ledger and withdrawals; optional lock, internal moves, distribution."""
    b = Body(ctx)
    own = Owned(ctx, plan, b, [_p_ownership(ctx), _p_sweep(ctx), _p_fee(ctx), _p_collector(ctx)])
    u, L, oo = ctx.u, ctx["ledger"], ctx["only_owner"]
    lock = plan.has("limit", 0.2)
    move = plan.has("move", 0.3)
    dist = plan.has("distribute", 0.2)
    total = not dist and pick(ctx, "vault_total", (0, 1))
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    if total:
        b.state("total", ctx.state(u, ctx["total"]))
    if lock:
        b.state("lock", f"mapping(address => {u}) public {ctx['lock']};")
    b.event("evt_deposit", f"address indexed {ctx['p_who']}, {u} amount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")

    with b.fn("deposit", ctx.func(ctx["fn_deposit"], mut="payable", mods=own.live), doc="deposit") as w:
        ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
        ctx.inc(w, f"{L}[msg.sender]", "msg.value")
        if total:
            ctx.inc(w, ctx["total"], "msg.value")
        if lock:
            period = pick(ctx, "lock_for", ("1 weeks", "30 days", "1 days"))
            w(f"{ctx['lock']}[msg.sender] = {ctx.now} + {period};")
        w(ctx.emit(ctx["evt_deposit"], "msg.sender, msg.value"))
    if pick(ctx, "vault_fallback", (0, 1)):
        _fallback(ctx, b, f"{ctx['fn_deposit']}();")

    def pre(w: W) -> None:
        ctx.req(w, f"{ctx.now} >= {ctx['lock']}[msg.sender]", "funds are locked", "err_early")

    def after(w: W, value: str) -> None:
        ctx.dec(w, ctx["total"], value)

    b.add(
        S.ledger_withdraw(
            ctx, plan.slot("withdraw"), pre if lock else None, after if total else None, mods=own.live
        )
    )
    if move:
        to, amt = ctx["p_to"], ctx["p_amount"]
        b.event("evt_move", f"address indexed from, address indexed to, {u} amount")
        with b.fn(
            "move", ctx.func(ctx["fn_move"], f"address {to}, {u} {amt}", mods=own.live), doc="move"
        ) as w:
            ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
            S.subtract(ctx, w, plan.slot("move"), f"{L}[msg.sender]", amt)
            ctx.inc(w, f"{L}[{to}]", amt)
            w(ctx.emit(ctx["evt_move"], f"msg.sender, {to}, {amt}"))
    if lock:
        secs = ctx["p_secs"]
        with b.fn("extend", ctx.func(ctx["fn_extend"], f"{u} {secs}"), doc="extend") as w:
            S.add_to(ctx, w, plan.slot("limit"), f"{ctx['lock']}[msg.sender]", secs)
    if dist:
        _distribute(ctx, b, plan.slot("distribute"), _payees(ctx, b, oo), oo)
    return own.finish()


# --- auction ------------------------------------------------------------------------------------------------
def build_auction(ctx: Ctx, plan: Plan) -> Built:
    """An open auction: bids refund the previous leader, beneficiary paid at the end; optional window."""
    b = Body(ctx)
    extend = Privileged(
        "fn_extend_auction",
        "extend_auction",
        lambda c: f"{c.u} {c['p_secs']}",
        lambda c, w: c.inc(w, c["auction_end"], c["p_secs"]),
    )
    set_ben = Privileged(
        "fn_set_beneficiary",
        "set_beneficiary",
        lambda c: f"{c.pay_t} {c['p_beneficiary']}",
        lambda c, w: w(f"{c['beneficiary']} = {c['p_beneficiary']};"),
    )
    own = Owned(ctx, plan, b, [_p_ownership(ctx), extend, set_ben])
    u, now = ctx.u, ctx.now
    bid_slot = plan.slot("bid")
    short = plan.is_("bid", "short_window") or (bid_slot is None and plan.has("bid_window", 0.2))
    win = S.window(ctx, bid_slot, "bid") if short else ""
    wtag = bid_slot.tag if bid_slot is not None and bid_slot.name == "short_window" else ""
    end, ben = ctx["auction_end"], ctx["beneficiary"]
    _auction_state(ctx, b, short, own.priv is set_ben, own.priv is extend)
    _auction_bidding(ctx, b, plan, own, short, win, wtag)
    bt, pb = ctx["p_bidding_time"], ctx["p_beneficiary"]

    def ctor_body(w: W) -> None:
        w(f"{end} = {now} + {bt};")
        w(f"{ben} = {pb};")
        if short:
            w(f"{ctx['last_bid_at']} = {now};")

    return own.finish(f"{u} {bt}, {ctx.pay_t} {pb}", ctor_body)


def _auction_state(ctx: Ctx, b: Body, short: bool, ben_mutable: bool, end_mutable: bool) -> None:
    """Beneficiary, end time, leading bid, ledger, ended flag, the optional last-bid time and the events."""
    u, L = ctx.u, ctx["ledger"]
    end, hb, hbid, ended = ctx["auction_end"], ctx["highest_bidder"], ctx["highest_bid"], ctx["ended"]
    b.state("beneficiary", ctx.state(ctx.pay_t, ctx["beneficiary"], immutable=_immutable(ctx, ben_mutable)))
    b.state("auction_end", ctx.state(u, end, immutable=_immutable(ctx, end_mutable)))
    b.state("highest_bidder", ctx.state(ctx.pay_t, hb))
    b.state("highest_bid", ctx.state(u, hbid))
    b.state(
        "ledger",
        f"mapping(address => {u}) {'public ' if pick(ctx, 'pub_ledger', (0, 1)) else ''}{L};",
        doc="ledger",
    )
    b.state("ended", ctx.state("bool", ended))
    if short:
        b.state("last_bid_at", ctx.state(u, ctx["last_bid_at"]))
    b.event("evt_bid", f"address bidder, {u} amount")
    b.event("evt_end", f"address winner, {u} amount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _auction_bidding(ctx: Ctx, b: Body, plan: Plan, own: Owned, short: bool, win: str, wtag: str) -> None:
    """``bid`` (bid site), the ledger withdrawal, ``end`` (finalize site) and the optional time view."""
    u, now = ctx.u, ctx.now
    end, hb, hbid, ended = ctx["auction_end"], ctx["highest_bidder"], ctx["highest_bid"], ctx["ended"]
    bid_slot, end_slot = plan.slot("bid"), plan.slot("finalize")
    with b.fn("bid", ctx.func(ctx["fn_bid"], mut="payable", mods=own.live), doc="bid") as w:
        ctx.req(w, f"{now} <= {end}", "auction already ended", "err_late")
        if short:
            ctx.req(w, f"{now} <= {ctx['last_bid_at']} + {win}", "bidding closed", "err_late", wtag)
        ctx.req(w, f"msg.value > {hbid}", "bid too low", "err_input")
        w.open(f"if ({hbid} != 0) {{")
        S.refund_previous(ctx, w, bid_slot, hb, hbid)
        w.close()
        w(f"{hb} = {ctx.sender_pay};")
        w(f"{hbid} = msg.value;")
        if short:
            w(f"{ctx['last_bid_at']} = {now};")
        w(ctx.emit(ctx["evt_bid"], "msg.sender, msg.value"))
    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw")))
    with b.fn("end", ctx.func(ctx["fn_end"]), doc="end") as w:
        if short:
            ctx.req(
                w,
                f"{now} > {ctx['last_bid_at']} + {win} || {now} >= {end}",
                "auction still running",
                "err_early",
                wtag,
            )
        else:
            ctx.req(w, f"{now} >= {end}", "auction still running", "err_early")
        ctx.req(w, f"!{ended}", "already ended", "err_state")
        w(ctx.emit(ctx["evt_end"], f"{hb}, {hbid}"))
        S.pay_then_flag(
            ctx,
            w,
            end_slot,
            ctx["beneficiary"],
            hbid,
            f"{ended} = true;",
            default=pick(ctx, "end_pay", ("transfer", "call")),
        )
    if pick(ctx, "time_left", (0, 1)):
        with b.fn(
            "time_left", ctx.func(ctx["fn_time_left"], mut="view", returns=u), doc="time_left", kind="view"
        ) as w:
            w.open(f"if ({now} >= {end}) {{")
            w("return 0;")
            w.close()
            w(f"return {end} - {now};")


# --- lottery ------------------------------------------------------------------------------------------------
def _draw(ctx: Ctx, b: Body, slot: Slot | None, own: Owned, pick_winner: Callable[[W, str], None]) -> None:
    """Winner selection: commit-reveal seed (default and repaired form) or entropy from the chain (flawed)."""
    players, oo, r = ctx["players"], ctx["only_owner"], ctx["l_rand"]
    if slot is None or not slot.vuln:
        sh, seed = ctx["seed_hash"], ctx["p_seed"]
        S.commit_seed(ctx, b, oo, sh, (f"{players}.length == 0", "round in progress", "err_state"))
        with b.fn("draw", ctx.func(ctx["fn_draw"], f"uint256 {seed}", mods=(oo,)), doc="draw") as w:
            ctx.req(w, f"{players}.length > 0", "no players", "err_state")
            ctx.req(w, f"{ctx.hash(seed)} == {sh}", "seed does not match", "err_input")
            w(f"{ctx.u} {r} = uint256({ctx.hash(seed, f'{players}.length')}) % {players}.length;")
            pick_winner(w, r)
        return
    mods = pick(ctx, "draw_mods", ((oo,), ()))
    with b.fn("draw", ctx.func(ctx["fn_draw"], mods=mods), doc="draw") as w:
        if not mods:
            ctx.req(w, f"{players}.length >= {ctx['max_players']}", "round not full", "err_state")
        else:
            ctx.req(w, f"{players}.length > 0", "no players", "err_state")
        S.entropy(ctx, b, w, slot, r, f"{players}.length")
        pick_winner(w, r)


def build_lottery(ctx: Ctx, plan: Plan) -> Built:
    """A lottery with a drawn winner; optional ticket credits, last-entrant pot, instant play and puzzle."""
    b = Body(ctx)

    def set_price_body(c: Ctx, w: W) -> None:
        c.req(w, f"{c['players']}.length == 0", "round in progress", "err_state")
        w(f"{c['ticket_price']} = {c['p_price']};")

    set_price = Privileged(
        "fn_set_price", "set_ticket_price", lambda c: f"{c.u} {c['p_price']}", set_price_body
    )
    own = Owned(ctx, plan, b, [_p_ownership(ctx), set_price, _p_fee(ctx)])
    u, oo = ctx.u, ctx["only_owner"]
    credits = plan.has("price", 0.2)
    last = plan.has("window", 0.2)
    instant = plan.has("instant", 0.2)
    puzzle = plan.has("answer", 0.15)
    draw_slot = plan.slot("draw")
    _lottery_state(ctx, b, own.priv is set_price)
    add_player = _lottery_rounds(ctx, b, plan, own, last)
    if credits:
        _lottery_credits(ctx, b, plan, own, add_player)
    if last:
        _lottery_last_entrant(ctx, b, plan)
    if instant:
        _lottery_instant(ctx, b, plan, own)
    if puzzle:
        _puzzle(ctx, b, plan.slot("answer"), oo)
    price = ctx["ticket_price"]

    def ctor_body(w: W) -> None:
        w(f"{price} = {ctx['p_price']};")
        if draw_slot is not None and draw_slot.vuln and draw_slot.name == "private_seed":
            w(f"{ctx['private_seed']} = {ctx['p_seed']};")

    params = f"{u} {ctx['p_price']}"
    if draw_slot is not None and draw_slot.vuln and draw_slot.name == "private_seed":
        params += f", uint256 {ctx['p_seed']}"
    return own.finish(params, ctor_body)


def _lottery_names(ctx: Ctx) -> tuple[str, str, str, str, str]:
    """The lottery's state names: players, ticket price, pot, round, player cap."""
    return ctx["players"], ctx["ticket_price"], ctx["pot"], ctx["round"], ctx["max_players"]


def _lottery_state(ctx: Ctx, b: Body, price_mutable: bool) -> None:
    """Players, ticket price, pot, round counter, last winner, ledger, player cap and the events."""
    u, L = ctx.u, ctx["ledger"]
    players, price, pot, rnd, cap = _lottery_names(ctx)
    b.state("players", f"{ctx.pay_t}[] public {players};", doc="players")
    b.state("ticket_price", ctx.state(u, price, immutable=_immutable(ctx, price_mutable)))
    b.state("pot", ctx.state(u, pot))
    b.state("round", ctx.state(u, rnd))
    b.state("last_winner", ctx.state("address", ctx["last_winner"]))
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state("max_players", f"{u} public constant {cap} = {pick(ctx, 'max', ('10', '25', '50', '100'))};")
    b.event("evt_enter", f"address indexed player, {u} round")
    b.event("evt_winner", f"address indexed winner, {u} amount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _lottery_rounds(ctx: Ctx, b: Body, plan: Plan, own: Owned, last: bool) -> Callable[[W], None]:
    """``enter``, the draw, the ledger withdrawal and optional distribution; returns the add-player writer."""
    L, now, oo = ctx["ledger"], ctx.now, ctx["only_owner"]
    players, price, pot, rnd, cap = _lottery_names(ctx)

    def add_player(w: W) -> None:
        ctx.req(w, f"{players}.length < {cap}", "round is full", "err_full")
        w(f"{players}.push({ctx.sender_pay});")
        if last:
            w(f"{ctx['last_entrant']} = msg.sender;")
            w(f"{ctx['last_entry_at']} = {now};")

    with b.fn("enter", ctx.func(ctx["fn_enter"], mut="payable", mods=own.live), doc="enter") as w:
        ctx.req(w, f"msg.value == {price}", "wrong ticket price", "err_input")
        add_player(w)
        ctx.inc(w, pot, "msg.value")
        w(ctx.emit(ctx["evt_enter"], f"msg.sender, {rnd}"))

    def pick_winner(w: W, r: str) -> None:
        win = ctx["l_winner"]
        w(f"address {win} = {players}[{r}];")
        ctx.inc(w, f"{L}[{win}]", pot)
        w(ctx.emit(ctx["evt_winner"], f"{win}, {pot}"))
        w(f"{pot} = 0;")
        w(f"{ctx['last_winner']} = {win};")
        w(f"delete {players};")
        ctx.inc(w, rnd, "1")

    _draw(ctx, b, plan.slot("draw"), own, pick_winner)
    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw")))
    if plan.has("distribute", 0.25):
        with b.fn("distribute", ctx.func(ctx["fn_distribute"], mods=(oo,)), doc="distribute") as w:
            S.push_loop(ctx, w, plan.slot("distribute"), players, price)
            w(f"delete {players};")
            w(f"{pot} = 0;")
    return add_player


def _lottery_credits(ctx: Ctx, b: Body, plan: Plan, own: Owned, add_player: Callable[[W], None]) -> None:
    """Prepaid ticket credits: bulk purchase (the price site) and entering with a credit."""
    u, price, pot, rnd = ctx.u, ctx["ticket_price"], ctx["pot"], ctx["round"]
    cr, cnt, cost = ctx["credits"], ctx["p_count"], ctx["l_due"]
    b.state("credits", f"mapping(address => {u}) public {cr};")
    with b.fn(
        "buy_credits", ctx.func(ctx["fn_buy_credits"], f"{u} {cnt}", mut="payable"), doc="buy_credits"
    ) as w:
        ctx.req(w, f"{cnt} > 0", "zero tickets", "err_input")
        S.product(ctx, w, plan.slot("price"), cost, cnt, price)
        ctx.req(w, f"msg.value == {cost}", "wrong payment", "err_input")
        ctx.inc(w, f"{cr}[msg.sender]", cnt)
    with b.fn("use_credit", ctx.func(ctx["fn_use_credit"], mods=own.live), doc="use_credit") as w:
        ctx.req(w, f"{cr}[msg.sender] > 0", "no credits", "err_funds")
        ctx.dec(w, f"{cr}[msg.sender]", "1")
        add_player(w)
        ctx.inc(w, pot, price)
        w(ctx.emit(ctx["evt_enter"], f"msg.sender, {rnd}"))


def _lottery_last_entrant(ctx: Ctx, b: Body, plan: Plan) -> None:
    """The last entrant claims the pot once the round goes quiet (the window site)."""
    u, L, now, players, pot = ctx.u, ctx["ledger"], ctx.now, ctx["players"], ctx["pot"]
    slot, le, la = plan.slot("window"), ctx["last_entrant"], ctx["last_entry_at"]
    b.state("last_entrant", ctx.state("address", le))
    b.state("last_entry_at", ctx.state(u, la))
    with b.fn("claim_pot", ctx.func(ctx["fn_claim_pot"]), doc="claim_pot") as w:
        ctx.req(w, f"{le} != address(0)", "no entrant", "err_state")
        ctx.req(
            w,
            f"{now} > {la} + {S.window(ctx, slot, 'pot')}",
            "round still active",
            "err_early",
            slot.tag if slot else "",
        )
        ctx.inc(w, f"{L}[{le}]", pot)
        w(ctx.emit(ctx["evt_winner"], f"{le}, {pot}"))
        w(f"{pot} = 0;")
        w(f"{le} = address(0);")
        w(f"delete {players};")


def _lottery_instant(ctx: Ctx, b: Body, plan: Plan, own: Owned) -> None:
    """Instant play: every ticket may win the jackpot on a lucky condition (the instant site)."""
    u, L, price = ctx.u, ctx["ledger"], ctx["ticket_price"]
    slot, jp, pc = plan.slot("instant"), ctx["jackpot"], ctx["play_count"]
    b.state("jackpot", ctx.state(u, jp))
    b.state("play_count", ctx.state(u, pc))
    b.event("evt_instant", f"address indexed player, {u} prize")
    with b.fn("instant", ctx.func(ctx["fn_instant"], mut="payable", mods=own.live), doc="instant") as w:
        ctx.req(w, f"msg.value == {price}", "wrong ticket price", "err_input")
        ctx.inc(w, jp, "msg.value")
        ctx.inc(w, pc, "1")
        w.open(f"if ({S.lucky(ctx, slot, pc)}) {{", slot.tag if slot else "")
        ctx.inc(w, f"{L}[msg.sender]", jp)
        w(ctx.emit(ctx["evt_instant"], f"msg.sender, {jp}"))
        w(f"{jp} = 0;")
        w.close()


def _puzzle(ctx: Ctx, b: Body, slot: Slot | None, oo: str) -> None:
    """A riddle with a reward: the answer in clear (flawed, copyable from the mempool) or commit-reveal."""
    ah, bounty, solved, L = ctx["answer_hash"], ctx["bounty"], ctx["solved"], ctx["ledger"]
    ans, salt, tag = ctx["p_answer"], ctx["p_salt"], slot.tag if slot else ""
    b.state("answer_hash", ctx.state("bytes32", ah))
    b.state("bounty", ctx.state(ctx.u, bounty))
    b.state("solved", ctx.state("bool", solved))
    b.event("evt_solved", "address indexed solver")
    with b.fn(
        "set_puzzle",
        ctx.func(ctx["fn_set_puzzle"], f"bytes32 {ctx['p_commit']}", mut="payable", mods=(oo,)),
        doc="set_puzzle",
    ) as w:
        w(f"{ah} = {ctx['p_commit']};")
        ctx.inc(w, bounty, "msg.value")
        w(f"{solved} = false;")
    vuln = slot is not None and slot.vuln
    if not vuln:
        cm, cb = ctx["answer_commits"], ctx["commit_block"]
        b.state("answer_commits", f"mapping(address => bytes32) public {cm};")
        b.state("commit_block", f"mapping(address => {ctx.u}) public {cb};")
        with b.fn(
            "commit_answer",
            ctx.func(ctx["fn_commit_answer"], f"bytes32 {ctx['p_commit']}"),
            doc="commit_answer",
        ) as w:
            w(f"{cm}[msg.sender] = {ctx['p_commit']};")
            w(f"{cb}[msg.sender] = block.number;")
    params = f"string{ctx.mem} {ans}" + ("" if vuln else f", bytes32 {salt}")
    with b.fn("solve", ctx.func(ctx["fn_solve"], params), doc="solve") as w:
        ctx.req(w, f"!{solved}", "already solved", "err_state")
        if not vuln:
            cm, cb = ctx["answer_commits"], ctx["commit_block"]
            ctx.req(w, f"{cb}[msg.sender] > 0", "no commitment", "err_state")
            ctx.req(w, f"block.number > {cb}[msg.sender]", "reveal too early", "err_early")
            ctx.req(
                w,
                f"{ctx.hash('msg.sender', ans, salt)} == {cm}[msg.sender]",
                "commitment mismatch",
                "err_input",
            )
        ctx.req(w, f"{ctx.hash(ans)} == {ah}", "wrong answer", "err_input", tag)
        w(f"{solved} = true;")
        ctx.inc(w, f"{L}[msg.sender]", bounty)
        w(f"{bounty} = 0;")
        w(ctx.emit(ctx["evt_solved"], "msg.sender"))


# --- ERC20 token --------------------------------------------------------------------------------------------
def build_erc20(ctx: Ctx, plan: Plan) -> Built:
    """An ERC20 token: balances, allowances and transfers; optional burn, sale, airdrop and dividends."""
    b = Body(ctx)
    bal = ctx["token_bal"]
    mint = Privileged("fn_mint", "mint", lambda c: f"address {c['p_to']}, {c.u} {c['p_value']}", _mint_body)
    own = Owned(ctx, plan, b, [_p_ownership(ctx), mint, _p_collector(ctx)])
    u, now = ctx.u, ctx.now
    no_ret = plan.slot("erc20_return")
    use_itf = no_ret is None and pick(ctx, "erc20_interface", (0, 0, 1))
    ovr = (ctx.ovr,) if use_itf and ctx.ovr else ()
    itf = _erc20_state(ctx, b, use_itf, ovr)
    _erc20_transfers(ctx, b, plan, own, ovr)
    price_in_ctor = _erc20_extras(ctx, b, plan, own)
    supply = ctx["p_amount"]

    def ctor_body(w: W) -> None:
        w(f"totalSupply = {supply};")
        w(f"{bal}[msg.sender] = {supply};")
        w(ctx.emit("Transfer", f"address(0), msg.sender, {supply}"))
        if plan.has("bonus"):
            w(f"{ctx['launch']} = {now};")
        if price_in_ctor:
            w(f"{ctx['price']} = {ctx['p_price']};")

    params = f"{u} {supply}" + (f", {u} {ctx['p_price']}" if price_in_ctor else "")
    built = own.finish(params, ctor_body)
    if itf is not None:
        built.interfaces.append(itf[1])
        built.parents.append(itf[0])
    return built


def _erc20_state(ctx: Ctx, b: Body, use_itf: bool, ovr: tuple[str, ...]) -> tuple[str, list[Line]] | None:
    """Token metadata, supply and maps, the events (or the interface that declares them) and the map views."""
    u, bal, alw = ctx.u, ctx["token_bal"], ctx["token_allow"]
    who, sp = ctx["p_who"], ctx["p_spender"]
    pub_maps = bal == "balanceOf"
    pub_ovr = " override" if ovr else ""
    b.state("name", f'string public name = "{ctx["contract"]}";')
    b.state("symbol", f'string public symbol = "{ctx["token_symbol"]}";')
    b.state("decimals", f"uint8 public {'constant ' if pick(ctx, 'dec_const', (0, 1)) else ''}decimals = 18;")
    b.state("total_supply", f"{u} public{pub_ovr} totalSupply;")
    b.state("token_bal", f"mapping(address => {u}) {'public' + pub_ovr if pub_maps else 'internal'} {bal};")
    allow_ovr = pub_ovr if alw == "allowance" else ""
    b.state(
        "token_allow",
        f"mapping(address => mapping(address => {u})) "
        f"{'public' + allow_ovr if pub_maps else 'internal'} {alw};",
    )
    events = (
        "event Transfer(address indexed from, address indexed to, uint256 value);",
        "event Approval(address indexed holder, address indexed spender, uint256 value);",
    )
    itf = _erc20_interface(ctx, pub_maps) if use_itf else None
    if itf is None:  # with an interface the events are inherited from it
        b.one("event", "transfer_evt", events[0])
        b.one("event", "approval_evt", events[1])
    if not pub_maps:
        with b.fn(
            "balance_of",
            ctx.func("balanceOf", f"address {who}", mut="view", mods=ovr, returns=u),
            doc="balance_of",
            kind="view",
        ) as w:
            w(f"return {bal}[{who}];")
        with b.fn(
            "allowance",
            ctx.func("allowance", f"address {who}, address {sp}", mut="view", mods=ovr, returns=u),
            doc="allowance",
            kind="view",
        ) as w:
            w(f"return {alw}[{who}][{sp}];")
    return itf


def _erc20_transfers(ctx: Ctx, b: Body, plan: Plan, own: Owned, ovr: tuple[str, ...]) -> None:
    """``transfer`` (erc20_return, move sites), ``approve`` (approve site), ``transferFrom``, burn."""
    u, bal, alw = ctx.u, ctx["token_bal"], ctx["token_allow"]
    to, val, frm, sp, who = ctx["p_to"], ctx["p_value"], ctx["p_from"], ctx["p_spender"], ctx["p_who"]
    no_ret = plan.slot("erc20_return")
    flat = no_ret is not None and no_ret.vuln
    with b.fn(
        "transfer",
        ctx.func(
            "transfer", f"address {to}, {u} {val}", mods=(*own.live, *ovr), returns="" if flat else "bool"
        ),
        no_ret.tag if no_ret else "",
        doc="transfer",
    ) as w:
        ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
        S.subtract(ctx, w, plan.slot("move"), f"{bal}[msg.sender]", val)
        ctx.inc(w, f"{bal}[{to}]", val)
        w(ctx.emit("Transfer", f"msg.sender, {to}, {val}"))
        if not flat:
            w("return true;")
    approve = plan.slot("approve")
    with b.fn(
        "approve", ctx.func("approve", f"address {sp}, {u} {val}", mods=ovr, returns="bool"), doc="approve"
    ) as w:
        if approve is None or not approve.vuln:
            ctx.req(
                w, f"{val} == 0 || {alw}[msg.sender][{sp}] == 0", "reset allowance to zero first", "err_state"
            )
        w(f"{alw}[msg.sender][{sp}] = {val};", approve.tag if approve else "")
        w(ctx.emit("Approval", f"msg.sender, {sp}, {val}"))
        w("return true;")
    with b.fn(
        "transfer_from",
        ctx.func(
            "transferFrom", f"address {frm}, address {to}, {u} {val}", mods=(*own.live, *ovr), returns="bool"
        ),
        doc="transfer_from",
    ) as w:
        ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
        ctx.req(w, f"{val} <= {bal}[{frm}]", "insufficient balance", "err_funds")
        ctx.req(w, f"{val} <= {alw}[{frm}][msg.sender]", "allowance exceeded", "err_funds")
        ctx.dec(w, f"{bal}[{frm}]", val)
        ctx.inc(w, f"{bal}[{to}]", val)
        ctx.dec(w, f"{alw}[{frm}][msg.sender]", val)
        w(ctx.emit("Transfer", f"{frm}, {to}, {val}"))
        w("return true;")
    if pick(ctx, "burnable", (0, 1)):
        b.event("evt_burn", f"address indexed {who}, {u} value")
        with b.fn("burn", ctx.func(ctx["fn_burn"], f"{u} {val}"), doc="burn") as w:
            ctx.req(w, f"{bal}[msg.sender] >= {val}", "insufficient balance", "err_funds")
            ctx.dec(w, f"{bal}[msg.sender]", val)
            ctx.dec(w, "totalSupply", val)
            w(ctx.emit(ctx["evt_burn"], f"msg.sender, {val}"))


def _erc20_extras(ctx: Ctx, b: Body, plan: Plan, own: Owned) -> bool:
    """Optional token sale, airdrop and ether dividends; returns whether the constructor sets the price."""
    u, oo, who = ctx.u, ctx["only_owner"], ctx["p_who"]
    dividends = plan.has("dividends", 0.2) or "withdraw" in plan.slots or "distribute" in plan.slots
    sale = plan.has("price", 0.3)
    price_slot = plan.slot("price")
    sale_form = price_slot.name if price_slot else pick(ctx, "sale_form", ("overflow_mul", "price_change"))
    price_in_ctor = sale and sale_form == "overflow_mul" and ctx.major >= 8
    if sale:
        _token_sale(ctx, b, price_slot, sale_form, oo, own.live)
    if plan.has("bonus", 0.25):
        _airdrop(ctx, b, plan.slot("bonus"))
    if dividends:
        b.state("ledger", f"mapping(address => {u}) public {ctx['ledger']};", doc="ledger")
        b.event("evt_withdraw", f"address indexed {who}, {u} amount")
        b.add(S.ledger_withdraw(ctx, plan.slot("withdraw")))
        _distribute(ctx, b, plan.slot("distribute"), _payees(ctx, b, oo), oo)
    return price_in_ctor


def _erc20_interface(ctx: Ctx, pub_maps: bool) -> tuple[str, list[Line]]:
    """``interface IERC20`` (0.5+), or the 0.4-era abstract ``ERC20Basic`` that lists only real functions
    (0.4 does not let a public state variable implement an abstract function)."""
    old = ctx.major == 4
    name = pick(
        ctx, "erc20_itf_name", ("ERC20Basic", "ERC20Interface") if old else ("IERC20", "ERC20Interface")
    )
    vis = "public" if old else "external"
    sigs = [
        ("totalSupply", "", "view", "uint256"),
        ("balanceOf", "address who", "view", "uint256"),
        ("allowance", "address holder, address spender", "view", "uint256"),
        ("transfer", "address to, uint256 value", "", "bool"),
        ("approve", "address spender, uint256 value", "", "bool"),
        ("transferFrom", "address from, address to, uint256 value", "", "bool"),
    ]
    getters = {"totalSupply"} | ({"balanceOf", "allowance"} if pub_maps else set())
    if pub_maps and ctx["token_allow"] != "allowance":
        sigs = [s for s in sigs if s[0] != "allowance"]
    w = W()
    w.decl(f"{'contract' if old else 'interface'} {name}")
    for fn, params, mut, ret in sigs:
        if old and fn in getters:
            continue
        mut = ctx.view_kw if mut and old else mut
        w(" ".join(p for p in (f"function {fn}({params})", vis, mut, f"returns ({ret});") if p))
    w("event Transfer(address indexed from, address indexed to, uint256 value);")
    w("event Approval(address indexed holder, address indexed spender, uint256 value);")
    w.close()
    return name, w.lines


def _mint_body(ctx: Ctx, w: W) -> None:
    to, val = ctx["p_to"], ctx["p_value"]
    ctx.inc(w, "totalSupply", val)
    ctx.inc(w, f"{ctx['token_bal']}[{to}]", val)
    w(ctx.emit("Transfer", f"address(0), {to}, {val}"))


def _token_sale(ctx: Ctx, b: Body, slot: Slot | None, form: str, oo: str, live: tuple[str, ...]) -> None:
    """Tokens for ether: pay amount × price (overflow_mul site) or get value / price (price_change site)."""
    u, price = ctx.u, ctx["price"]
    fixed_price = form == "overflow_mul"
    if fixed_price and ctx.major >= 8:
        b.state("price", ctx.state(u, price, immutable=True))
    else:
        inits = (
            ("0.001 ether", "10 gwei", "1000000000000000")
            if not ctx.old_units
            else ("1 finney", "10 szabo", "1000000000000")
        )
        b.state("price", ctx.state(u, price, init=pick(ctx, "price_init", inits)))
    b.event("evt_buy", f"address indexed buyer, {u} amount")
    amt, tokens = ctx["p_amount"], ctx["l_due"]
    if fixed_price:
        with b.fn("buy", ctx.func(ctx["fn_buy"], f"{u} {amt}", mut="payable", mods=live), doc="buy") as w:
            S.product(ctx, w, slot, ctx["l_share"], amt, price)
            ctx.req(w, f"msg.value == {ctx['l_share']}", "wrong payment", "err_input")
            _credit_tokens(ctx, w, amt)
    else:
        vuln = slot is not None and slot.vuln
        params = "" if vuln else f"{u} {ctx['p_min_out']}"
        with b.fn("buy", ctx.func(ctx["fn_buy"], params, mut="payable", mods=live), doc="buy") as w:
            ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
            w(f"{u} {tokens} = msg.value / {price};", slot.tag if slot else "")
            if not vuln:
                ctx.req(w, f"{tokens} >= {ctx['p_min_out']}", "price moved", "err_input")
            _credit_tokens(ctx, w, tokens)
        with b.fn(
            "set_price", ctx.func(ctx["fn_set_price"], f"{u} {ctx['p_price']}", mods=(oo,)), doc="set_price"
        ) as w:
            ctx.req(w, f"{ctx['p_price']} > 0", "zero price", "err_input")
            w(f"{price} = {ctx['p_price']};")


def _credit_tokens(ctx: Ctx, w: W, amount: str) -> None:
    ctx.inc(w, f"{ctx['token_bal']}[msg.sender]", amount)
    ctx.inc(w, "totalSupply", amount)
    w(ctx.emit(ctx["evt_buy"], f"msg.sender, {amount}"))
    w(ctx.emit("Transfer", f"address(0), msg.sender, {amount}"))


def _airdrop(ctx: Ctx, b: Body, slot: Slot | None) -> None:
    """A launch airdrop: a claim window (short_window site) or a doubled claim on a remainder (modulo)."""
    u, now = ctx.u, ctx.now
    launch, amount, claimed, count = ctx["launch"], ctx["drop_amount"], ctx["drop_claimed"], ctx["drop_count"]
    form = slot.name if slot else pick(ctx, "drop_form", ("short_window", "timestamp_modulo"))
    b.state("launch", ctx.state(u, launch))
    b.state(
        "drop_amount", f"{u} public constant {amount} = {pick(ctx, 'drop', ('100', '500', '1000'))} * 10**18;"
    )
    b.state("drop_claimed", f"mapping(address => bool) public {claimed};")
    b.state("drop_count", ctx.state(u, count))
    b.event("evt_drop", f"address indexed {ctx['p_who']}, {u} amount")
    tag = slot.tag if slot else ""
    got = ctx["l_share"]
    with b.fn("drop", ctx.func(ctx["fn_drop"]), doc="drop") as w:
        ctx.req(w, f"!{claimed}[msg.sender]", "already claimed", "err_state")
        if form == "short_window":
            ctx.req(
                w, f"{now} <= {launch} + {S.window(ctx, slot, 'drop')}", "airdrop is over", "err_late", tag
            )
        w(f"{claimed}[msg.sender] = true;")
        ctx.inc(w, count, "1")
        w(f"{u} {got} = {amount};")
        if form == "timestamp_modulo":
            w.open(f"if ({S.lucky(ctx, slot, count)}) {{", tag)
            w(f"{got} = {ctx.mul(got, '2')};")
            w.close()
        ctx.inc(w, f"{ctx['token_bal']}[msg.sender]", got)
        ctx.inc(w, "totalSupply", got)
        w(ctx.emit(ctx["evt_drop"], f"msg.sender, {got}"))


# --- multisig wallet ----------------------------------------------------------------------------------------
def build_multisig(ctx: Ctx, plan: Plan) -> Built:
    """A multisig wallet: owners confirm submitted transactions; optional revocation, daily limit, kill."""
    b = Body(ctx)
    limit = plan.has("limit", 0.3)
    init = plan.has("init", 0.12)
    _multisig_state(ctx, b)
    _multisig_setup(ctx, b, plan, init)
    _multisig_submit_and_confirm(ctx, b, plan)
    _multisig_execute(ctx, b, plan)
    _multisig_admin(ctx, b, plan)
    if limit:
        _daily_limit(ctx, b, plan.slot("limit"), ctx["only_signer"])
    return Built(b.members)


def _multisig_state(ctx: Ctx, b: Body) -> None:
    """The transaction struct, state variables, events, the two modifiers and the deposit fallback."""
    u = ctx.u
    owners, is_owner, req_n, txs, confs, cnt = (
        ctx[k] for k in ("owners", "is_owner", "required", "txs", "confirmations", "tx_count")
    )
    st = ctx["tx_struct"]
    w = W()
    w.decl(f"struct {st}")
    for field_ in (f"{ctx.pay_t} destination;", f"{u} value;", "bytes data;", "bool executed;"):
        w(field_)
    w.close()
    b.add(Member("struct", "struct", w.lines))
    b.state("txs", f"mapping({u} => {st}) public {txs};")
    b.state("confirmations", f"mapping({u} => mapping(address => bool)) public {confs};")
    b.state("is_owner", f"mapping(address => bool) public {is_owner};")
    b.state("owners", f"address[] public {owners};")
    b.state("required", ctx.state(u, req_n))
    b.state("tx_count", ctx.state(u, cnt))
    for key, params in (
        ("evt_deposit", f"address indexed sender, {u} value"),
        ("evt_submit", f"{u} indexed id"),
        ("evt_confirm", f"address indexed sender, {u} indexed id"),
        ("evt_exec", f"{u} indexed id"),
        ("evt_owner_add", "address indexed account"),
        ("evt_req_change", f"{u} value"),
    ):
        b.event(key, params)
    b.modifier(
        "only_wallet", "msg.sender == address(this)", "only via the wallet", "err_auth", doc="only_wallet"
    )
    b.modifier("only_signer", f"{is_owner}[msg.sender]", "not an owner", "err_auth", doc="only_signer")
    _fallback(ctx, b, ctx.emit(ctx["evt_deposit"], "msg.sender, msg.value"))


def _multisig_setup(ctx: Ctx, b: Body, plan: Plan, init: bool) -> None:
    """Owner list and threshold setup, in the constructor or (init) in a one-time initializer."""
    u, i = ctx.u, ctx["l_idx"]
    owners, is_owner, req_n = ctx["owners"], ctx["is_owner"], ctx["required"]
    po, pr = ctx["p_owners"], ctx["p_required"]
    params = f"address[]{ctx.mem} {po}, {u} {pr}"

    def setup(w: W) -> None:
        ctx.req(w, f"{po}.length > 0", "owners required", "err_input")
        ctx.req(w, f"{pr} > 0", "bad threshold", "err_input")
        ctx.req(w, f"{pr} <= {po}.length", "bad threshold", "err_input")
        ctx.loop(w, i, f"{po}.length")
        ctx.req(w, f"{po}[{i}] != address(0)", "zero address", "err_zero")
        w(f"{is_owner}[{po}[{i}]] = true;")
        ctx.end_loop(w, i)
        w(f"{owners} = {po};")
        w(f"{req_n} = {pr};")

    if init:
        b.state("initialized", ctx.state("bool", ctx["initialized"]))
        b.add(S.initializer(ctx, plan.slot("init"), params, setup))
    else:
        b.add(S.constructor(ctx, plan.slot("ctor"), params, setup))


def _multisig_submit_and_confirm(ctx: Ctx, b: Body, plan: Plan) -> None:
    """``submit`` (optionally through a struct local: the struct_local site), ``confirm`` and ``revoke``."""
    u, txs, confs, cnt = ctx.u, ctx["txs"], ctx["confirmations"], ctx["tx_count"]
    st, t, tid, sg = ctx["tx_struct"], ctx["l_tx"], ctx["p_tx_id"], ctx["only_signer"]
    dest, val, data = ctx["p_dest"], ctx["p_amount"], ctx["p_data"]
    with b.fn(
        "submit",
        ctx.func(
            ctx["fn_submit"],
            f"{ctx.pay_t} {dest}, {u} {val}, bytes{ctx.mem} {data}",
            mods=(sg,),
            returns=f"{u} {tid}",
        ),
        doc="submit",
    ) as w:
        w(f"{tid} = {cnt};")
        if plan.has("submit", 0.3):
            S.struct_local(ctx, w, plan.slot("submit"), st, t)
            for field_, value in (
                ("destination", dest),
                ("value", val),
                ("data", data),
                ("executed", "false"),
            ):
                w(f"{t}.{field_} = {value};")
            w(f"{txs}[{tid}] = {t};")
        else:
            w(f"{txs}[{tid}] = {st}({{destination: {dest}, value: {val}, data: {data}, executed: false}});")
        ctx.inc(w, cnt, "1")
        w(ctx.emit(ctx["evt_submit"], tid))
    with b.fn("confirm", ctx.func(ctx["fn_confirm"], f"{u} {tid}", mods=(sg,)), doc="confirm") as w:
        ctx.req(w, f"{txs}[{tid}].destination != address(0)", "unknown transaction", "err_state")
        ctx.req(w, f"!{confs}[{tid}][msg.sender]", "already confirmed", "err_state")
        w(f"{confs}[{tid}][msg.sender] = true;")
        w(ctx.emit(ctx["evt_confirm"], f"msg.sender, {tid}"))
    if pick(ctx, "revocable", (0, 1)):
        b.event("evt_revoke", f"address indexed sender, {u} indexed id")
        with b.fn("revoke", ctx.func(ctx["fn_revoke"], f"{u} {tid}", mods=(sg,)), doc="revoke") as w:
            ctx.req(w, f"{confs}[{tid}][msg.sender]", "not confirmed", "err_state")
            ctx.req(w, f"!{txs}[{tid}].executed", "already executed", "err_state")
            w(f"{confs}[{tid}][msg.sender] = false;")
            w(ctx.emit(ctx["evt_revoke"], f"msg.sender, {tid}"))


def _multisig_execute(ctx: Ctx, b: Body, plan: Plan) -> None:
    """``execute`` (the withdraw site), the ``is_confirmed`` count and the optional owner list view."""
    u, owners, req_n, txs, confs = ctx.u, ctx["owners"], ctx["required"], ctx["txs"], ctx["confirmations"]
    st, t, i, tid, sg = ctx["tx_struct"], ctx["l_tx"], ctx["l_idx"], ctx["p_tx_id"], ctx["only_signer"]
    with b.fn("execute", ctx.func(ctx["fn_execute"], f"{u} {tid}", mods=(sg,)), doc="execute") as w:
        ctx.req(w, f"{ctx['fn_is_confirmed']}({tid})", "not enough confirmations", "err_state")
        w(f"{st} storage {t} = {txs}[{tid}];")
        ctx.req(w, f"!{t}.executed", "already executed", "err_state")
        S.pay_then_flag(
            ctx,
            w,
            plan.slot("withdraw"),
            f"{t}.destination",
            f"{t}.value",
            f"{t}.executed = true;",
            data=f"{t}.data",
        )
        w(ctx.emit(ctx["evt_exec"], tid))
    with b.fn(
        "is_confirmed",
        ctx.func(ctx["fn_is_confirmed"], f"{u} {tid}", mut="view", returns="bool"),
        doc="is_confirmed",
        kind="view",
    ) as w:
        c = ctx["l_count"]
        w(f"{u} {c} = 0;")
        ctx.loop(w, i, f"{owners}.length")
        w.open(f"if ({confs}[{tid}][{owners}[{i}]]) {{")
        w(f"{c}++;")
        w.close()
        w.open(f"if ({c} == {req_n}) {{")
        w("return true;")
        w.close()
        ctx.end_loop(w, i)
        w("return false;")
    if pick(ctx, "get_owners", (0, 1)):
        with b.fn(
            "get_owners",
            ctx.func(ctx["fn_get_owners"], mut="view", returns=f"address[]{ctx.mem}"),
            doc="get_owners",
            kind="view",
        ) as w:
            w(f"return {owners};")


def _multisig_admin(ctx: Ctx, b: Body, plan: Plan) -> None:
    """The wallet-only privileged function (add an owner or change the threshold) and the optional kill."""
    owners, is_owner, req_n, ow = ctx["owners"], ctx["is_owner"], ctx["required"], ctx["only_wallet"]

    def add_owner(c: Ctx, w: W) -> None:
        a = c["p_who"]
        c.req(w, f"!{is_owner}[{a}]", "already an owner", "err_state")
        w(f"{is_owner}[{a}] = true;")
        w(f"{owners}.push({a});")
        w(c.emit(c["evt_owner_add"], a))

    def change_req(c: Ctx, w: W) -> None:
        r = c["p_required"]
        c.req(w, f"{r} > 0", "bad threshold", "err_input")
        c.req(w, f"{r} <= {owners}.length", "bad threshold", "err_input")
        w(f"{req_n} = {r};")
        w(c.emit(c["evt_req_change"], r))

    options = [
        Privileged("fn_add_owner", "add_owner", lambda c: f"address {c['p_who']}", add_owner),
        Privileged("fn_change_req", "change_req", lambda c: f"{c.u} {c['p_required']}", change_req),
    ]
    b.add(
        S.privileged(
            ctx,
            plan.slot("privileged"),
            pick(ctx, "privileged", options),
            ow,
            lambda who: f"{is_owner}[{who}]",
        )
    )
    if plan.has("kill", 0.25):
        b.add(S.kill(ctx, plan.slot("kill"), ow, f"{ctx.pay_t} {ctx['p_to']}", ctx["p_to"]))


def _daily_limit(ctx: Ctx, b: Body, slot: Slot | None, sg: str) -> None:
    """One owner may spend up to a daily limit alone; the running total is the overflow_add site."""
    u, now = ctx.u, ctx.now
    lim, spent, day = ctx["daily_limit"], ctx["spent_today"], ctx["last_day"]
    to, amt = ctx["p_to"], ctx["p_amount"]
    b.state(
        "daily_limit", ctx.state(u, lim, init=pick(ctx, "limit_value", ("1 ether", "5 ether", "10 ether")))
    )
    b.state("spent_today", ctx.state(u, spent))
    b.state("last_day", ctx.state(u, day))
    with b.fn(
        "daily", ctx.func(ctx["fn_daily"], f"{ctx.pay_t} {to}, {u} {amt}", mods=(sg,)), doc="daily"
    ) as w:
        w.open(f"if ({now} > {day} + 24 hours) {{")
        w(f"{day} = {now};")
        w(f"{spent} = 0;")
        w.close()
        if slot is not None and slot.vuln:
            if ctx.major >= 8:
                w.open("unchecked {")
            ctx.req(w, f"{spent} + {amt} <= {lim}", "over the daily limit", "err_funds", slot.tag)
            w(f"{spent} += {amt};", slot.tag)
            if ctx.major >= 8:
                w.close()
        else:
            ctx.req(w, f"{ctx.add(spent, amt)} <= {lim}", "over the daily limit", "err_funds")
            ctx.inc(w, spent, amt)
        w(f"{to}.transfer({amt});")


BUILDERS: dict[str, Callable[[Ctx, Plan], Built]] = {
    "erc20_token": build_erc20,
    "vault": build_vault,
    "auction": build_auction,
    "lottery": build_lottery,
    "multisig_wallet": build_multisig,
}

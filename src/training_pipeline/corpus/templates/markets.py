"""Family skeletons beyond the first five: an ERC721 collection, a crowdsale, a staking pool, an ether/token
exchange pair, an investment scheme with payouts, an escrow and an upgradeable proxy with its implementation.

Same contract as ``families``: every builder writes benign members, asks ``Plan.has`` for optional features
and hands each site a shape can occupy to the shared renderers in ``shapes``.
"""

from __future__ import annotations

from collections.abc import Callable

from training_pipeline.corpus.templates import families as F
from training_pipeline.corpus.templates import shapes as S
from training_pipeline.corpus.templates import texture
from training_pipeline.corpus.templates.families import Body, Built, Owned
from training_pipeline.corpus.templates.render import Ctx, Line, Member, W
from training_pipeline.corpus.templates.shapes import Plan, Privileged, pick


def _setter(role: str, doc: str, typ: str, param: str, target: str, check: str | None = None) -> Privileged:
    def body(c: Ctx, w: W) -> None:
        if check:
            c.req(w, check.format(p=c[param]), "invalid value", "err_input")
        w(f"{c[target]} = {c[param]};")

    return Privileged(role, doc, lambda c: f"{typ.replace('UINT', c.u)} {c[param]}", body)


def _has_code(ctx: Ctx, b: Body) -> str:
    name = ctx["fn_has_code"]
    with b.fn("has_code", ctx.func(name, "address account", vis="internal", mut="view", returns="bool")) as w:
        w("uint256 size;")
        w.open("assembly {")
        w("size := extcodesize(account)")
        w.close()
        w("return size > 0;")
    return name


def _pay_out(ctx: Ctx, w: W, slot, target: str, amount: str) -> None:
    """An owner payout of the contract's ether: transfer, checked call, or (ignored_call) a dropped call."""
    if slot is not None and slot.name == "ignored_call" and slot.vuln:
        ctx.bare_call(w, target, amount, slot.tag)
    elif slot is not None and slot.name == "ignored_call":
        ctx.checked_call(w, target, amount)
    elif pick(ctx, "payout_kind", (0, 1)):
        w(f"{target}.transfer({amount});")
    else:
        ctx.checked_call(w, target, amount)


# --- ERC721 collection --------------------------------------------------------------------------------------
def build_erc721(ctx: Ctx, plan: Plan) -> Built:
    """An ERC721 collection: paid mint with wallet limits, optional presale and rarity, owner withdrawal."""
    b = Body(ctx)
    u, now = ctx.u, ctx.now
    set_uri = _setter("fn_set_uri", "set_uri", f"string{ctx.mem}", "p_uri", "base_uri")
    set_price = _setter("fn_set_mint_price", "set_price", "UINT", "p_price", "mint_price")
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), set_uri, set_price, F._p_sweep(ctx)])
    oo = ctx["only_owner"]
    wd = plan.slot("withdraw")
    locked = wd is not None and wd.name == "locked_ether"
    itf_lines = _erc721_state(ctx, b)
    has_code = _has_code(ctx, b)
    _erc721_views_and_transfers(ctx, b, own)
    rar, rarity_vuln = _erc721_rarity(ctx, b, plan)
    _erc721_mint(ctx, b, plan, own, has_code, rar, rarity_vuln)
    if not (locked and wd.vuln):
        with b.fn("withdraw", ctx.func(ctx["fn_withdraw"], mods=(oo,)), doc="withdraw_proceeds") as w:
            amt = ctx["l_due"]
            w(f"{u} {amt} = {ctx.this_balance};")
            ctx.req(w, f"{amt} > 0", "nothing to withdraw", "err_funds")
            _pay_out(ctx, w, wd, ctx["owner"], amt)

    def ctor_body(w: W) -> None:
        w(f"{ctx['sale_start']} = {now} + {pick(ctx, 'sale_delay', ('1 days', '3 days', '12 hours'))};")

    built = own.finish("", ctor_body)
    built.interfaces.append(itf_lines)
    return built


def _erc721_state(ctx: Ctx, b: Body) -> list[Line]:
    """State variables, events and the receiver interface of the collection (returned as lines)."""
    u = ctx.u
    owners_, bals, apprs, ops = (
        ctx[k] for k in ("nft_owners", "nft_balances", "nft_approvals", "nft_operators")
    )
    total, cap, price, per, minted = (
        ctx[k] for k in ("total_minted", "max_supply", "mint_price", "max_per_wallet", "minted")
    )
    b.state("name", f'string public name = "{ctx["contract"]}";')
    b.state("symbol", f'string public symbol = "{ctx["token_symbol"]}";')
    b.state("base_uri", f"string public {ctx['base_uri']};")
    b.state("nft_owners", f"mapping({u} => address) internal {owners_};")
    b.state("nft_balances", f"mapping(address => {u}) internal {bals};")
    b.state("nft_approvals", f"mapping({u} => address) internal {apprs};")
    b.state("nft_operators", f"mapping(address => mapping(address => bool)) internal {ops};")
    b.state("total_minted", ctx.state(u, total))
    b.state(
        "max_supply", f"{u} public constant {cap} = {pick(ctx, 'nft_cap', ('1000', '5000', '10000', '777'))};"
    )
    b.state("max_per_wallet", f"{u} public constant {per} = {pick(ctx, 'nft_per', ('3', '5', '10', '20'))};")
    price_init = pick(ctx, "nft_price", ("0.05 ether", "0.08 ether", "0.1 ether", "0.02 ether"))
    b.state("mint_price", ctx.state(u, price, init=price_init))
    b.state("minted", f"mapping(address => {u}) public {minted};")
    b.state("received_magic", f"bytes4 private constant {ctx['received_magic']} = 0x150b7a02;")
    b.one(
        "event",
        "e_transfer",
        "event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);",
    )
    b.one(
        "event",
        "e_approval",
        "event Approval(address indexed holder, address indexed approved, uint256 indexed tokenId);",
    )
    b.one(
        "event",
        "e_all",
        "event ApprovalForAll(address indexed holder, address indexed operator, bool approved);",
    )
    itf = W()
    itf.decl(f"interface {ctx['itf_receiver']}")
    data_t = "bytes" if ctx.major == 4 else "bytes calldata"
    itf(
        f"function onERC721Received(address operator, address from, uint256 tokenId, {data_t} data)"
        " external returns (bytes4);"
    )
    itf.close()
    return itf.lines


def _erc721_views_and_transfers(ctx: Ctx, b: Body, own: Owned) -> None:
    """The ERC721 views, approvals and ``transferFrom``."""
    u = ctx.u
    owners_, bals, apprs, ops = (
        ctx[k] for k in ("nft_owners", "nft_balances", "nft_approvals", "nft_operators")
    )
    tid, who, op, flag, to, frm = (
        ctx[k] for k in ("p_token_id", "p_who", "p_operator", "p_flag", "p_to", "p_from")
    )

    with b.fn(
        "balance_of",
        ctx.func("balanceOf", f"address {who}", mut="view", returns=u),
        doc="balance_of",
        kind="view",
    ) as w:
        ctx.req(w, f"{who} != address(0)", "zero address", "err_zero")
        w(f"return {bals}[{who}];")
    with b.fn(
        "owner_of",
        ctx.func("ownerOf", f"{u} {tid}", mut="view", returns="address"),
        doc="owner_of",
        kind="view",
    ) as w:
        w(f"address holder = {owners_}[{tid}];")
        ctx.req(w, "holder != address(0)", "unknown token", "err_input")
        w("return holder;")
    with b.fn(
        "get_approved", ctx.func("getApproved", f"{u} {tid}", mut="view", returns="address"), kind="view"
    ) as w:
        w(f"return {apprs}[{tid}];")
    with b.fn(
        "is_all",
        ctx.func("isApprovedForAll", f"address {who}, address {op}", mut="view", returns="bool"),
        kind="view",
    ) as w:
        w(f"return {ops}[{who}][{op}];")
    with b.fn("approve", ctx.func("approve", f"address {to}, {u} {tid}"), doc="approve_nft") as w:
        w(f"address holder = {owners_}[{tid}];")
        ctx.req(w, f"msg.sender == holder || {ops}[holder][msg.sender]", "not allowed", "err_auth")
        w(f"{apprs}[{tid}] = {to};")
        w(ctx.emit("Approval", f"holder, {to}, {tid}"))
    with b.fn("set_all", ctx.func("setApprovalForAll", f"address {op}, bool {flag}"), doc="set_all") as w:
        w(f"{ops}[msg.sender][{op}] = {flag};")
        w(ctx.emit("ApprovalForAll", f"msg.sender, {op}, {flag}"))
    with b.fn(
        "transfer_from",
        ctx.func("transferFrom", f"address {frm}, address {to}, {u} {tid}", mods=own.live),
        doc="transfer_nft",
    ) as w:
        ctx.req(w, f"{owners_}[{tid}] == {frm}", "wrong owner", "err_auth")
        ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
        ctx.req(
            w,
            f"msg.sender == {frm} || {apprs}[{tid}] == msg.sender || {ops}[{frm}][msg.sender]",
            "not allowed",
            "err_auth",
        )
        w(f"delete {apprs}[{tid}];")
        ctx.dec(w, f"{bals}[{frm}]", "1")
        ctx.inc(w, f"{bals}[{to}]", "1")
        w(f"{owners_}[{tid}] = {to};")
        w(ctx.emit("Transfer", f"{frm}, {to}, {tid}"))


def _erc721_rarity(ctx: Ctx, b: Body, plan: Plan) -> tuple[bool, bool]:
    """Optional rarity: drawn at mint from chain entropy (flawed) or revealed from a committed seed."""
    u, oo, tid = ctx.u, ctx["only_owner"], ctx["p_token_id"]
    total, cap = ctx["total_minted"], ctx["max_supply"]
    draw_slot = plan.slot("draw")
    rar = plan.has("draw", 0.3)
    rarity_vuln = draw_slot is not None and draw_slot.vuln
    if rar and rarity_vuln:
        b.state("rarity", f"mapping({u} => {u}) public {ctx['rarity']};")
    elif rar:
        off, sh, seed = ctx["rarity_offset"], ctx["seed_hash"], ctx["p_seed"]
        b.state("rarity_offset", ctx.state(u, off))
        S.commit_seed(ctx, b, oo, sh, (f"{total} == 0", "sale started", "err_state"))
        with b.fn("reveal", ctx.func(ctx["fn_reveal"], f"uint256 {seed}", mods=(oo,)), doc="reveal") as w:
            ctx.req(w, f"{total} == {cap}", "sale not over", "err_state")
            ctx.req(w, f"{ctx.hash(seed)} == {sh}", "seed does not match", "err_input")
            w(f"{off} = uint256({ctx.hash(seed, total)}) % 100;")
        with b.fn(
            "rarity_of", ctx.func(ctx["fn_rarity_of"], f"{u} {tid}", mut="view", returns=u), kind="view"
        ) as w:
            w(f"return uint256({ctx.hash(off, tid)}) % 100;")
    return rar, rarity_vuln


def _erc721_mint(
    ctx: Ctx, b: Body, plan: Plan, own: Owned, has_code: str, rar: bool, rarity_vuln: bool
) -> None:
    """``mint`` and the optional ``presale``: payment, limits, the receiver callback (reentrancy slot)."""
    u, now, qty = ctx.u, ctx.now, ctx["p_qty"]
    wd = plan.slot("withdraw")
    locked = wd is not None and wd.name == "locked_ether"
    mint_body = _erc721_mint_body(ctx, b, plan, has_code, rar, rarity_vuln)
    mint_tag = wd.tag if locked else ""
    with b.fn(
        "mint",
        ctx.func(ctx["fn_mint_nft"], f"{u} {qty}", mut="payable", mods=own.live),
        mint_tag,
        doc="mint_nft",
    ) as w:
        ctx.req(w, f"{now} >= {ctx['sale_start']}", "sale not open", "err_early")
        mint_body(w)
    b.state("sale_start", ctx.state(u, ctx["sale_start"]))
    if plan.has("window", 0.25):
        ws = plan.slot("window")
        with b.fn(
            "presale",
            ctx.func(ctx["fn_presale"], f"{u} {qty}", mut="payable", mods=own.live),
            mint_tag,
            doc="presale",
        ) as w:
            ctx.req(
                w,
                f"{now} <= {ctx['sale_start']} + {S.window(ctx, ws, 'presale')}",
                "presale over",
                "err_late",
                ws.tag if ws else "",
            )
            mint_body(w)


def _erc721_mint_body(
    ctx: Ctx, b: Body, plan: Plan, has_code: str, rar: bool, rarity_vuln: bool
) -> Callable[[W], None]:
    """The shared mint body writer: limits, payment (price site), rarity draw, callback (mint site)."""
    u = ctx.u
    owners_, bals = ctx["nft_owners"], ctx["nft_balances"]
    total, cap, price, per, minted = (
        ctx[k] for k in ("total_minted", "max_supply", "mint_price", "max_per_wallet", "minted")
    )
    mint_slot, draw_slot, price_slot = plan.slot("mint"), plan.slot("draw"), plan.slot("price")
    callback_first = mint_slot is not None and mint_slot.vuln
    ctag = mint_slot.tag if mint_slot else ""
    qty, cost, i, nid = ctx["p_qty"], ctx["l_cost"], ctx["l_idx"], ctx["l_id"]

    def mint_body(w: W) -> None:
        ctx.req(w, f"{qty} > 0", "zero quantity", "err_input")
        ctx.req(w, f"{ctx.add(total, qty)} <= {cap}", "sold out", "err_full")
        ctx.req(w, f"{ctx.add(f'{minted}[msg.sender]', qty)} <= {per}", "wallet limit", "err_full")
        S.product(ctx, w, price_slot, cost, qty, price)
        ctx.req(w, f"msg.value == {cost}", "wrong payment", "err_input")
        if not callback_first:
            ctx.inc(w, f"{minted}[msg.sender]", qty)
        ctx.loop(w, i, qty)
        ctx.inc(w, total, "1")
        w(f"{u} {nid} = {total};")
        w(f"{owners_}[{nid}] = msg.sender;")
        ctx.inc(w, f"{bals}[msg.sender]", "1")
        w(ctx.emit("Transfer", f"address(0), msg.sender, {nid}"))
        if rar and rarity_vuln:
            S.entropy(ctx, b, w, draw_slot, ctx["l_rand"], "100", mix=nid)
            w(f"{ctx['rarity']}[{nid}] = {ctx['l_rand']};", draw_slot.tag)
        w.open(f"if ({has_code}(msg.sender)) {{")
        call = f'{ctx["itf_receiver"]}(msg.sender).onERC721Received(msg.sender, address(0), {nid}, "")'
        ctx.req(
            w,
            f"{call} == {ctx['received_magic']}",
            "receiver rejected",
            "err_transfer",
            ctag if callback_first else "",
        )
        w.close()
        ctx.end_loop(w, i)
        if callback_first:
            ctx.inc(w, f"{minted}[msg.sender]", qty, ctag)

    return mint_body


# --- crowdsale ----------------------------------------------------------------------------------------------
def build_crowdsale(ctx: Ctx, plan: Plan) -> Built:
    """A capped, timed crowdsale: buy at a rate, finalize or refund; optional bonuses, draw, distribution."""
    b = Body(ctx)
    u, now = ctx.u, ctx.now
    extend = Privileged(
        "fn_extend_sale",
        "extend_sale",
        lambda c: f"{c.u} {c['p_secs']}",
        lambda c, w: c.inc(w, c["closing"], c["p_secs"]),
    )
    set_wallet = _setter(
        "fn_set_collector", "set_collector", ctx.pay_t, "p_collector", "wallet", "{p} != address(0)"
    )
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), extend, set_wallet])
    rate, wallet, goal, cap = (ctx[k] for k in ("rate", "wallet", "goal", "cap_wei"))
    opening, closing = ctx["opening"], ctx["closing"]
    price_slot, fwd = plan.slot("price"), plan.slot("withdraw")
    form = price_slot.name if price_slot else pick(ctx, "sale_form", ("overflow_mul", "price_change"))
    has_lock_site = fwd is not None and fwd.name == "locked_ether"
    locked = has_lock_site and fwd.vuln
    refunds = plan.has("withdraw", 0.6) and not has_lock_site
    _crowdsale_state(ctx, b, own.priv.role != "fn_extend_sale")
    _crowdsale_buy(ctx, b, plan, own, form, locked)
    _crowdsale_finalize(ctx, b, plan, locked, refunds)
    _crowdsale_extras(ctx, b, plan)
    rp, wp, gp, cp, op_, dp = (
        ctx[k] for k in ("p_rate", "p_collector", "p_amount", "p_price", "p_bidding_time", "p_secs")
    )

    def ctor_body(w: W) -> None:
        ctx.req(w, f"{rp} > 0", "zero rate", "err_input")
        w(f"{rate} = {rp};")
        w(f"{wallet} = {wp};")
        w(f"{goal} = {gp};")
        w(f"{cap} = {cp};")
        w(f"{opening} = {now} + {op_};")
        w(f"{closing} = {now} + {op_} + {dp};")

    return own.finish(f"{u} {rp}, {ctx.pay_t} {wp}, {u} {gp}, {u} {cp}, {u} {op_}, {u} {dp}", ctor_body)


def _crowdsale_state(ctx: Ctx, b: Body, closing_fixed: bool) -> None:
    """Token credits, rate, wallet, totals, the sale period, ledger, backer list and the events."""
    u, L = ctx.u, ctx["ledger"]
    tb, rate, wallet, raised, goal, cap = (
        ctx[k] for k in ("token_credit", "rate", "wallet", "raised", "goal", "cap_wei")
    )
    opening, closing, fin, backers = ctx["opening"], ctx["closing"], ctx["finalized"], ctx["payees"]
    b.state("token_credit", f"mapping(address => {u}) public {tb};")
    b.state("rate", ctx.state(u, rate))
    b.state("wallet", ctx.state(ctx.pay_t, wallet))
    b.state("raised", ctx.state(u, raised))
    b.state("goal", ctx.state(u, goal, immutable=True))
    b.state("cap_wei", ctx.state(u, cap, immutable=True))
    b.state("opening", ctx.state(u, opening, immutable=True))
    b.state("closing", ctx.state(u, closing, immutable=closing_fixed))
    b.state("finalized", ctx.state("bool", fin))
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state("payees", f"{ctx.pay_t}[] public {backers};")
    b.event("evt_buy", f"address indexed buyer, {u} value, {u} amount")
    b.event("evt_finalized", f"{u} raised")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _crowdsale_buy(ctx: Ctx, b: Body, plan: Plan, own: Owned, form: str, locked: bool) -> None:
    """``buy`` (price, bonus and loop sites; locked_ether tag) and, for a movable rate, ``set_rate``."""
    u, now, oo, L = ctx.u, ctx.now, ctx["only_owner"], ctx["ledger"]
    tb, rate, raised, cap = ctx["token_credit"], ctx["rate"], ctx["raised"], ctx["cap_wei"]
    opening, closing, backers = ctx["opening"], ctx["closing"], ctx["payees"]
    price_slot, fwd = plan.slot("price"), plan.slot("withdraw")
    tokens, mo = ctx["l_tokens"], ctx["p_min_out"]
    vuln_price = price_slot is not None and price_slot.vuln
    min_out = form == "price_change" and not vuln_price
    bonus = plan.has("bonus", 0.3)
    if bonus:
        b.state(
            "max_bonus",
            f"{u} public constant {ctx['max_bonus']} = {pick(ctx, 'max_bonus', ('20', '25', '30'))};",
        )
        b.state("bonus_decay", ctx.state(u, ctx["bonus_decay"], init=pick(ctx, "decay", ("1", "2", "5"))))
    loop_slot = plan.slot("loop")
    params = f"{u} {mo}" if min_out else ""
    buy_tag = fwd.tag if locked else ""
    with b.fn(
        "buy", ctx.func(ctx["fn_buy"], params, mut="payable", mods=own.live), buy_tag, doc="buy_sale"
    ) as w:
        ctx.req(w, f"{now} >= {opening} && {now} <= {closing}", "sale closed", "err_state")
        ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
        ctx.req(w, f"{ctx.add(raised, 'msg.value')} <= {cap}", "cap reached", "err_full")
        if form == "overflow_mul":
            S.product(ctx, w, price_slot, tokens, "msg.value", rate)
        else:
            w(f"{u} {tokens} = {ctx.mul('msg.value', rate)};", price_slot.tag if price_slot else "")
        if bonus:
            bs, late = plan.slot("bonus"), ctx["l_late"]
            w(f"{u} {late} = {S.per_second(ctx, bs, opening, ctx['bonus_decay'])};", bs.tag if bs else "")
            w.open(f"if ({late} < {ctx['max_bonus']}) {{")
            left = ctx.sub(ctx["max_bonus"], late)
            w(f"{tokens} = {ctx.add(tokens, ctx.mul(tokens, f'({left})') + ' / 100')};")
            w.close()
        if min_out:
            ctx.req(w, f"{tokens} >= {mo}", "rate moved", "err_input")
        w.open(f"if ({L}[msg.sender] == 0) {{")
        S.capped_push(ctx, b, w, loop_slot, backers, ctx.sender_pay)
        w.close()
        ctx.inc(w, f"{L}[msg.sender]", "msg.value")
        ctx.inc(w, raised, "msg.value")
        ctx.inc(w, f"{tb}[msg.sender]", tokens)
        w(ctx.emit(ctx["evt_buy"], f"msg.sender, msg.value, {tokens}"))
    if form == "price_change":
        with b.fn(
            "set_rate", ctx.func(ctx["fn_set_rate"], f"{u} {ctx['p_rate']}", mods=(oo,)), doc="set_rate"
        ) as w:
            ctx.req(w, f"{ctx['p_rate']} > 0", "zero rate", "err_input")
            w(f"{rate} = {ctx['p_rate']};")


def _crowdsale_finalize(ctx: Ctx, b: Body, plan: Plan, locked: bool, refunds: bool) -> None:
    """``finalize`` (optional completion bonus loop: the loop site) and the refund withdrawal."""
    u, now, oo = ctx.u, ctx.now, ctx["only_owner"]
    tb, wallet, raised, goal, cap = (ctx[k] for k in ("token_credit", "wallet", "raised", "goal", "cap_wei"))
    closing, fin, backers = ctx["closing"], ctx["finalized"], ctx["payees"]
    loop_slot = plan.slot("loop")
    looped = plan.has("loop", 0.35)
    if looped:
        b.state(
            "completion_bonus",
            ctx.state(u, ctx["completion_bonus"], init=pick(ctx, "cbonus", ("10", "50", "100"))),
        )
    with b.fn("finalize", ctx.func(ctx["fn_finalize"], mods=(oo,)), doc="finalize") as w:
        ctx.req(w, f"!{fin}", "already finalized", "err_state")
        ctx.req(w, f"{now} > {closing} || {raised} >= {cap}", "sale still open", "err_early")
        w(f"{fin} = true;")
        if looped:
            i = S.list_loop(ctx, w, loop_slot, backers)
            ctx.inc(w, f"{tb}[{backers}[{i}]]", ctx["completion_bonus"])
            ctx.end_loop(w, i)
        w(ctx.emit(ctx["evt_finalized"], raised))
        if not locked:
            w.open(f"if ({raised} >= {goal}) {{")
            w(f"{wallet}.transfer({ctx.this_balance});")
            w.close()
    if refunds:

        def pre(w: W) -> None:
            ctx.req(w, f"{fin} && {raised} < {goal}", "no refunds", "err_state")

        b.add(S.ledger_withdraw(ctx, plan.slot("withdraw"), pre))


def _crowdsale_extras(ctx: Ctx, b: Body, plan: Plan) -> None:
    """The token credit view, an optional bonus-token draw among backers and an optional distribution."""
    u, now, oo = ctx.u, ctx.now, ctx["only_owner"]
    tb, closing, backers = ctx["token_credit"], ctx["closing"], ctx["payees"]
    with b.fn(
        "tokens_of",
        ctx.func(ctx["fn_tokens_of"], f"address {ctx['p_who']}", mut="view", returns=u),
        kind="view",
    ) as w:
        w(f"return {tb}[{ctx['p_who']}];")
    if plan.has("draw", 0.25):
        bt = ctx["bonus_tokens"]
        b.state(
            "bonus_tokens", f"{u} public constant {bt} = {pick(ctx, 'bt', ('1000', '5000', '250'))} * 10**18;"
        )

        def winner(w: W, r: str) -> None:
            ctx.inc(w, f"{tb}[{backers}[{r}]]", bt)

        S.seeded_draw(ctx, b, plan.slot("draw"), backers, oo, "fn_draw", winner, guard=f"{now} > {closing}")
    if plan.has("distribute", 0.2):
        F._distribute(ctx, b, plan.slot("distribute"), backers, oo)


# --- staking ------------------------------------------------------------------------------------------------
def build_staking(ctx: Ctx, plan: Plan) -> Built:
    """A staking pool: stakes accrue reward points per block; optional lock, sync loop and distribution."""
    b = Body(ctx)
    set_reward = _setter("fn_set_reward", "set_reward", "UINT", "p_reward", "reward_rate")
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), F._p_fee(ctx), set_reward])
    lock = plan.has("limit", 0.3)
    _staking_state(ctx, b, lock)
    _staking_stake(ctx, b, plan, own, lock)
    _staking_rewards(ctx, b, plan, lock)
    return own.finish()


def _staking_state(ctx: Ctx, b: Body, lock: bool) -> None:
    """Ledger, totals, reward rate and points, staker list, the optional lock map and the events."""
    u, L = ctx.u, ctx["ledger"]
    total, rr, pts, lb, stakers = (
        ctx[k] for k in ("total_staked", "reward_rate", "reward_points", "last_block", "payees")
    )
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state("total_staked", ctx.state(u, total))
    b.state("reward_rate", ctx.state(u, rr, init=pick(ctx, "rr", ("10", "100", "1000"))))
    b.state("reward_points", f"mapping(address => {u}) public {pts};")
    b.state("last_block", f"mapping(address => {u}) public {lb};")
    b.state("claimed_points", f"mapping(address => {u}) public {ctx['claimed_points']};")
    b.state("payees", f"{ctx.pay_t}[] public {stakers};")
    if lock:
        b.state("lock", f"mapping(address => {u}) public {ctx['lock']};")
    b.event("evt_stake", f"address indexed {ctx['p_who']}, {u} amount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")
    b.event("evt_reward", f"address indexed {ctx['p_who']}, {u} points")


def _staking_stake(ctx: Ctx, b: Body, plan: Plan, own: Owned, lock: bool) -> None:
    """The internal ``accrue``, ``stake`` (the loop site's push) and the ledger withdrawal of stakes."""
    now, L = ctx.now, ctx["ledger"]
    total, rr, pts, lb, stakers = (
        ctx[k] for k in ("total_staked", "reward_rate", "reward_points", "last_block", "payees")
    )
    acc, who = ctx["fn_accrue"], ctx["p_who"]
    with b.fn("accrue", ctx.func(acc, f"address {who}", vis="internal")) as w:
        w.open(f"if ({lb}[{who}] != 0) {{")
        pending = ctx.mul(ctx.mul(f"{L}[{who}]", rr), f"(block.number - {lb}[{who}])")
        ctx.inc(w, f"{pts}[{who}]", f"{pending} / 1e18" if not ctx.safemath else f"{pending}.div(1e18)")
        w.close()
        w(f"{lb}[{who}] = block.number;")
    with b.fn("stake", ctx.func(ctx["fn_stake"], mut="payable", mods=own.live), doc="stake") as w:
        ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
        w(f"{acc}(msg.sender);")
        w.open(f"if ({L}[msg.sender] == 0) {{")
        S.capped_push(ctx, b, w, plan.slot("loop"), stakers, ctx.sender_pay)
        w.close()
        ctx.inc(w, f"{L}[msg.sender]", "msg.value")
        ctx.inc(w, total, "msg.value")
        if lock:
            w(
                f"{ctx['lock']}[msg.sender] = {now} + "
                f"{pick(ctx, 'stake_lock', ('7 days', '30 days', '1 days'))};"
            )
        w(ctx.emit(ctx["evt_stake"], "msg.sender, msg.value"))

    def pre(w: W) -> None:
        w(f"{acc}(msg.sender);")
        if lock:
            ctx.req(w, f"{now} >= {ctx['lock']}[msg.sender]", "stake is locked", "err_early")

    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw"), pre, lambda w, v: ctx.dec(w, total, v)))


def _staking_rewards(ctx: Ctx, b: Body, plan: Plan, lock: bool) -> None:
    """Claiming points, the optional sync loop (loop site), lock extension (limit site) and distribution."""
    u, oo, pts, stakers, acc = ctx.u, ctx["only_owner"], ctx["reward_points"], ctx["payees"], ctx["fn_accrue"]
    with b.fn("claim", ctx.func(ctx["fn_claim_rewards"]), doc="claim_rewards") as w:
        w(f"{acc}(msg.sender);")
        p = ctx["l_share"]
        w(f"{u} {p} = {pts}[msg.sender];")
        ctx.req(w, f"{p} > 0", "nothing to claim", "err_funds")
        w(f"{pts}[msg.sender] = 0;")
        ctx.inc(w, f"{ctx['claimed_points']}[msg.sender]", p)
        w(ctx.emit(ctx["evt_reward"], f"msg.sender, {p}"))
    if plan.has("loop", 0.35):
        with b.fn("sync_all", ctx.func(ctx["fn_sync_all"]), doc="sync_all") as w:
            i = S.list_loop(ctx, w, plan.slot("loop"), stakers)
            w(f"{acc}({stakers}[{i}]);")
            ctx.end_loop(w, i)
    if lock:
        secs = ctx["p_secs"]
        with b.fn("extend", ctx.func(ctx["fn_extend"], f"{u} {secs}"), doc="extend") as w:
            S.add_to(ctx, w, plan.slot("limit"), f"{ctx['lock']}[msg.sender]", secs)
    if plan.has("distribute", 0.2):
        F._distribute(ctx, b, plan.slot("distribute"), stakers, oo)


# --- simple exchange (ether / token pair) -------------------------------------------------------------------
def build_exchange(ctx: Ctx, plan: Plan) -> Built:
    """An ether/token pool: liquidity shares, constant-product swaps both ways, ledger withdrawal."""
    b = Body(ctx)
    tb = ctx["token_credit"]

    def mint_body(c: Ctx, w: W) -> None:
        c.inc(w, f"{tb}[{c['p_to']}]", c["p_value"])

    mint = Privileged(
        "fn_mint_tokens", "mint", lambda c: f"address {c['p_to']}, {c.u} {c['p_value']}", mint_body
    )
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), F._p_fee(ctx), mint])
    _exchange_state(ctx, b)
    _exchange_liquidity(ctx, b, own)
    _exchange_swaps(ctx, b, plan, own)
    return own.finish()


def _exchange_state(ctx: Ctx, b: Body) -> None:
    """Token credits, ledger, both reserves, liquidity shares and the events."""
    u, tb, L = ctx.u, ctx["token_credit"], ctx["ledger"]
    re_, rt, sh, ts = ctx["reserve_eth"], ctx["reserve_token"], ctx["shares"], ctx["total_shares"]
    b.state("token_credit", f"mapping(address => {u}) public {tb};")
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state("reserve_eth", ctx.state(u, re_))
    b.state("reserve_token", ctx.state(u, rt))
    b.state("shares", f"mapping(address => {u}) public {sh};")
    b.state("total_shares", ctx.state(u, ts))
    b.event("evt_swap", f"address indexed trader, {u} amountIn, {u} amountOut, bool ethIn")
    b.event("evt_liquidity", f"address indexed provider, {u} ethAmount, {u} tokenAmount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _exchange_liquidity(ctx: Ctx, b: Body, own: Owned) -> None:
    """The ``quote`` formula and adding or removing liquidity."""
    u, tb, L = ctx.u, ctx["token_credit"], ctx["ledger"]
    re_, rt, sh, ts = ctx["reserve_eth"], ctx["reserve_token"], ctx["shares"], ctx["total_shares"]
    ai, ri, ro = ctx["p_amount_in"], ctx["p_reserve_in"], ctx["p_reserve_out"]
    with b.fn(
        "quote",
        ctx.func(ctx["fn_quote"], f"{u} {ai}, {u} {ri}, {u} {ro}", mut="pure", returns=u),
        doc="quote",
        kind="view",
    ) as w:
        ctx.req(w, f"{ai} > 0", "zero input", "err_input")
        ctx.req(w, f"{ri} > 0 && {ro} > 0", "empty pool", "err_state")
        fee_in = ctx["l_share"]
        w(f"{u} {fee_in} = {ctx.mul(ai, '997')};")
        w(f"return {ctx.mul(fee_in, ro)} / ({ctx.add(ctx.mul(ri, '1000'), fee_in)});")
    amt = ctx["p_amount"]
    with b.fn(
        "add_liq", ctx.func(ctx["fn_add_liq"], f"{u} {amt}", mut="payable", mods=own.live), doc="add_liq"
    ) as w:
        ctx.req(w, f"msg.value > 0 && {amt} > 0", "empty deposit", "err_input")
        ctx.req(w, f"{tb}[msg.sender] >= {amt}", "not enough tokens", "err_funds")
        ctx.dec(w, f"{tb}[msg.sender]", amt)
        ctx.inc(w, re_, "msg.value")
        ctx.inc(w, rt, amt)
        ctx.inc(w, f"{sh}[msg.sender]", "msg.value")
        ctx.inc(w, ts, "msg.value")
        w(ctx.emit(ctx["evt_liquidity"], f"msg.sender, msg.value, {amt}"))
    ps = ctx["p_share"]
    with b.fn("remove_liq", ctx.func(ctx["fn_remove_liq"], f"{u} {ps}"), doc="remove_liq") as w:
        ctx.req(w, f"{ps} > 0 && {sh}[msg.sender] >= {ps}", "not enough shares", "err_funds")
        e, t = ctx["l_due"], ctx["l_tokens"]
        w(f"{u} {e} = {ctx.mul(re_, ps)} / {ts};")
        w(f"{u} {t} = {ctx.mul(rt, ps)} / {ts};")
        ctx.dec(w, f"{sh}[msg.sender]", ps)
        ctx.dec(w, ts, ps)
        ctx.dec(w, re_, e)
        ctx.dec(w, rt, t)
        ctx.inc(w, f"{L}[msg.sender]", e)
        ctx.inc(w, f"{tb}[msg.sender]", t)


def _exchange_swaps(ctx: Ctx, b: Body, plan: Plan, own: Owned) -> None:
    """Ether-in (the swap site) and token-in (the move site) swaps, withdrawal and optional token transfer."""
    u, tb, L, q = ctx.u, ctx["token_credit"], ctx["ledger"], ctx["fn_quote"]
    re_, rt, out, amt = ctx["reserve_eth"], ctx["reserve_token"], ctx["l_out_amt"], ctx["p_amount"]
    swap = plan.slot("swap")
    vuln = swap is not None and swap.vuln
    mo = ctx["p_min_out"]
    with b.fn(
        "swap_in",
        ctx.func(ctx["fn_swap_in"], "" if vuln else f"{u} {mo}", mut="payable", mods=own.live),
        doc="swap_in",
    ) as w:
        w(f"{u} {out} = {q}(msg.value, {re_}, {rt});", swap.tag if swap else "")
        if not vuln:
            ctx.req(w, f"{out} >= {mo}", "price moved", "err_input")
        ctx.inc(w, re_, "msg.value")
        ctx.dec(w, rt, out)
        ctx.inc(w, f"{tb}[msg.sender]", out)
        w(ctx.emit(ctx["evt_swap"], f"msg.sender, msg.value, {out}, true"))
    with b.fn(
        "swap_out", ctx.func(ctx["fn_swap_out"], f"{u} {amt}, {u} {mo}", mods=own.live), doc="swap_out"
    ) as w:
        S.subtract(ctx, w, plan.slot("move"), f"{tb}[msg.sender]", amt)
        w(f"{u} {out} = {q}({amt}, {rt}, {re_});")
        ctx.req(w, f"{out} >= {mo}", "price moved", "err_input")
        ctx.inc(w, rt, amt)
        ctx.dec(w, re_, out)
        ctx.inc(w, f"{L}[msg.sender]", out)
        w(ctx.emit(ctx["evt_swap"], f"msg.sender, {amt}, {out}, false"))
    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw")))
    if pick(ctx, "send_tokens", (0, 1)):
        to = ctx["p_to"]
        with b.fn(
            "send_tokens", ctx.func(ctx["fn_send_tokens"], f"address {to}, {u} {amt}"), doc="transfer"
        ) as w:
            ctx.req(w, f"{tb}[msg.sender] >= {amt}", "not enough tokens", "err_funds")
            ctx.dec(w, f"{tb}[msg.sender]", amt)
            ctx.inc(w, f"{tb}[{to}]", amt)


# --- investment scheme (pays earlier investors from later deposits) ----------------------------------------
def build_investment(ctx: Ctx, plan: Plan) -> Built:
    """A scheme paying early investors from later deposits; optional interest, loop, jackpot, draw, bonus."""
    b = Body(ctx)
    set_rate = _setter("fn_set_rate", "set_rate", "UINT", "p_rate", "daily_rate", "{p} <= 100")
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), F._p_fee(ctx), F._p_collector(ctx), set_rate])
    _investment_state(ctx, b)
    window = plan.has("window", 0.3)
    jackpot = window or plan.has("draw", 0.25) or plan.has("bonus", 0.2)
    if jackpot:
        b.state("jackpot", ctx.state(ctx.u, ctx["jackpot"]))
    if window:
        b.state("last_investor", ctx.state("address", ctx["last_investor"]))
        b.state("last_invest_at", ctx.state(ctx.u, ctx["last_invest_at"]))
    bonus = plan.has("bonus")
    if bonus:
        b.state("invest_count", ctx.state(ctx.u, ctx["play_count"]))
    _investment_invest(ctx, b, plan, own, window, jackpot, bonus)
    _investment_payouts(ctx, b, plan, window, jackpot)
    return own.finish()


def _investment_state(ctx: Ctx, b: Body) -> None:
    """The investor struct and list, invested amounts, ledger, minimum, rates and the events."""
    u, L = ctx.u, ctx["ledger"]
    st, invs, inv_map, mn = ctx["investor_struct"], ctx["investors"], ctx["invested"], ctx["min_invest"]
    rate, pct = ctx["daily_rate"], ctx["referral_pct"]
    w = W()
    w.decl(f"struct {st}")
    w(f"{ctx.pay_t} addr;")
    w(f"{u} amount;")
    w(f"{u} since;")
    w.close()
    b.add(Member("struct", "struct", w.lines))
    b.state("investors", f"{st}[] public {invs};")
    b.state("invested", f"mapping(address => {u}) public {inv_map};")
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state(
        "min_invest",
        f"{u} public constant {mn} = {pick(ctx, 'min_inv', ('0.01 ether', '0.1 ether', '1 ether'))};",
    )
    b.state("daily_rate", ctx.state(u, rate, init=pick(ctx, "daily", ("1", "2", "3", "5"))))
    b.state("referral_pct", f"{u} public constant {pct} = {pick(ctx, 'pct', ('5', '10', '20'))};")
    b.event("evt_invest", f"address indexed investor, {u} amount")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _investment_invest(
    ctx: Ctx, b: Body, plan: Plan, own: Owned, window: bool, jackpot: bool, bonus: bool
) -> None:
    """``invest`` (invest, loop, payout and bonus sites) and the ledger withdrawal."""
    u, now, L = ctx.u, ctx.now, ctx["ledger"]
    st, invs, inv_map, mn = ctx["investor_struct"], ctx["investors"], ctx["invested"], ctx["min_invest"]
    pct = ctx["referral_pct"]
    loop_slot = plan.slot("loop")
    inv, prev = ctx["l_inv"], ctx["l_prev"]
    with b.fn("invest", ctx.func(ctx["fn_invest"], mut="payable", mods=own.live), doc="invest") as w:
        ctx.req(w, f"msg.value >= {mn}", "below minimum", "err_input")
        if plan.has("invest", 0.3):
            S.struct_local(ctx, w, plan.slot("invest"), st, inv)
            w(f"{inv}.addr = {ctx.sender_pay};")
            w(f"{inv}.amount = msg.value;")
            w(f"{inv}.since = {now};")
            S.capped_push(ctx, b, w, loop_slot, invs, inv)
        else:
            S.capped_push(ctx, b, w, loop_slot, invs, f"{st}({ctx.sender_pay}, msg.value, {now})")
        ctx.inc(w, f"{inv_map}[msg.sender]", "msg.value")
        share = ctx["l_share"]
        w.open(f"if ({invs}.length > 1) {{")
        w(f"{ctx.pay_t} {prev} = {invs}[{invs}.length - 2].addr;")
        w(f"{u} {share} = {ctx.mul('msg.value', pct)} / 100;")
        S.refund_previous(ctx, w, plan.slot("payout"), prev, share)
        w.close()
        if jackpot:
            ctx.inc(w, ctx["jackpot"], "msg.value / 20")
        if bonus:
            bs = plan.slot("bonus")
            ctx.inc(w, ctx["play_count"], "1")
            w.open(f"if ({S.lucky(ctx, bs, ctx['play_count'])}) {{", bs.tag if bs else "")
            ctx.inc(w, f"{L}[msg.sender]", "msg.value / 10")
            w.close()
        if window:
            w(f"{ctx['last_investor']} = msg.sender;")
            w(f"{ctx['last_invest_at']} = {now};")
        w(ctx.emit(ctx["evt_invest"], "msg.sender, msg.value"))
    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw"), mods=own.live))


def _investment_payouts(ctx: Ctx, b: Body, plan: Plan, window: bool, jackpot: bool) -> None:
    """Optional interest claim (interest site), payout loop (loop site), last-investor jackpot and draw."""
    u, now, oo, L = ctx.u, ctx.now, ctx["only_owner"], ctx["ledger"]
    invs, inv_map, rate = ctx["investors"], ctx["invested"], ctx["daily_rate"]
    if plan.has("interest", 0.35):
        lc, step, due = ctx["last_claim"], ctx["l_step"], ctx["l_due"]
        its = plan.slot("interest")
        b.state("last_claim", f"mapping(address => {u}) public {lc};")
        with b.fn("interest", ctx.func(ctx["fn_claim_interest"]), doc="claim_interest") as w:
            ctx.req(w, f"{inv_map}[msg.sender] > 0", "not invested", "err_state")
            w.open(f"if ({lc}[msg.sender] == 0) {{")
            w(f"{lc}[msg.sender] = {now};")
            w("return;")
            w.close()
            w(f"{u} {step} = {ctx.mul(f'{inv_map}[msg.sender]', rate)} / 100;")
            w(f"{u} {due} = {S.per_second(ctx, its, f'{lc}[msg.sender]', step)};", its.tag if its else "")
            w(f"{lc}[msg.sender] = {now};")
            ctx.inc(w, f"{L}[msg.sender]", due)
    if plan.has("loop", 0.35):
        with b.fn("pay_all", ctx.func(ctx["fn_pay_dividends"], mods=(oo,)), doc="pay_all") as w:
            i = S.list_loop(ctx, w, plan.slot("loop"), invs)
            ctx.inc(w, f"{L}[{invs}[{i}].addr]", f"{ctx.mul(f'{invs}[{i}].amount', rate)} / 100")
            ctx.end_loop(w, i)
    if window:
        ws, jp = plan.slot("window"), ctx["jackpot"]
        with b.fn("claim_jackpot", ctx.func(ctx["fn_claim_jackpot"]), doc="claim_pot") as w:
            ctx.req(w, f"msg.sender == {ctx['last_investor']}", "not the last investor", "err_auth")
            ctx.req(
                w,
                f"{now} > {ctx['last_invest_at']} + {S.window(ctx, ws, 'jackpot')}",
                "too early",
                "err_early",
                ws.tag if ws else "",
            )
            w(f"{u} {ctx['l_share']} = {jp};")
            w(f"{jp} = 0;")
            ctx.inc(w, f"{L}[msg.sender]", ctx["l_share"])
    if plan.has("draw") and jackpot:
        jp = ctx["jackpot"]

        def winner(w: W, r: str) -> None:
            ctx.inc(w, f"{L}[{invs}[{r}].addr]", jp)
            w(f"{jp} = 0;")

        S.seeded_draw(ctx, b, plan.slot("draw"), invs, oo, "fn_draw", winner)


# --- escrow -------------------------------------------------------------------------------------------------
def build_escrow(ctx: Ctx, plan: Plan) -> Built:
    """An arbitrated escrow: buyers open deals, buyer or arbiter release to the seller, arbiter refunds."""
    b = Body(ctx)
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), F._p_fee(ctx), F._p_collector(ctx)])
    _escrow_state(ctx, b)
    _escrow_create(ctx, b, plan, own)
    _escrow_settle(ctx, b, plan, own)
    return own.finish()


def _escrow_state(ctx: Ctx, b: Body) -> None:
    """The deal struct, deals, counter, ledger, release delay and the events."""
    u, L = ctx.u, ctx["ledger"]
    st, deals, cnt, delay = ctx["deal_struct"], ctx["deals"], ctx["deal_count"], ctx["release_delay"]
    w = W()
    w.decl(f"struct {st}")
    for f in (
        f"{ctx.pay_t} buyer;",
        f"{ctx.pay_t} seller;",
        "address arbiter;",
        f"{u} amount;",
        f"{u} createdAt;",
        "bool done;",
    ):
        w(f)
    w.close()
    b.add(Member("struct", "struct", w.lines))
    b.state("deals", f"mapping({u} => {st}) public {deals};")
    b.state("deal_count", ctx.state(u, cnt))
    b.state("ledger", f"mapping(address => {u}) public {L};", doc="ledger")
    b.state(
        "release_delay",
        f"{u} public constant {delay} = {pick(ctx, 'delay', ('14 days', '30 days', '7 days'))};",
    )
    b.event("evt_deal", f"{u} indexed id, address buyer, address seller, {u} amount")
    b.event("evt_released", f"{u} indexed id")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")


def _escrow_create(ctx: Ctx, b: Body, plan: Plan, own: Owned) -> None:
    """``create``: a paid deal, written whole or through a struct local (the create site)."""
    u, now = ctx.u, ctx.now
    st, deals, cnt = ctx["deal_struct"], ctx["deals"], ctx["deal_count"]
    sel, arb, tid = ctx["p_seller"], ctx["p_arbiter"], ctx["p_tx_id"]
    with b.fn(
        "create",
        ctx.func(
            ctx["fn_create"],
            f"{ctx.pay_t} {sel}, address {arb}",
            mut="payable",
            mods=own.live,
            returns=f"{u} {tid}",
        ),
        doc="create",
    ) as w:
        ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
        ctx.req(w, f"{sel} != address(0) && {arb} != address(0)", "zero address", "err_zero")
        if plan.has("create", 0.35):
            nd = ctx["l_inv"]
            S.struct_local(ctx, w, plan.slot("create"), st, nd)
            w(f"{nd}.buyer = {ctx.sender_pay};")
            w(f"{nd}.seller = {sel};")
            w(f"{nd}.arbiter = {arb};")
            w(f"{nd}.amount = msg.value;")
            w(f"{nd}.createdAt = {now};")
            w(f"{tid} = {cnt};")
            w(f"{deals}[{tid}] = {nd};")
        else:
            w(f"{tid} = {cnt};")
            w(f"{deals}[{tid}] = {st}({ctx.sender_pay}, {sel}, {arb}, msg.value, {now}, false);")
        ctx.inc(w, cnt, "1")
        w(ctx.emit(ctx["evt_deal"], f"{tid}, msg.sender, {sel}, msg.value"))


def _escrow_settle(ctx: Ctx, b: Body, plan: Plan, own: Owned) -> None:
    """``release`` (release site), the arbiter's refund, the optional timed auto-release and withdrawal."""
    u, now, L = ctx.u, ctx.now, ctx["ledger"]
    st, deals, dl, delay = ctx["deal_struct"], ctx["deals"], ctx["l_deal"], ctx["release_delay"]
    tid = ctx["p_tx_id"]
    with b.fn("release", ctx.func(ctx["fn_release"], f"{u} {tid}", mods=own.live), doc="release") as w:
        w(f"{st} storage {dl} = {deals}[{tid}];")
        ctx.req(w, f"msg.sender == {dl}.buyer || msg.sender == {dl}.arbiter", "not allowed", "err_auth")
        ctx.req(w, f"!{dl}.done", "already settled", "err_state")
        w(ctx.emit(ctx["evt_released"], tid))
        S.pay_then_flag(
            ctx,
            w,
            plan.slot("release"),
            f"{dl}.seller",
            f"{dl}.amount",
            f"{dl}.done = true;",
            default="transfer",
        )
    with b.fn("refund_deal", ctx.func(ctx["fn_refund_deal"], f"{u} {tid}"), doc="refund_deal") as w:
        w(f"{st} storage {dl} = {deals}[{tid}];")
        ctx.req(w, f"msg.sender == {dl}.arbiter", "only the arbiter", "err_auth")
        ctx.req(w, f"!{dl}.done", "already settled", "err_state")
        w(f"{dl}.done = true;")
        ctx.inc(w, f"{L}[{dl}.buyer]", f"{dl}.amount")
    if pick(ctx, "auto_release", (0, 1)):
        with b.fn("auto_release", ctx.func(ctx["fn_auto_release"], f"{u} {tid}"), doc="auto_release") as w:
            w(f"{st} storage {dl} = {deals}[{tid}];")
            ctx.req(w, f"msg.sender == {dl}.seller", "only the seller", "err_auth")
            ctx.req(w, f"!{dl}.done", "already settled", "err_state")
            ctx.req(w, f"{now} >= {ctx.add(f'{dl}.createdAt', delay)}", "too early", "err_early")
            w(f"{dl}.done = true;")
            ctx.inc(w, f"{L}[{dl}.seller]", f"{dl}.amount")
    b.add(S.ledger_withdraw(ctx, plan.slot("withdraw")))


# --- upgradeable proxy --------------------------------------------------------------------------------------
def _implementation(ctx: Ctx) -> list[Line]:
    """The logic contract the proxy points at (its own file section; not the deployed contract)."""
    u, name, v = ctx.u, ctx["impl_name"], ctx["impl_value"]
    w = W()
    w("/// @notice First version of the logic behind the proxy below.")
    w.decl(f"contract {name}")
    w(f"address public {ctx['owner']};")
    w(f"{u} public {v};")
    w(f"bool public {ctx['initialized']};")
    w(f"event {ctx['evt_metadata']}Logic({u} value);")
    w("")
    w.decl(f"function {ctx['fn_init']}(address {ctx['p_init_owner']}) public")
    w(f"require(!{ctx['initialized']});")
    w(f"{ctx['initialized']} = true;")
    w(f"{ctx['owner']} = {ctx['p_init_owner']};")
    w.close()
    w("")
    w.decl(f"function set{v[0].upper()}{v[1:]}({u} value_) public")
    w(f"require(msg.sender == {ctx['owner']});")
    w(f"{v} = value_;")
    w(ctx.emit(f"{ctx['evt_metadata']}Logic", "value_"))
    w.close()
    w("")
    w.decl(f"function read() public {ctx.view_kw} returns ({u})")
    w(f"return {v};")
    w.close()
    w.close()
    return w.lines


IMPL_SLOT = "0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc"  # EIP-1967


def build_proxy(ctx: Ctx, plan: Plan) -> Built:
    """An EIP-1967 upgradeable proxy: implementation slot, upgrades (optionally with a call), forwarding."""
    b = Body(ctx)
    pi, evt = ctx["p_impl"], ctx["evt_upgraded"]
    setter = ctx["fn_set_impl"]

    def upgrade_body(c: Ctx, w: W) -> None:
        c.req(w, f"{pi} != address(0)", "zero address", "err_zero")
        w(f"{setter}({pi});")
        c.inc(w, c["upgrades"], "1")
        w(c.emit(evt, pi))

    upgrade = Privileged("fn_upgrade", "upgrade", lambda c: f"address {pi}", upgrade_body)
    own = Owned(ctx, plan, b, [F._p_ownership(ctx), upgrade])
    _proxy_slot_access(ctx, b)
    _proxy_upgrades(ctx, b, plan, upgrade_body, own.priv is not upgrade)
    _proxy_forwarding(ctx, b)
    p = ctx["p_impl"]

    def ctor_body(w: W) -> None:
        w(f"{setter}({p});")

    built = own.finish(f"address {p}", ctor_body)
    built.interfaces.append(_implementation(ctx))
    return built


def _proxy_slot_access(ctx: Ctx, b: Body) -> None:
    """The implementation slot constant and its assembly getter and internal setter."""
    slot_const, getter, setter = ctx["impl_slot"], ctx["implementation"], ctx["fn_set_impl"]
    b.state("impl_slot", f"bytes32 private constant {slot_const} = {IMPL_SLOT};")
    with b.fn("get_impl", ctx.func(getter, mut="view", returns="address a"), kind="view") as w:
        w(f"bytes32 position = {slot_const};")
        w.open("assembly {")
        w("a := sload(position)")
        w.close()
    with b.fn("set_impl", ctx.func(setter, "address a", vis="internal")) as w:
        w(f"bytes32 position = {slot_const};")
        w.open("assembly {")
        w("sstore(position, a)")
        w.close()


def _proxy_upgrades(
    ctx: Ctx, b: Body, plan: Plan, upgrade_body: Callable[[Ctx, W], None], standalone: bool
) -> None:
    """The upgrade counter and event, ``upgrade`` (unless privileged) and the optional upgrade-and-call."""
    pi, oo = ctx["p_impl"], ctx["only_owner"]
    b.state("upgrades", ctx.state(ctx.u, ctx["upgrades"]))
    b.event("evt_upgraded", "address indexed implementation")
    if standalone:
        with b.fn("upgrade", ctx.func(ctx["fn_upgrade"], f"address {pi}", mods=(oo,)), doc="upgrade") as w:
            upgrade_body(ctx, w)
    sl = plan.slot("upgrade_call")
    if plan.has("upgrade_call", 0.5):
        data = ctx["p_data"]
        with b.fn(
            "upgrade_call",
            ctx.func(
                ctx["fn_upgrade_call"], f"address {pi}, bytes{ctx.mem} {data}", mut="payable", mods=(oo,)
            ),
            doc="upgrade_call",
        ) as w:
            upgrade_body(ctx, w)
            call = f"{pi}.delegatecall({data})"
            if sl is not None and sl.vuln:
                if ctx.major > 4 and ctx.call_assign:
                    w(f"(bool {ctx['ok_var']}, ) = {call};", sl.tag)
                else:
                    w(f"{call};", sl.tag)
            elif ctx.major == 4:
                ctx.req(w, call, "initialization failed", "err_transfer")
            else:
                w(f"(bool {ctx['ok_var']}, ) = {call};")
                ctx.req(w, ctx["ok_var"], "initialization failed", "err_transfer")


def _proxy_forwarding(ctx: Ctx, b: Body) -> None:
    """The delegating fallback and, from 0.6, a ``receive`` that logs deposits."""
    getter = ctx["implementation"]
    header = "fallback() external payable" if ctx.major >= 6 else "function () external payable"
    with b.fn("fallback", header, doc="fallback", kind="fallback") as w:
        w(f"address target = {getter}();")
        ctx.req(w, "target != address(0)", "no implementation", "err_state")
        w.open("assembly {")
        w("let ptr := mload(0x40)")
        w("calldatacopy(ptr, 0, calldatasize())")
        w("let result := delegatecall(gas(), target, ptr, calldatasize(), 0, 0)")
        w("let size := returndatasize()")
        w("returndatacopy(ptr, 0, size)")
        w("switch result")
        w("case 0 { revert(ptr, size) }")
        w("default { return(ptr, size) }")
        w.close()
    if ctx.major >= 6:
        with b.fn("receive", "receive() external payable", kind="fallback") as w:
            w(ctx.emit(ctx["evt_deposit"], "msg.sender, msg.value"))
        b.event("evt_deposit", f"address indexed from, {ctx.u} amount")


def build_multisig(ctx: Ctx, plan: Plan) -> Built:
    """The multisig wallet of ``families`` plus filler members guarded by the wallet itself."""
    built = F.build_multisig(ctx, plan)
    built.members += texture.fillers(ctx, ctx["only_wallet"], "address(this)", None)[0]
    return built


BUILDERS: dict[str, Callable[[Ctx, Plan], Built]] = {
    **F.BUILDERS,
    "multisig_wallet": build_multisig,
    "erc721_collection": build_erc721,
    "crowdsale": build_crowdsale,
    "staking_rewards": build_staking,
    "simple_exchange": build_exchange,
    "upgradeable_proxy": build_proxy,
    "investment_scheme": build_investment,
    "escrow": build_escrow,
}

"""Short single-purpose contracts (20-150 lines): bank, wallet, lottery, token, crowdsale and auction.

Most real 0.4-era code is one small contract with one job. These builders write that, with the slots (and so
the labels and safe twins) of the long families plus the shapes only such code shows (``short_only`` shapes
in ``shapes.py``). ``SHORT_SHAPES`` lists the shapes each builder can place; one slot per contract.
"""

from __future__ import annotations

from collections.abc import Callable

from training_pipeline.corpus.templates import shapes as S
from training_pipeline.corpus.templates.families import Body, Built, _p_sweep
from training_pipeline.corpus.templates.render import Ctx, Member, W
from training_pipeline.corpus.templates.shapes import Plan, Slot, pick

SHORT_SHAPES: dict[str, tuple[str, ...]] = {
    "vault": (
        "reentrancy/call_before_write",
        "reentrancy/withdraw_all",
        "reentrancy/call_then_debit",
        "reentrancy/call_value_all",
        "unchecked_low_level_calls/ignored_call",
        "unchecked_low_level_calls/ignored_send",
        "access_control/unprotected_selfdestruct",
        "access_control/misnamed_constructor",
    ),
    "multisig_wallet": (
        "unchecked_low_level_calls/forward_call",
        "unchecked_low_level_calls/delegate_forward",
        "access_control/missing_modifier",
        "access_control/tx_origin",
        "access_control/unprotected_selfdestruct",
        "access_control/misnamed_constructor",
    ),
    "lottery": (
        "bad_randomness/block_attributes",
        "bad_randomness/blockhash",
        "bad_randomness/private_seed",
        "unchecked_low_level_calls/payout_send",
    ),
    "erc20_token": ("arithmetic/underflow_sub", "unchecked_low_level_calls/signature_call"),
    "crowdsale": ("arithmetic/overflow_mul", "unchecked_low_level_calls/payout_send"),
    "auction": ("denial_of_service/refund_push", "unchecked_low_level_calls/payout_send"),
}


# Names the long families do not draw (a role the skeleton already has keeps its name).
SHORT_NAMES: dict[str, tuple[str, ...]] = {
    "p_data": ("data", "_data", "payload", "callData"),
    "fn_execute": ("execute", "forward", "exec", "executeCall", "relay"),
    "fn_delegate": ("delegate", "runModule", "execDelegate", "proxyCall"),
    "p_spender": ("spender", "_spender", "operator_"),
    "fn_approve_call": ("approveAndCall",),
    "rate": ("rate", "price", "tokensPerEther", "exchangeRate"),
    "raised": ("weiRaised", "amountRaised", "totalRaised", "collected"),
    "wallet": ("wallet", "fundsWallet", "vaultAddress", "treasury"),
    "l_tokens": ("tokens", "numTokens", "purchased", "tokenAmount"),
    "fn_buy": ("buyTokens", "buy", "purchase", "contribute"),
}


def _names(ctx: Ctx, *roles: str) -> None:
    """Give each role a name (variant-stable) unless the skeleton already has one, never reusing a name."""
    for role in roles:
        if role in ctx.n:
            continue
        used = set(ctx.n.values())
        options = [o for o in SHORT_NAMES[role] if o not in used] or [o + "_" for o in SHORT_NAMES[role]]
        ctx.n[role] = ctx.choose("short-name/" + role, options)


def _vuln(slot: Slot | None, name: str) -> bool:
    return slot is not None and slot.name == name and slot.vuln


def _arith(plan: Plan) -> bool:
    """SafeMath comes with an arithmetic slot (its repair uses it) or, now and then, for its own sake."""
    ctx = plan.ctx
    wants = any(s.shape.cls == "arithmetic" for s in plan.slots.values()) or ctx.draw("short/lib") < 0.25
    return ctx.major < 8 and wants


def _owner(ctx: Ctx, b: Body, plan: Plan, ctor_body: Callable[[W], None] | None = None) -> str:
    """Owner variable, its modifier and the constructor (the ctor site); returns the modifier name."""
    owner, oo = ctx["owner"], ctx["only_owner"]
    b.state("owner", ctx.state(ctx.pay_t, owner))
    b.modifier("only_owner", f"msg.sender == {owner}", "caller is not the owner", "err_auth")

    def body(w: W) -> None:
        w(f"{owner} = {ctx.sender_pay};")
        if ctor_body:
            ctor_body(w)

    b.add(S.constructor(ctx, plan.slot("ctor"), "", body))
    return oo


def _kill(ctx: Ctx, b: Body, plan: Plan, oo: str, p: float) -> None:
    if plan.has("kill", p):
        b.add(S.kill(ctx, plan.slot("kill"), oo, "", ctx["owner"]))


def _pay(ctx: Ctx, w: W, slot: Slot | None, target: str, amount: str) -> None:
    """Pay out ether: a dropped ``send`` (flawed payout_send), a checked send (its repair) or ``transfer``."""
    if _vuln(slot, "payout_send"):
        w(f"{target}.send({amount});", slot.tag)
    elif slot is not None and slot.name == "payout_send":
        ctx.checked_send(w, target, amount)
    else:
        w(f"{target}.transfer({amount});")


def _bare_fallback(ctx: Ctx, b: Body) -> None:
    """Legacy code that takes ether only through a named function rejects plain transfers: ``function () {
    throw; }`` (a fallback without ``payable``, as 0.4 allows)."""
    if ctx.bare_fallback:
        with b.fn("fallback", "function ()", kind="fallback") as w:
            w("throw;")


def _balance_view(ctx: Ctx, b: Body, always: bool = False) -> None:
    if always or pick(ctx, "short/balance_view", (0, 1)):
        with b.fn("balance", ctx.func(ctx["fn_balance"], mut="view", returns=ctx.u), kind="view") as w:
            w(f"return {ctx.this_balance};")


# --- bank ---------------------------------------------------------------------------------------------------
def _call_then_debit(ctx: Ctx, slot: Slot) -> Member:
    """``if (msg.sender.call.value(x)()) { balance -= x; }`` (flawed) or debit first, then a checked call."""
    L, amt = ctx["ledger"], ctx["p_amount"]
    w = W()
    w.decl(ctx.func(ctx["fn_withdraw"], f"{ctx.u} {amt}"))
    w.open(f"if ({L}[msg.sender] >= {amt}) {{")
    if slot.vuln:
        w.open(f"if ({ctx.call_expr('msg.sender', amt)}) {{", slot.tag)
        w(f"{L}[msg.sender] -= {amt};", slot.tag)
        w(ctx.emit(ctx["evt_withdraw"], f"msg.sender, {amt}"))
        w.close()
    else:
        w(f"{L}[msg.sender] -= {amt};")
        ctx.checked_call(w, "msg.sender", amt)
        w(ctx.emit(ctx["evt_withdraw"], f"msg.sender, {amt}"))
    w.close()
    w.close()
    return Member("func", "withdraw", w.lines)


def _call_value_all(ctx: Ctx, slot: Slot) -> Member:
    """The whole balance sent by ``call.value`` before it is zeroed (flawed), or zeroed first (repaired)."""
    L, me = ctx["ledger"], "msg.sender"
    w = W()
    w.decl(ctx.func(ctx["fn_withdraw"]))
    ctx.req(w, f"{L}[{me}] > 0", "nothing to withdraw", "err_funds")
    if slot.vuln:
        ctx.checked_call(w, me, f"{L}[{me}]", slot.tag)
        w(f"{L}[{me}] = 0;", slot.tag)
    else:
        due = ctx["l_due"]
        w(f"{ctx.local_t(ctx.u)} {due} = {L}[{me}];")
        w(f"{L}[{me}] = 0;")
        ctx.checked_call(w, me, due)
    w.close()
    return Member("func", "withdraw", w.lines)


def build_bank(ctx: Ctx, plan: Plan) -> Built:
    """Deposits into a balance mapping and withdrawals (withdraw site); optional owner with a kill switch."""
    ctx.safemath = _arith(plan)
    b = Body(ctx)
    L = ctx["ledger"]
    b.state("ledger", f"mapping(address => {ctx.u}) public {L};")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {ctx.u} amount")
    with b.fn("deposit", ctx.func(ctx["fn_deposit"], mut="payable")) as w:
        ctx.inc(w, f"{L}[msg.sender]", "msg.value")
    if pick(ctx, "short/bank_fallback", (0, 1)):
        with b.fn("fallback", ctx.fallback(), kind="fallback") as w:
            w(f"{ctx['fn_deposit']}();")
    slot = plan.slot("withdraw")
    if slot is not None and slot.name == "call_then_debit":
        b.add(_call_then_debit(ctx, slot))
    elif slot is not None and slot.name == "call_value_all":
        b.add(_call_value_all(ctx, slot))
    else:
        b.add(S.ledger_withdraw(ctx, slot))
    if plan.has("kill", 0.25) or plan.has("ctor", 0.15):
        _kill(ctx, b, plan, _owner(ctx, b, plan), 0.6)
    _balance_view(ctx, b, always=True)
    return Built(b.members)


# --- wallet -------------------------------------------------------------------------------------------------
def build_wallet(ctx: Ctx, plan: Plan) -> Built:
    """An owner's wallet: takes ether, the owner sweeps it (privileged site), forwards calls, can close."""
    ctx.safemath = _arith(plan)
    _names(ctx, "p_data", "fn_execute", "fn_delegate")
    b = Body(ctx)
    owner = ctx["owner"]
    oo = _owner(ctx, b, plan)
    b.event("evt_deposit", f"address indexed {ctx['p_who']}, {ctx.u} amount")
    with b.fn("fallback", ctx.fallback(), kind="fallback") as w:
        w(ctx.emit(ctx["evt_deposit"], "msg.sender, msg.value"))
    b.add(S.privileged(ctx, plan.slot("privileged"), _p_sweep(ctx), oo, lambda who: f"{who} == {owner}"))
    to, value, data = ctx["p_to"], ctx["p_amount"], ctx["p_data"]
    if plan.has("execute", 0.5):
        slot = plan.slot("execute")
        params = f"address {to}, {ctx.u} {value}, bytes{ctx.mem} {data}"
        with b.fn("execute", ctx.func(ctx["fn_execute"], params, mods=(oo,))) as w:
            if _vuln(slot, "forward_call"):
                w(f"{ctx.call_expr(to, value, data)};", slot.tag)
            else:
                ctx.checked_call(w, to, value, data=data)
    if ctx.major == 4 and plan.has("delegate", 0.2):
        slot = plan.slot("delegate")
        with b.fn("delegate", ctx.func(ctx["fn_delegate"], f"address {to}, bytes {data}", mods=(oo,))) as w:
            call = f"{to}.delegatecall({data})"
            if _vuln(slot, "delegate_forward"):
                w(f"{call};", slot.tag)
            else:
                ctx.req(w, call, "call failed", "err_transfer")
    _kill(ctx, b, plan, oo, 0.3)
    _balance_view(ctx, b)
    return Built(b.members)


# --- lottery ------------------------------------------------------------------------------------------------
def build_short_lottery(ctx: Ctx, plan: Plan) -> Built:
    """Players buy tickets, the owner draws (draw site) and the winner is paid at once (payout site)."""
    ctx.safemath = _arith(plan)
    b = Body(ctx)
    players, price = ctx["players"], ctx["ticket_price"]
    b.state("players", f"{ctx.pay_t}[] public {players};")
    b.state(
        "ticket_price",
        f"{ctx.u} public constant {price} = {pick(ctx, 'short/price', ('0.1', '1', '0.01'))} ether;",
    )
    oo = _owner(ctx, b, plan)
    with b.fn("enter", ctx.func(ctx["fn_enter"], mut="payable")) as w:
        ctx.req(w, f"msg.value == {price}", "wrong ticket price", "err_input")
        w(f"{players}.push({ctx.sender_pay});")
    _bare_fallback(ctx, b)

    def pick_winner(w: W, r: str) -> None:
        win, prize = ctx["l_winner"], ctx["l_share"]
        w(f"{ctx.local_t(ctx.pay_t)} {win} = {players}[{r}];")
        w(f"{ctx.local_t(ctx.u)} {prize} = {ctx.this_balance};")
        w(f"delete {players};")
        _pay(ctx, w, plan.slot("payout"), win, prize)

    S.seeded_draw(ctx, b, plan.slot("draw"), players, oo, "fn_draw", pick_winner)
    return Built(b.members)


# --- token --------------------------------------------------------------------------------------------------
def build_short_token(ctx: Ctx, plan: Plan) -> Built:
    """A minimal token: balances, ``transfer`` (move site), optional ``approveAndCall`` (approve_call site);
    SafeMath before 0.8, so the repaired subtraction is checked."""
    ctx.safemath = ctx.major < 8
    _names(ctx, "p_data", "p_spender", "fn_approve_call")
    b = Body(ctx)
    u, bal, allow = ctx.u, ctx["token_bal"], ctx["token_allow"]
    to, value, spender, data = ctx["p_to"], ctx["p_amount"], ctx["p_spender"], ctx["p_data"]
    b.state("name", f'string public name = "{ctx["contract"]}";')
    b.state("symbol", f'string public symbol = "{ctx["token_symbol"]}";')
    b.state("decimals", "uint8 public decimals = 18;")
    b.state("supply", ctx.state(u, "totalSupply"))
    b.state("bal", f"mapping(address => {u}) public {bal};")
    b.state("allow", f"mapping(address => mapping(address => {u})) public {allow};")
    b.one("event", "evt_transfer", f"event Transfer(address indexed from, address indexed to, {u} value);")
    supply = pick(ctx, "short/supply", ("1000000", "21000000", "100000000"))
    with b.fn("ctor", ctx.ctor(), kind="ctor") as w:
        w(f"totalSupply = {supply} * 10 ** uint256(decimals);")
        w(f"{bal}[msg.sender] = totalSupply;")
    with b.fn("transfer", ctx.func("transfer", f"address {to}, {u} {value}")) as w:
        ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
        S.subtract(ctx, w, plan.slot("move"), f"{bal}[msg.sender]", value)
        ctx.inc(w, f"{bal}[{to}]", value)
        w(ctx.emit("Transfer", f"msg.sender, {to}, {value}"))
    with b.fn("approve", ctx.func("approve", f"address {spender}, {u} {value}")) as w:
        w(f"{allow}[msg.sender][{spender}] = {value};")
    if ctx.major == 4 and plan.has("approve_call", 0.3):
        slot = plan.slot("approve_call")
        sig = '"receiveApproval(address,uint256,address,bytes)"'
        h = "sha3" if ctx.hash_style == "sha3" else "keccak256"
        call = f"{spender}.call(bytes4(bytes32({h}({sig}))), msg.sender, {value}, this, {data})"
        params = f"address {spender}, {u} {value}, bytes {data}"
        with b.fn("approve_call", ctx.func(ctx["fn_approve_call"], params)) as w:
            w(f"{allow}[msg.sender][{spender}] = {value};")
            if _vuln(slot, "signature_call"):
                w(f"{call};", slot.tag)
            else:
                ctx.req(w, call, "call failed", "err_transfer")
    _bare_fallback(ctx, b)
    return Built(b.members)


# --- crowdsale ----------------------------------------------------------------------------------------------
def build_short_crowdsale(ctx: Ctx, plan: Plan) -> Built:
    """Buy tokens at a fixed rate (price site); the payment goes straight to the wallet (payout site);
    SafeMath before 0.8, so the repaired product is checked."""
    ctx.safemath = ctx.major < 8
    _names(ctx, "rate", "raised", "wallet", "l_tokens", "fn_buy")
    b = Body(ctx)
    u, L, rate, raised = ctx.u, ctx["ledger"], ctx["rate"], ctx["raised"]
    wallet = ctx["wallet"]
    b.state("wallet", ctx.state(ctx.pay_t, wallet))
    b.state("rate", f"{u} public {rate} = {pick(ctx, 'short/rate', ('100', '500', '1000', '2500'))};")
    b.state("raised", ctx.state(u, raised))
    b.state("ledger", f"mapping(address => {u}) public {L};")
    b.event("evt_buy", f"address indexed buyer, {u} value, {u} amount")
    _owner(ctx, b, plan, lambda w: w(f"{wallet} = {ctx.sender_pay};"))
    tokens = ctx["l_tokens"]
    with b.fn("buy", ctx.func(ctx["fn_buy"], mut="payable")) as w:
        ctx.req(w, "msg.value > 0", "nothing sent", "err_input")
        S.product(ctx, w, plan.slot("price"), tokens, "msg.value", rate)
        ctx.inc(w, f"{L}[msg.sender]", tokens)
        ctx.inc(w, raised, "msg.value")
        w(ctx.emit(ctx["evt_buy"], f"msg.sender, msg.value, {tokens}"))
        _pay(ctx, w, plan.slot("payout"), wallet, "msg.value")
    with b.fn("fallback", ctx.fallback(), kind="fallback") as w:
        w(f"{ctx['fn_buy']}();")
    return Built(b.members)


# --- auction ------------------------------------------------------------------------------------------------
def build_short_auction(ctx: Ctx, plan: Plan) -> Built:
    """Highest bid wins: the outbid bidder is refunded (bid site); ``end`` pays the beneficiary (finalize)."""
    ctx.safemath = _arith(plan)
    b = Body(ctx)
    u, now = ctx.u, ctx.now
    ben, end, hb, hbid, ended = (
        ctx["beneficiary"],
        ctx["auction_end"],
        ctx["highest_bidder"],
        ctx["highest_bid"],
        ctx["ended"],
    )
    b.state("beneficiary", ctx.state(ctx.pay_t, ben))
    b.state("auction_end", ctx.state(u, end))
    b.state("highest_bidder", ctx.state(ctx.pay_t, hb))
    b.state("highest_bid", ctx.state(u, hbid))
    b.state("ended", ctx.state("bool", ended))
    b.state("ledger", f"mapping(address => {u}) public {ctx['ledger']};")
    b.event("evt_withdraw", f"address indexed {ctx['p_who']}, {u} amount")
    bt = ctx["p_bidding_time"]
    with b.fn("ctor", ctx.ctor(f"{u} {bt}"), kind="ctor") as w:
        w(f"{ben} = {ctx.sender_pay};")
        w(f"{end} = {now} + {bt};")
    with b.fn("bid", ctx.func(ctx["fn_bid"], mut="payable")) as w:
        ctx.req(w, f"{now} <= {end}", "auction already ended", "err_late")
        ctx.req(w, f"msg.value > {hbid}", "bid too low", "err_input")
        w.open(f"if ({hbid} != 0) {{")
        S.refund_previous(ctx, w, plan.slot("bid"), hb, hbid)
        w.close()
        w(f"{hb} = {ctx.sender_pay};")
        w(f"{hbid} = msg.value;")
    b.add(S.ledger_withdraw(ctx, None))
    with b.fn("end", ctx.func(ctx["fn_end"])) as w:
        ctx.req(w, f"{now} >= {end}", "auction still running", "err_early")
        ctx.req(w, f"!{ended}", "already ended", "err_state")
        w(f"{ended} = true;")
        _pay(ctx, w, plan.slot("finalize"), ben, hbid)
    _bare_fallback(ctx, b)
    return Built(b.members)


SHORT_BUILDERS: dict[str, Callable[[Ctx, Plan], Built]] = {
    "vault": build_bank,
    "multisig_wallet": build_wallet,
    "lottery": build_short_lottery,
    "erc20_token": build_short_token,
    "crowdsale": build_short_crowdsale,
    "auction": build_short_auction,
}

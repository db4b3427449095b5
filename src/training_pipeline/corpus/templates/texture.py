"""Texture that makes a generated file look like a deployed one: NatSpec, file headers, helper libraries,
standalone interfaces and filler members (config setters, views, token rescue).

Everything here is identical across a skeleton's variants (drawn from the skeleton key) and carries no label;
several members are hard negatives: an owner-only external call made after every state update, a timestamp
that is only logged, a loop over a caller-supplied array inside a view.
"""

from __future__ import annotations

import random
import re

# A module import: render imports this module at its top, so names are looked up at call time.
from training_pipeline.corpus.templates import render as R

# --- NatSpec ------------------------------------------------------------------------------------------------
_PARAM_BY_NAME = (
    (r"amount|value|wad|amt|quantity|tokens|numTokens", ("Amount, in the smallest unit.", "How much.")),
    (r"^(to|recipient|dst|receiver|dest|destination)", ("Account that receives it.", "Receiving address.")),
    (r"owner|admin|holder|account|user|who|addr", ("The account in question.", "Address to look up.")),
    (r"price|rate|fee|bps", ("New rate.", "Price or rate to apply.")),
    (r"id$|Id$|index|idx", ("Identifier of the entry.", "Index into the list.")),
    (r"time|duration|period|seconds|extra", ("Length of time, in seconds.", "Time span.")),
)
_PARAM_BY_TYPE = {
    "address": ("Address involved in the call.", "The counterparty.", "Target account."),
    "bytes32": ("A 32-byte digest.", "Hash value."),
    "string": ("Free-form text.", "Text to store."),
    "bool": ("On or off.", "Flag value."),
    "bytes": ("Encoded call data.", "Raw payload."),
}
_RETURNS = ("The requested value.", "The result.", "What was found.", "Current value.")


def _params(header: str) -> list[tuple[str, str]]:
    inside = header.split("(", 1)[1].split(")", 1)[0].strip()
    out = []
    for p in inside.split(",") if inside else []:
        words = p.split()
        if len(words) >= 2:
            out.append((words[0], words[-1]))
    return out


def _param_doc(ctx: R.Ctx, key: str, typ: str, name: str) -> str:
    for pattern, texts in _PARAM_BY_NAME:
        if re.search(pattern, name, re.I):
            return ctx.choose(f"pdoc/{key}/{name}", texts)
    base = typ.rstrip("[]").split()[0]
    if base.startswith("uint"):
        return ctx.choose(f"pdoc/{key}/{name}", ("A numeric input.", "Number to use."))
    return ctx.choose(f"pdoc/{key}/{name}", _PARAM_BY_TYPE.get(base, ("Input value.",)))


def natspec(ctx: R.Ctx, m: R.Member, text: str) -> list[str]:
    """A NatSpec block for a function-like member: notice, sometimes a dev note, params and return."""
    header = m.lines[0].text
    if not re.match(r"(function|constructor|modifier)\b", header):
        return [f"/// @notice {text}"]
    params = _params(header) if "(" in header else []
    ret = re.search(r"returns \((.*)\)$", header)
    tags = [f"@notice {text}"]
    if ctx.draw("dev/" + m.key) < 0.3:
        tags.append("@dev " + ctx.choose("dev-text/" + m.key, _DEV_NOTES))
    tags += [f"@param {n} {_param_doc(ctx, m.key, t, n)}" for t, n in params]
    if ret and not header.startswith("modifier"):
        first = ret.group(1).split(",")[0].split()
        named = (
            f"{first[-1]} " if len(first) > 1 and "," not in ret.group(1) and first[-1] != "memory" else ""
        )
        tags.append(f"@return {named}{ctx.choose('ret/' + m.key, _RETURNS)}")
    if ctx.draw("style/" + m.key) < 0.5:
        return ["/**", *(f" * {t}" for t in tags), " */"]
    return [f"/// {t}" for t in tags]


_DEV_NOTES = (
    "Emits an event on success.",
    "Reverts on invalid input.",
    "Kept small on purpose; see the docs for the full flow.",
    "Callable by anyone unless a modifier says otherwise.",
    "Amounts are in wei.",
)


# --- file header --------------------------------------------------------------------------------------------
_ABOUT = (
    "Part of the {contract} suite. Reviewed internally before deployment.",
    "Single-file build for block explorer verification.",
    "All amounts are denominated in wei unless stated otherwise.",
    "Questions: see the project documentation.",
    "This file is flattened: dependencies are included inline below.",
    "Contract sources for the {contract} deployment.",
)


def file_header(ctx: R.Ctx) -> list[str]:
    if ctx.draw("file-header") >= {"small": 0.1, "medium": 0.3, "large": 0.6, "xl": 0.9}[ctx.size]:
        return []
    r = ctx.rng("file-header")
    rule = "// " + r.choice(("-", "=", "*")) * r.choice((60, 72, 76))
    about = [a.replace("{contract}", ctx["contract"]) for a in r.sample(_ABOUT, r.choice((1, 2, 3)))]
    return [rule, f"// {ctx['contract']}", "//", *(f"// {a}" for a in about), rule, ""]


# --- libraries and interfaces (text, no code generated unless used) ----------------------------------------
def _lib_math(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w.decl("library Math")
    for name, op, doc in (("max", ">=", "larger"), ("min", "<", "smaller")):
        if ctx.draw("libdoc") < 0.6:
            w(f"/// @dev Returns the {doc} of two numbers.")
        w.decl(f"function {name}(uint256 a, uint256 b) internal pure returns (uint256)")
        w(f"return a {op} b ? a : b;")
        w.close()
        w("")
    w("/// @dev Average of two numbers, rounded towards zero.")
    w.decl("function average(uint256 a, uint256 b) internal pure returns (uint256)")
    w("return (a / 2) + (b / 2) + (((a % 2) + (b % 2)) / 2);")
    w.close()
    w.close()
    return w.lines


def _lib_address(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w.decl("library Address")
    w("/**")
    w(" * @dev True when `account` holds code. Returns false during construction of that account.")
    w(" */")
    w.decl(f"function isContract(address account) internal {ctx.view_kw} returns (bool)")
    w("uint256 size;")
    w.open("assembly {")
    w("size := extcodesize(account)")
    w.close()
    w("return size > 0;")
    w.close()
    w.close()
    return w.lines


def _lib_strings(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w.decl("library Strings")
    w("/// @dev Decimal text of a number.")
    w.decl(f"function toString(uint256 value) internal pure returns (string{ctx.mem})")
    w.open("if (value == 0) {")
    w('return "0";')
    w.close()
    w("uint256 temp = value;")
    w("uint256 digits;")
    w.open("while (temp != 0) {")
    w("digits++;")
    w("temp /= 10;")
    w.close()
    w("bytes memory buffer = new bytes(digits);")
    w.open("while (value != 0) {")
    w("digits -= 1;")
    w("buffer[digits] = bytes1(uint8(48 + uint256(value % 10)));")
    w("value /= 10;")
    w.close()
    w("return string(buffer);")
    w.close()
    w.close()
    return w.lines


def _itf_erc165(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w("/// @dev Interface of the ERC165 standard.")
    w.decl("interface IERC165")
    w("function supportsInterface(bytes4 interfaceId) external view returns (bool);")
    w.close()
    return w.lines


def _itf_token(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w.decl(f"interface {ctx['itf_token']}")
    w("function transfer(address to, uint256 value) external returns (bool);")
    w("function balanceOf(address who) external view returns (uint256);")
    w.close()
    return w.lines


def _itf_oracle(ctx: R.Ctx) -> list[R.Line]:
    w = R.W()
    w("/// @notice Read-only price feed used by off-chain tooling.")
    w.decl(f"interface {ctx['itf_feed']}")
    w("function latestAnswer() external view returns (int256);")
    w("function decimals() external view returns (uint8);")
    w("function description() external view returns (string memory);" if ctx.major > 4 else "")
    w.close()
    return [ln for ln in w.lines if ln.text]


_DOC_ERC20 = (
    ("totalSupply", "", "view", "uint256", "Returns the amount of tokens in existence."),
    ("balanceOf", "address account", "view", "uint256", "Returns the amount of tokens owned by `account`."),
    ("transfer", "address to, uint256 amount", "", "bool", "Moves `amount` tokens from the caller to `to`."),
    (
        "allowance",
        "address holder, address spender",
        "view",
        "uint256",
        "Remaining tokens `spender` may move.",
    ),
    (
        "approve",
        "address spender, uint256 amount",
        "",
        "bool",
        "Sets `amount` as the allowance of `spender`.",
    ),
    (
        "transferFrom",
        "address from, address to, uint256 amount",
        "",
        "bool",
        "Moves tokens using an allowance.",
    ),
)
_DOC_ERC721 = (
    ("balanceOf", "address holder", "view", "uint256", "Number of tokens in `holder`'s account."),
    ("ownerOf", "uint256 tokenId", "view", "address", "Owner of the `tokenId` token."),
    ("approve", "address to, uint256 tokenId", "", "", "Gives permission to `to` to move `tokenId`."),
    ("getApproved", "uint256 tokenId", "view", "address", "Account approved for `tokenId`."),
    ("setApprovalForAll", "address operator, bool approved", "", "", "Approve or remove `operator`."),
    (
        "isApprovedForAll",
        "address holder, address operator",
        "view",
        "bool",
        "True if `operator` may manage all.",
    ),
    (
        "transferFrom",
        "address from, address to, uint256 tokenId",
        "",
        "",
        "Moves `tokenId` from `from` to `to`.",
    ),
)


def _documented_interface(ctx: R.Ctx, name: str, sigs: tuple, events: tuple[str, ...]) -> list[R.Line]:
    """A standard interface written out with a NatSpec line per function (flattened-file texture)."""
    w = R.W()
    w("/**")
    w(f" * @dev Interface of the {name[1:]} standard as defined in the EIP.")
    w(" */")
    w.decl(f"interface {name}")
    for fn, params, mut, ret, doc in sigs:
        w(f"/// @dev {doc}")
        w(
            " ".join(
                p for p in (f"function {fn}({params}) external", mut, f"returns ({ret})" if ret else "") if p
            )
            + ";"
        )
        w("")
    for e in events:
        w(e)
    w.close()
    return w.lines


_EVT20 = (
    "event Transfer(address indexed from, address indexed to, uint256 value);",
    "event Approval(address indexed holder, address indexed spender, uint256 value);",
)


def _itf_std721(ctx: R.Ctx) -> list[R.Line]:
    evt = ("event Transfer(address indexed from, address indexed to, uint256 indexed tokenId);",)
    return _documented_interface(ctx, "IERC721Std", _DOC_ERC721, evt)


def _itf_std(ctx: R.Ctx) -> list[R.Line]:
    if ctx.draw("std-itf") < 0.5:
        return _documented_interface(ctx, "IERC20Std", _DOC_ERC20, _EVT20)
    return _itf_std721(ctx)


_LIBS = (("math", _lib_math), ("address", _lib_address), ("strings", _lib_strings))


def extra_blocks(ctx: R.Ctx, token_itf: bool) -> list[list[R.Line]]:
    """Helper libraries and standalone interfaces before the contracts, more of them in bigger files."""
    n = {"small": 0, "medium": 1, "large": 2, "xl": 4}[ctx.size]
    r = ctx.rng("blocks")
    blocks = [f(ctx) for _, f in r.sample(_LIBS, min(n, len(_LIBS)))]
    if n and r.random() < 0.5:
        blocks.append(_itf_erc165(ctx))
    if n >= 2 and r.random() < 0.5:
        blocks.append(_itf_oracle(ctx))
    if n > 2:  # the biggest flattened files carry both standard interfaces
        blocks += [_documented_interface(ctx, "IERC20Std", _DOC_ERC20, _EVT20), _itf_std721(ctx)]
    elif n == 2 and r.random() < 0.4:
        blocks.append(_itf_std(ctx))
    if token_itf:
        blocks.append(_itf_token(ctx))
    return blocks


# --- filler members -----------------------------------------------------------------------------------------
def n_fillers(ctx: R.Ctx) -> int:
    return {"small": 1, "medium": 2, "large": 4, "xl": 6}[ctx.size]


def fillers(ctx: R.Ctx, owner_mod: str, owner_var: str, ledger: str | None) -> tuple[list[R.Member], bool]:
    """Filler members for the main contract; the flag says whether they call the token interface."""
    options = ["version", "metadata", "rescue", "info", "batch", "stats"]
    if ledger is None:
        options.remove("batch")
    r = ctx.rng("fillers")
    chosen = r.sample(options, min(n_fillers(ctx), len(options)))
    out: list[R.Member] = []
    for kind in chosen:
        if kind == "version":
            out += _filler_version(ctx, r)
        elif kind == "metadata":
            out += _filler_metadata(ctx, owner_mod)
        elif kind == "rescue":
            out += _filler_rescue(ctx, owner_mod)
        elif kind == "info":
            out += _filler_info(ctx, owner_var)
        elif kind == "batch":
            out += _filler_batch(ctx, ledger)
        else:
            out += _filler_stats(ctx)
    return out, "rescue" in chosen


def _filler_version(ctx: R.Ctx, r: random.Random) -> list[R.Member]:
    """A pure view returning a version string drawn from the fillers generator."""
    w = R.W()
    w.decl(ctx.func(ctx["fn_version"], mut="pure", returns=f"string{ctx.mem}"))
    w(f'return "{r.choice(("1.0.0", "1.2.1", "2.0.3", "0.9.4", "3.1.0"))}";')
    w.close()
    return [R.Member("view", "f/version", w.lines, "version")]


def _filler_metadata(ctx: R.Ctx, owner_mod: str) -> list[R.Member]:
    """An owner-set metadata string with its update time and event (a timestamp that is only logged)."""
    u, now = ctx.u, ctx.now
    meta, evt, p = ctx["metadata"], ctx["evt_metadata"], ctx["p_text"]
    out = [
        R.Member("state", "f/meta", [R.Line(f"string public {meta};", 0)], "metadata"),
        R.Member("state", "f/updated", [R.Line(f"{u} public {ctx['updated_at']};", 0)]),
        R.Member("event", "f/meta_evt", [R.Line(f"event {evt}(string value, {u} timestamp);", 0)]),
    ]
    w = R.W()
    w.decl(ctx.func(ctx["fn_set_metadata"], f"string{ctx.mem} {p}", mods=(owner_mod,)))
    w(f"{meta} = {p};")
    w(f"{ctx['updated_at']} = {now};")
    w(ctx.emit(evt, f"{p}, {now}"))
    w.close()
    out.append(R.Member("func", "f/set_meta", w.lines, "set_metadata"))
    return out


def _filler_rescue(ctx: R.Ctx, owner_mod: str) -> list[R.Member]:
    """An owner-only token rescue: an external call made after every state update (a hard negative)."""
    u = ctx.u
    tok, to, amt, evt = ctx["p_token"], ctx["p_sweep_to"], ctx["p_amount"], ctx["evt_rescue"]
    out = [
        R.Member(
            "event",
            "f/rescue_evt",
            [R.Line(f"event {evt}(address token, address to, {u} amount);", 0)],
        )
    ]
    w = R.W()
    w.decl(ctx.func(ctx["fn_rescue"], f"address {tok}, address {to}, {u} {amt}", mods=(owner_mod,)))
    ctx.req(w, f"{to} != address(0)", "zero address", "err_zero")
    w(ctx.emit(evt, f"{tok}, {to}, {amt}"))
    ctx.req(w, f"{ctx['itf_token']}({tok}).transfer({to}, {amt})", "token transfer failed", "err_transfer")
    w.close()
    out.append(R.Member("func", "f/rescue", w.lines, "rescue"))
    return out


def _filler_info(ctx: R.Ctx, owner_var: str) -> list[R.Member]:
    """A view returning the owner, the balance and the block number."""
    u = ctx.u
    w = R.W()
    w.decl(ctx.func(ctx["fn_info"], mut="view", returns=f"address, {u}, {u}"))
    w(f"return ({owner_var}, {ctx.this_balance}, block.number);")
    w.close()
    return [R.Member("view", "f/info", w.lines, "info")]


def _filler_batch(ctx: R.Ctx, ledger: str | None) -> list[R.Member]:
    """A view looping over a caller-supplied array of accounts to read their ledger balances."""
    u = ctx.u
    who, res, i = ctx["p_accounts"], ctx["l_out"], ctx["l_idx"]
    w = R.W()
    w.decl(
        ctx.func(ctx["fn_batch"], f"address[]{ctx.mem} {who}", mut="view", returns=f"{u}[]{ctx.mem} {res}")
    )
    w(f"{res} = new {u}[]({who}.length);")
    ctx.loop(w, i, f"{who}.length")
    w(f"{res}[{i}] = {ledger}[{who}[{i}]];")
    ctx.end_loop(w, i)
    w.close()
    return [R.Member("view", "f/batch", w.lines, "batch")]


def _filler_stats(ctx: R.Ctx) -> list[R.Member]:
    """A counter bumped by a ping, logged with the time."""
    u = ctx.u
    cnt, evt = ctx["ping_count"], ctx["evt_ping"]
    out = [
        R.Member("state", "f/ping", [R.Line(f"{u} public {cnt};", 0)]),
        R.Member("event", "f/ping_evt", [R.Line(f"event {evt}(address indexed from, {u} at);", 0)]),
    ]
    w = R.W()
    w.decl(ctx.func(ctx["fn_ping"]))
    ctx.inc(w, cnt, "1")
    w(ctx.emit(evt, f"msg.sender, {ctx.now}"))
    w.close()
    out.append(R.Member("func", "f/ping_fn", w.lines, "ping"))
    return out

"""Bytecode text as a scan reads it: unlinked library placeholders linked to the zero address, and creation
(deployment) code reduced to the runtime code it deploys.

Solidity's constructor ends by copying the runtime out of its own code and returning it:
``PUSH size; DUP1; PUSH offset; PUSH 0; CODECOPY; PUSH 0; RETURN`` (libraries: ``PUSH size; PUSH offset;
PUSH1 0x0b; DUP3; DUP3; DUP3; CODECOPY``, then a check and the RETURN). Creation code is recognised by such a
CODECOPY of constant operands followed by a RETURN before any instruction reads calldata (runtime code reads
calldata first: its dispatcher). Bytes after the runtime part are constructor arguments only when they are
whole 32-byte ABI words; anything else, or a runtime part that misses the solc metadata the input ends with,
is refused: the input was cut, padded or spliced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from training_pipeline.data.evm import OPCODES, InvalidBytecodeError, parse_hex, strip_metadata
from training_pipeline.errors import DataError

# ``__$<34 hex>$__`` (solc >= 0.5: hash of the library's full name) and ``__<name padded with _ to 36>__``
# (solc < 0.5): 40 hex digits each, the PUSH20 operand the linker fills with the library's address.
_PLACEHOLDER = re.compile(r"__(?:\$[0-9a-fA-F]{34}\$|[^\s]{36})__")
_ZERO_ADDRESS = "0" * 40

_CODESIZE, _CODECOPY, _RETURN = 0x38, 0x39, 0xF3
_CODE_END = -1  # CODESIZE on the model stack: CODECOPY from there zero-fills memory, copies nothing
_PUSH0, _PUSH1, _PUSH32 = 0x5F, 0x60, 0x7F
_DUP1, _DUP16, _SWAP1, _SWAP16 = 0x80, 0x8F, 0x90, 0x9F
_READS_CALLDATA = frozenset({0x35, 0x36, 0x37})  # CALLDATALOAD, CALLDATASIZE, CALLDATACOPY
_RETURN_WITHIN = 64  # instructions after the CODECOPY in which the constructor's RETURN must come
_ABI_WORD = 32
# What runtime code needs to do anything a vulnerability could abuse: a jump target (every function body and
# dispatcher branch starts at one), a storage write, a log, a call, a contract creation or a self-destruct.
_ACTS = frozenset({0x5B, 0x55, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0xF0, 0xF1, 0xF2, 0xF4, 0xF5, 0xFA, 0xFF})
NO_CALLABLE_CODE = (
    "no callable code: the runtime bytecode has no jump target, storage write, log, call or contract "
    "creation (every call reverts or stops), so no class is flagged and the risk is 0"
)


def link_placeholders(text: str) -> tuple[str, list[str]]:
    """``text`` with every library placeholder replaced by the zero address, and the placeholders' names
    (``__$<hash>$__`` as written, the old form as the library name)."""
    start = 2 if text[:2] in ("0x", "0X") else 0
    names: list[str] = []

    def link(m: re.Match[str]) -> str:
        if (m.start() - start) % 2:  # not at a byte boundary: not a placeholder, let the hex check say so
            return m.group()
        inner = m.group()[2:-2]
        names.append(m.group() if inner.startswith("$") else inner.rstrip("_"))
        return _ZERO_ADDRESS

    linked = _PLACEHOLDER.sub(link, text)
    return linked, list(dict.fromkeys(names))


def _instructions(code: bytes) -> Iterator[tuple[int, int, int | None]]:
    """(offset, opcode, PUSH operand or None) of each instruction; a PUSH cut short by the end is dropped."""
    pc, n = 0, len(code)
    while pc < n:
        op = code[pc]
        size = OPCODES.get(op, ("", 0))[1]
        if pc + 1 + size > n:
            return
        arg = int.from_bytes(code[pc + 1 : pc + 1 + size], "big") if size else (0 if op == _PUSH0 else None)
        yield pc, op, arg
        pc += 1 + size


def has_callable_code(text: str) -> bool:
    """False for runtime bytecode (hex) that cannot act: no instruction in ``_ACTS`` once the solc metadata is
    stripped. Solidity compiles a contract without external functions (constants, internal helpers: a
    ``KernelConstants``, an ``ACLSyntaxSugar``) to such a stub, and nothing in it can be exploited. True for
    anything else, including text that is not hex (the views say what is wrong with it)."""
    try:
        code = strip_metadata(parse_hex(text))
    except InvalidBytecodeError:  # parse_hex's only error (a DataError)
        return True
    return any(op in _ACTS for _, op, _ in _instructions(code))


def _runtime_copy(code: bytes) -> tuple[int, int, int] | None | bool:
    """(CODECOPY offset, runtime offset, runtime length) of the constructor's runtime copy; None when the code
    reads calldata before any CODECOPY + RETURN (runtime code); True when a CODECOPY + RETURN comes first but
    its operands are not constants (creation code of unknown layout)."""
    ops: list[tuple[int, int, int | None]] = []
    for ins in _instructions(code):
        if ins[1] in _READS_CALLDATA:
            break
        ops.append(ins)
    stack: list[int | None] = []  # constants pushed since the last other instruction (None: unknown)
    unlocated = False
    for k, (pc, op, arg) in enumerate(ops):
        if _PUSH0 <= op <= _PUSH32:
            stack.append(arg)
        elif _DUP1 <= op <= _DUP16:
            depth = op - _DUP1 + 1
            stack.append(stack[-depth] if depth <= len(stack) else None)
        elif _SWAP1 <= op <= _SWAP16:
            depth = op - _SWAP1 + 1
            stack[:0] = [None] * max(0, depth + 1 - len(stack))
            stack[-1], stack[-1 - depth] = stack[-1 - depth], stack[-1]
        elif op == _CODESIZE:
            stack.append(_CODE_END)
        elif op == _CODECOPY:
            size, offset, _ = ([None] * 3 + stack)[-3:]  # CODECOPY pops destOffset, offset, size
            returns = any(o == _RETURN for _, o, _ in ops[k + 1 : k + 1 + _RETURN_WITHIN])
            if returns and offset != _CODE_END and size != _CODE_END:
                if size and offset is not None and offset > pc:
                    return pc, offset, size
                unlocated = unlocated or (size is None) != (offset is None)  # half a constant layout
            stack = []
        else:
            stack = []
    return True if unlocated else None


def runtime_of(text: str, label: str) -> tuple[str, list[str]]:
    """Runtime bytecode (``0x`` lowercase hex) of runtime or creation bytecode hex ``text``, and notes on what
    was done to it (placeholders linked, runtime extracted); a one-line DataError naming ``label`` when the
    text is no bytecode or is creation code whose runtime part cannot be taken out."""
    text, linked = link_placeholders(text.strip())
    try:
        code = parse_hex(text, source=label)
    except InvalidBytecodeError as exc:
        raise DataError(f"{label}: invalid bytecode hex ({exc})") from None
    if not code:
        raise DataError(f"{label}: empty bytecode")
    notes = [f"linked library placeholders to 0x0: {', '.join(linked)}"] if linked else []
    copy = _runtime_copy(code)
    if copy is None:
        return "0x" + code.hex(), notes
    if copy is True:
        raise DataError(
            f"{label}: looks like creation code (CODECOPY then RETURN before any calldata is read) but the "
            "runtime part cannot be located (its offset/length are not constants); give the runtime "
            "(deployed) bytecode"
        )
    pc, offset, size = copy
    end = offset + size
    where = f"the constructor copies bytes {offset}..{end} at byte {pc}"
    if end > len(code):
        raise DataError(
            f"{label}: creation code whose runtime part does not fit ({where}, the input has {len(code)} "
            "bytes): cut short or not creation code"
        )
    runtime, extra = code[offset:end], len(code) - end
    if extra % _ABI_WORD:
        raise DataError(
            f"{label}: creation code with {extra} byte(s) after its runtime part ({where}) that are not "
            f"constructor arguments (whole {_ABI_WORD}-byte words): garbage appended?"
        )
    if extra and strip_metadata(runtime) == runtime and strip_metadata(code) != code:
        raise DataError(
            f"{label}: creation code whose runtime part ({where}) misses the solc metadata the input ends "
            "with: bytes inserted or removed?"
        )
    notes.append(f"creation code: scanned its runtime part (bytes {offset}..{end} of {len(code)})")
    if extra:
        notes.append(f"creation code: {extra} bytes of constructor arguments after the runtime ignored")
    return "0x" + runtime.hex(), notes

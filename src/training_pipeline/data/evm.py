"""EVM runtime bytecode to opcode tokens: opcode table to Cancun, solc metadata stripping, fast tokenizer.

Why our own: pyevmasm builds a Python object per instruction (several µs each). Here only the PUSH1..PUSH32
bytes go through a Python loop (to tell real instructions from operand bytes) and all the rest is numpy,
two orders of magnitude faster on compiled contracts (see ``training_pipeline.benchmarks.tokenizer``).

Mnemonics follow pyevmasm where it names an opcode differently from today's specs, so pre-Shanghai code
disassembles to exactly pyevmasm's names: ``SHA3`` (KECCAK256, 0x20), ``GETPC`` (PC, 0x58) and ``DIFFICULTY``
(PREVRANDAO since the Merge, 0x44); see ``MNEMONIC_ALIASES``. Every byte without an opcode, and the designated
``INVALID`` (0xfe), decode to the one token ``INVALID``. Like pyevmasm, a PUSH whose operand runs past the end
of the code is dropped (no token for it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from training_pipeline.errors import DataError

# Runs of consecutive opcodes without immediates, by their first byte. PUSH/DUP/SWAP/LOG are generated below.
# fmt: off
_RUNS: dict[int, tuple[str, ...]] = {
    0x00: (
        "STOP", "ADD", "MUL", "SUB", "DIV", "SDIV", "MOD", "SMOD", "ADDMOD", "MULMOD", "EXP", "SIGNEXTEND",
    ),
    0x10: ("LT", "GT", "SLT", "SGT", "EQ", "ISZERO", "AND", "OR", "XOR", "NOT", "BYTE", "SHL", "SHR", "SAR"),
    0x20: ("SHA3",),
    0x30: (
        "ADDRESS", "BALANCE", "ORIGIN", "CALLER", "CALLVALUE", "CALLDATALOAD", "CALLDATASIZE", "CALLDATACOPY",
        "CODESIZE", "CODECOPY", "GASPRICE", "EXTCODESIZE", "EXTCODECOPY", "RETURNDATASIZE", "RETURNDATACOPY",
        "EXTCODEHASH",
    ),
    0x40: (
        "BLOCKHASH", "COINBASE", "TIMESTAMP", "NUMBER", "DIFFICULTY", "GASLIMIT", "CHAINID", "SELFBALANCE",
        "BASEFEE", "BLOBHASH", "BLOBBASEFEE",
    ),
    0x50: (
        "POP", "MLOAD", "MSTORE", "MSTORE8", "SLOAD", "SSTORE", "JUMP", "JUMPI", "GETPC", "MSIZE", "GAS",
        "JUMPDEST", "TLOAD", "TSTORE", "MCOPY", "PUSH0",
    ),
    0xF0: ("CREATE", "CALL", "CALLCODE", "RETURN", "DELEGATECALL", "CREATE2"),
    0xFA: ("STATICCALL",),
    0xFD: ("REVERT", "INVALID", "SELFDESTRUCT"),
}
# fmt: on

OPCODES: dict[int, tuple[str, int]] = dict(
    sorted(
        [(base + i, (name, 0)) for base, names in _RUNS.items() for i, name in enumerate(names)]
        + [(0x5F + n, (f"PUSH{n}", n)) for n in range(1, 33)]
        + [(0x7F + n, (f"DUP{n}", 0)) for n in range(1, 17)]
        + [(0x8F + n, (f"SWAP{n}", 0)) for n in range(1, 17)]
        + [(0xA0 + n, (f"LOG{n}", 0)) for n in range(5)]
    )
)
"""Every opcode defined through Cancun: byte -> (mnemonic, immediate byte count)."""

MNEMONIC_ALIASES: dict[str, str] = {"KECCAK256": "SHA3", "PC": "GETPC", "PREVRANDAO": "DIFFICULTY"}
"""Current spec names -> the (pyevmasm) mnemonics used here."""

INVALID = "INVALID"
PAD, UNK = "<pad>", "<unk>"

_NAMES = np.array([OPCODES.get(b, (INVALID, 0))[0] for b in range(256)], dtype=object)
_BASE_VOCAB: tuple[str, ...] = (PAD, UNK, *dict.fromkeys(name for name, _ in OPCODES.values()))
_ID_OF_BYTE = np.array([_BASE_VOCAB.index(name) for name in _NAMES], dtype=np.int32)
_BIT_LENGTH = np.array([b.bit_length() for b in range(256)], dtype=np.intp)
_PUSH1 = 0x60
_EMPTY = np.zeros(0, dtype=np.intp)


class InvalidBytecodeError(DataError, ValueError):
    """Bytecode that cannot be parsed; the message names the input it came from."""


# -- parsing ----------------------------------------------------------------------------------------------
_NON_HEX = re.compile(r"[^0-9a-fA-F]")


def parse_hex(bytecode: str | bytes, source: str = "bytecode") -> bytes:
    """Code bytes from hex text (``0x`` optional, any case, surrounding whitespace) or from raw ``bytes``."""
    if isinstance(bytecode, bytes | bytearray | memoryview):
        code = bytes(bytecode)
        if not code:
            raise InvalidBytecodeError(f"{source}: empty bytecode")
        return code
    if not isinstance(bytecode, str):
        raise InvalidBytecodeError(f"{source}: expected hex text or bytes, got {type(bytecode).__name__}")
    text = bytecode.strip()
    offset = len(bytecode) - len(bytecode.lstrip())  # so positions refer to the string as given
    prefixed = text[:2] in ("0x", "0X")
    if prefixed:
        text, offset = text[2:], offset + 2
    if not text:
        raise InvalidBytecodeError(f"{source}: empty bytecode{' (only 0x)' if prefixed else ''}")
    if len(text) % 2 == 0:
        try:
            code = bytes.fromhex(text)
        except ValueError:
            pass
        else:
            if 2 * len(code) == len(text):  # fromhex skips inner whitespace, which we reject below
                return code
    bad = _NON_HEX.search(text)
    if bad:
        raise InvalidBytecodeError(
            f"{source}: non-hex character {bad.group()!r} at position {offset + bad.start()} of the input"
        )
    raise InvalidBytecodeError(f"{source}: odd number of hex digits ({len(text)})")


# -- solc metadata ----------------------------------------------------------------------------------------
_METADATA_KEYS = frozenset({b"bzzr0", b"bzzr1", b"ipfs", b"solc", b"experimental"})


def _cbor_item_end(data: bytes, i: int) -> int:
    """End offset of the CBOR item at ``i`` if of a kind solc writes (uint, bytes, text, bool), else -1."""
    head = data[i]
    major, info = head >> 5, head & 0x1F
    if major == 7:
        return i + 1 if info in (20, 21) else -1  # false / true
    if major not in (0, 2, 3) or info > 24:
        return -1
    if info < 24:
        length, i = info, i + 1
    elif i + 1 < len(data):
        length, i = data[i + 1], i + 2
    else:
        return -1
    return i if major == 0 else i + length


def _is_solc_metadata(cbor: bytes) -> bool:
    """True when ``cbor`` is exactly one small CBOR map of text keys including a key solc writes."""
    if not cbor or not 0xA1 <= cbor[0] <= 0xA5:
        return False
    i, known = 1, False
    for _ in range(cbor[0] - 0xA0):
        if i >= len(cbor) or cbor[i] >> 5 != 3:
            return False
        key_end = _cbor_item_end(cbor, i)
        if key_end < 0 or key_end >= len(cbor):
            return False
        known = known or cbor[i + 1 : key_end] in _METADATA_KEYS
        i = _cbor_item_end(cbor, key_end)
        if i < 0:
            return False
    return known and i == len(cbor)


def strip_metadata(code: bytes) -> bytes:
    """Drop solc's CBOR metadata tail (build hashes: noise to a model); code without one is returned as is.

    The last two bytes give the CBOR length L; the L bytes before them must parse as one solc metadata map
    (keys such as bzzr0, bzzr1, ipfs, solc, experimental). Only the final tail is removed, never one embedded
    in the middle (the code of contracts this one creates).
    """
    if len(code) < 3:
        return code
    size = int.from_bytes(code[-2:], "big")
    if size == 0 or size + 2 > len(code) or not _is_solc_metadata(code[-2 - size : -2]):
        return code
    return code[: -2 - size]


_strip = strip_metadata  # disassemble's parameter of the same name hides the function there


def metadata_solc_version(code: bytes) -> str | None:
    """The compiler release in solc's metadata tail (``0.5.17``; solc writes it since 0.5.9), or None: no
    metadata, an older solc, or a nightly build (its version is text, not three bytes)."""
    if len(code) < 3:
        return None
    size = int.from_bytes(code[-2:], "big")
    cbor = code[-2 - size : -2]
    if size == 0 or size + 2 > len(code) or not _is_solc_metadata(cbor):
        return None
    i = 1
    for _ in range(cbor[0] - 0xA0):
        key_end = _cbor_item_end(cbor, i)
        end = _cbor_item_end(cbor, key_end)
        if cbor[i + 1 : key_end] == b"solc" and cbor[key_end] == 0x43:  # a byte string of 3: the release
            return ".".join(str(b) for b in cbor[key_end + 1 : end])
        i = end
    return None


# -- disassembly ------------------------------------------------------------------------------------------
def _scan(code: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Opcode byte of every instruction, and the byte offsets of the PUSH1..PUSH32 instructions."""
    arr = np.frombuffer(code, dtype=np.uint8)
    # PUSH1..PUSH32 bytes, whether real instructions or operand bytes of an earlier PUSH.
    cand = np.flatnonzero((arr - np.uint8(_PUSH1)) < 32)
    if not cand.size:
        return arr, _EMPTY
    cand_end = cand + (arr[cand].astype(np.intp) - (_PUSH1 - 2))  # one past the operand
    # The first candidate is a real PUSH; the next real one is the first candidate at or after its operand's
    # end, and so on: walk that chain, a Python step per real PUSH only.
    following = np.searchsorted(cand, cand_end).tolist()
    chain: list[int] = []
    append = chain.append
    i, count = 0, len(following)
    while i < count:
        append(i)
        i = following[i]
    push = cand[np.fromiter(chain, dtype=np.intp, count=len(chain))]
    n = arr.size
    if cand_end[chain[-1]] > n:  # the last PUSH's operand is cut short: drop that PUSH, as pyevmasm does
        n = int(push[-1])
        arr, push = arr[:n], push[:-1]
        if not push.size:
            return arr, _EMPTY
    op_len = arr[push].astype(np.intp) - (_PUSH1 - 1)
    op_start = push + 1
    op_end = op_start + op_len
    # Alternating runs: kept bytes up to each operand, then the operand itself.
    runs = np.empty(2 * push.size + 1, dtype=np.intp)
    runs[0] = op_start[0]
    runs[2:-1:2] = op_start[1:] - op_end[:-1]
    runs[1::2] = op_len
    runs[-1] = n - op_end[-1]
    keep = np.zeros(runs.size, dtype=bool)
    keep[::2] = True
    return arr[np.repeat(keep, runs)], push


def _operand_bit_lengths(arr: np.ndarray, push: np.ndarray, op_len: np.ndarray) -> np.ndarray:
    """Bit length of the operand value of each PUSH1..PUSH32 at byte offsets ``push`` (0 for zero)."""
    op_end = push + 1 + op_len
    nonzero = np.append(np.flatnonzero(arr), arr.size)  # sentinel: no nonzero byte left
    first = nonzero[np.searchsorted(nonzero, push + 1)]  # first nonzero byte after the opcode
    significant = first < op_end
    top = arr[np.where(significant, first, 0)]
    return np.where(significant, (op_end - first - 1) * 8 + _BIT_LENGTH[top], 0)


def disassemble(bytecode: str | bytes, strip_metadata: bool = False) -> list[str]:
    """Mnemonics of the instructions in ``bytecode`` (operands skipped), e.g. to compare with pyevmasm."""
    code = parse_hex(bytecode)
    if strip_metadata:
        code = _strip(code)
    return _NAMES[_scan(code)[0]].tolist()


# -- tokenizer --------------------------------------------------------------------------------------------
class EvmTokenizer:
    """Bytecode -> int32 opcode ids over a fixed vocabulary (no fitting, so nothing to leak between splits).

    Vocabulary: ``<pad>`` (0), ``<unk>`` (1, reserved), the mnemonics in byte order (``INVALID`` once), then,
    with ``push_buckets=n``, ``n`` tokens ``<arg:0>`` .. ``<arg:n-1>``. Those follow every PUSH1..PUSH32 and
    bucket its operand by log2 magnitude: ``<arg:0>`` is zero, the other n-1 buckets split the bit lengths
    1..256 evenly (n=9: 1-32 bits, 33-64, ...; n=33: significant byte count; n=257: exact bit length).
    PUSH0 has no operand and gets no bucket token. Ids of the opcodes do not depend on ``push_buckets``.
    """

    STATE_VERSION = 1

    def __init__(self, push_buckets: int | None = None, strip_metadata: bool = True) -> None:
        valid = push_buckets is None or (
            isinstance(push_buckets, int) and not isinstance(push_buckets, bool) and 2 <= push_buckets <= 257
        )
        if not valid:
            raise ValueError(f"push_buckets must be None or an int in [2, 257], got {push_buckets!r}")
        self.push_buckets = push_buckets
        self.strip_metadata = strip_metadata
        self.vocab: list[str] = list(_BASE_VOCAB) + [f"<arg:{i}>" for i in range(push_buckets or 0)]
        self.pad_id: int = 0
        self.unk_id: int = 1
        self.vocab_size: int = len(self.vocab)
        self._bucket_base = len(_BASE_VOCAB)
        self._tokens = np.array(self.vocab, dtype=object)

    def __repr__(self) -> str:
        return f"EvmTokenizer(push_buckets={self.push_buckets}, strip_metadata={self.strip_metadata})"

    def encode(
        self, bytecode: str | bytes, max_length: int | None = None, source: str = "bytecode"
    ) -> np.ndarray:
        """Token ids (int32) of ``bytecode``, the first ``max_length`` of them when given."""
        code = parse_hex(bytecode, source)
        if self.strip_metadata:
            code = strip_metadata(code)
        if max_length is not None:
            if max_length < 0:
                raise ValueError(f"max_length must be >= 0, got {max_length}")
            code = code[: max_length * 33]  # an instruction is at most 33 bytes: enough for max_length tokens
        ops, push = _scan(code)
        ids = _ID_OF_BYTE.take(ops)
        if self.push_buckets and push.size:
            arr = np.frombuffer(code, dtype=np.uint8)
            op_len = arr[push].astype(np.intp) - (_PUSH1 - 1)
            bits = _operand_bit_lengths(arr, push, op_len)
            buckets = np.where(bits > 0, 1 + (bits - 1) * (self.push_buckets - 1) // 256, 0)
            index = push - (np.cumsum(op_len) - op_len)  # of each PUSH among the instructions
            ids = np.insert(ids, index + 1, (self._bucket_base + buckets).astype(np.int32))
        return ids if max_length is None else ids[:max_length]

    def decode(self, ids: Iterable[int] | np.ndarray) -> list[str]:
        """Tokens of ``ids``, padding dropped (for reading model inputs, not for reassembly)."""
        arr = np.asarray(ids, dtype=np.int64).ravel()
        bad = (arr < 0) | (arr >= self.vocab_size)
        if bad.any():
            raise ValueError(f"token id {int(arr[bad][0])} outside the vocabulary (size {self.vocab_size})")
        return self._tokens[arr[arr != self.pad_id]].tolist()

    def state_dict(self) -> dict[str, Any]:
        """JSON-able settings and vocabulary, saved beside a model so it is fed the same ids later."""
        return {
            "kind": "evm_opcode",
            "version": self.STATE_VERSION,
            "push_buckets": self.push_buckets,
            "strip_metadata": self.strip_metadata,
            "vocab": list(self.vocab),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> EvmTokenizer:
        """Rebuild a saved tokenizer; refuses one whose vocabulary differs from what this code produces."""
        if state.get("kind") != "evm_opcode" or state.get("version") != cls.STATE_VERSION:
            raise ValueError(
                f"not an EvmTokenizer v{cls.STATE_VERSION} state: kind={state.get('kind')!r} "
                f"version={state.get('version')!r}"
            )
        tok = cls(state.get("push_buckets"), strip_metadata=bool(state.get("strip_metadata", True)))
        if "vocab" in state and list(state["vocab"]) != tok.vocab:
            raise ValueError("saved tokenizer vocabulary differs from this code's opcodes: ids would shift")
        return tok

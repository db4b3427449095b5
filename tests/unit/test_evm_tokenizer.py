"""The opcode tokenizer against the opcode table, solc output of five eras, and pyevmasm as the reference.

Fixtures under tests/fixtures/evm are runtime bytecode (``evm.deployedBytecode.object``) compiled once with
the npm solc-js releases in scripts/solc (optimizer on, 200 runs): ``vault-<version>.hex`` is a small vault
(mapping, events, a low-level call, keccak256, shifts; 0.8.26 adds tload/tstore, basefee and prevrandao) and
``experimental-0.5.17.hex`` a one-setter contract under ``pragma experimental ABIEncoderV2``, whose metadata
carries the ``experimental`` key.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pyevmasm
import pytest

from training_pipeline.data.evm import (
    MNEMONIC_ALIASES,
    OPCODES,
    EvmTokenizer,
    InvalidBytecodeError,
    disassemble,
    parse_hex,
    strip_metadata,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "evm"
VERSIONS = ("0.4.26", "0.5.17", "0.6.12", "0.7.6", "0.8.26")
# Opcodes newer than pyevmasm's last fork (Istanbul): it decodes these bytes as INVALID.
POST_ISTANBUL = {
    0x48: "BASEFEE",
    0x49: "BLOBHASH",
    0x4A: "BLOBBASEFEE",
    0x5C: "TLOAD",
    0x5D: "TSTORE",
    0x5E: "MCOPY",
    0x5F: "PUSH0",
}
PRE_SHANGHAI_BYTES = [b for b in range(256) if b not in POST_ISTANBUL]


def fixture(name: str) -> bytes:
    return bytes.fromhex((FIXTURES / name).read_text().strip())


def vault(version: str) -> bytes:
    return fixture(f"vault-{version}.hex")


def pyevmasm_names(code: bytes) -> list[str]:
    return [ins.name for ins in pyevmasm.disassemble_all(code, fork="istanbul")]


def as_pyevmasm_sees_it(names: list[str]) -> list[str]:
    """Our mnemonics, post-Istanbul ones renamed INVALID (none has an immediate, so boundaries agree)."""
    newer = set(POST_ISTANBUL.values())
    return ["INVALID" if name in newer else name for name in names]


# -- opcode table -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("byte", "name"),
    [
        (0x1B, "SHL"),
        (0x1C, "SHR"),
        (0x1D, "SAR"),
        (0x3F, "EXTCODEHASH"),
        (0xF5, "CREATE2"),
        (0x46, "CHAINID"),
        (0x47, "SELFBALANCE"),
        (0x48, "BASEFEE"),
        (0x5F, "PUSH0"),
        (0x5C, "TLOAD"),
        (0x5D, "TSTORE"),
        (0x5E, "MCOPY"),
        (0x49, "BLOBHASH"),
        (0x4A, "BLOBBASEFEE"),
        (0x44, "DIFFICULTY"),
        (0x20, "SHA3"),
        (0x58, "GETPC"),
        (0x00, "STOP"),
        (0xFE, "INVALID"),
        (0xFF, "SELFDESTRUCT"),
        (0xFA, "STATICCALL"),
        (0xFD, "REVERT"),
        (0xF4, "DELEGATECALL"),
        (0x3D, "RETURNDATASIZE"),
    ],
)
def test_opcode_decodes_to_its_mnemonic(byte: int, name: str) -> None:
    assert OPCODES[byte] == (name, 0)
    assert disassemble(bytes([byte])) == [name]


def test_table_families_and_immediates() -> None:
    assert len(OPCODES) == 149  # every opcode defined through Cancun, 0xfe INVALID included
    assert [OPCODES[0x5F + n] for n in range(1, 33)] == [(f"PUSH{n}", n) for n in range(1, 33)]
    assert [OPCODES[0x7F + n][0] for n in range(1, 17)] == [f"DUP{n}" for n in range(1, 17)]
    assert [OPCODES[0x8F + n][0] for n in range(1, 17)] == [f"SWAP{n}" for n in range(1, 17)]
    assert [OPCODES[0xA0 + n][0] for n in range(5)] == [f"LOG{n}" for n in range(5)]
    assert {imm for byte, (_, imm) in OPCODES.items() if not 0x60 <= byte <= 0x7F} == {0}
    assert len({name for name, _ in OPCODES.values()}) == len(OPCODES)
    assert set(MNEMONIC_ALIASES.values()) <= {name for name, _ in OPCODES.values()}


def test_undefined_bytes_share_the_invalid_token() -> None:
    undefined = bytes(b for b in range(256) if b not in OPCODES)
    assert len(undefined) == 256 - 149
    assert disassemble(undefined) == ["INVALID"] * len(undefined)
    tok = EvmTokenizer()
    assert set(tok.encode(undefined + b"\xfe").tolist()) == {tok.vocab.index("INVALID")}


def test_names_match_pyevmasm_for_every_byte_it_knows() -> None:
    for byte in PRE_SHANGHAI_BYTES:
        code = bytes([byte]) + bytes(32)
        assert disassemble(code)[0] == pyevmasm_names(code)[0]


# -- operands -----------------------------------------------------------------------------------------------
def test_push_operands_are_skipped_even_when_they_look_like_opcodes() -> None:
    assert disassemble(b"\x7f" + b"\x01" * 32) == ["PUSH32"]
    assert disassemble(b"\x7f" + b"\x7f" * 32 + b"\x01") == ["PUSH32", "ADD"]
    assert disassemble(b"\x61\x60\x60\x60\x01\x01") == ["PUSH2", "PUSH1", "ADD"]
    assert disassemble("0x6080604052") == ["PUSH1", "PUSH1", "MSTORE"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (b"\x60", []),
        (b"\x7f" + bytes(31), []),
        (b"\x60\x01\x02\x7f\x01", ["PUSH1", "MUL"]),
        (b"\x01\x61\x00", ["ADD"]),
        (b"\x60\x60\x60", ["PUSH1"]),  # the second 0x60 is the operand, the third a PUSH1 with none
    ],
)
def test_truncated_push_at_the_end_is_dropped_like_pyevmasm(code: bytes, expected: list[str]) -> None:
    assert pyevmasm_names(code) == expected
    assert disassemble(code) == expected
    tok = EvmTokenizer(push_buckets=9, strip_metadata=False)
    assert [t for t in tok.decode(tok.encode(code)) if not t.startswith("<")] == expected


# -- solc metadata ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "header"),
    [
        ("vault-0.4.26.hex", b"\xa1\x65bzzr0"),
        ("vault-0.5.17.hex", b"\xa2\x65bzzr1"),
        ("vault-0.6.12.hex", b"\xa2\x64ipfs"),
        ("vault-0.7.6.hex", b"\xa2\x64ipfs"),
        ("vault-0.8.26.hex", b"\xa2\x64ipfs"),
        ("experimental-0.5.17.hex", b"\xa3\x65bzzr1"),
    ],
)
def test_metadata_tail_of_real_solc_output_is_stripped(name: str, header: bytes) -> None:
    code = fixture(name)
    size = int.from_bytes(code[-2:], "big")
    tail = code[-2 - size : -2]
    assert tail.startswith(header)  # what each era writes
    stripped = strip_metadata(code)
    assert stripped == code[: -2 - size]
    assert disassemble(stripped)[-1] in ("STOP", "INVALID")  # solc ends runtime code with one of these
    assert strip_metadata(stripped) == stripped  # what is left does not look like metadata
    assert disassemble(code, strip_metadata=True) == disassemble(stripped)
    assert len(disassemble(code)) > len(disassemble(stripped))


def test_solc_and_experimental_keys_are_recognised() -> None:
    assert b"\x6cexperimental\xf5\x64solc" in fixture("experimental-0.5.17.hex")
    body = b"\x5b\x00"
    no_hash = b"\xa1\x64solc\x43\x00\x08\x1a"  # solc --metadata-hash none
    assert strip_metadata(body + no_hash + len(no_hash).to_bytes(2, "big")) == body
    ipfs_only = b"\xa1\x64ipfs\x58\x22" + bytes(34)
    assert strip_metadata(body + ipfs_only + len(ipfs_only).to_bytes(2, "big")) == body


@pytest.mark.parametrize(
    "code",
    [
        bytes.fromhex("6080604052600080fd"),  # ordinary code
        bytes.fromhex("00") * 10 + bytes.fromhex("0005"),  # a length, but not a CBOR map before it
        b"\x00" + b"\xa1\x65vyper\x83\x00\x03\x09" + bytes.fromhex("000b"),  # a map, unknown key
        b"\x00" + b"\xa1\x64ipfs\x58\x22" + bytes(34) + bytes.fromhex("0029"),  # known key, wrong length
        b"\x00" + b"\xa2\x64ipfs\x58\x22" + bytes(34) + bytes.fromhex("002a"),  # map says 2 pairs, has 1
        bytes.fromhex("0029"),  # length longer than the code
        bytes.fromhex("0000"),
        b"\x01",
    ],
)
def test_code_without_metadata_is_left_alone(code: bytes) -> None:
    assert strip_metadata(code) == code


def test_only_the_final_metadata_is_stripped() -> None:
    child = vault("0.5.17")  # a factory embeds its child's code, metadata and all, before its own
    parent = vault("0.8.26")
    code = child + parent
    assert strip_metadata(code) == child + strip_metadata(parent)


# -- equality with pyevmasm -------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.4.26", "0.5.17"])
def test_same_mnemonics_as_pyevmasm_on_pre_shanghai_solc_output(version: str) -> None:
    code = strip_metadata(vault(version))
    names = disassemble(code)
    assert not set(names) & set(POST_ISTANBUL.values())
    assert names == pyevmasm_names(code)


@pytest.mark.parametrize("version", VERSIONS)
def test_same_instruction_boundaries_as_pyevmasm_on_every_era_including_metadata(version: str) -> None:
    code = vault(version)
    assert as_pyevmasm_sees_it(disassemble(code)) == pyevmasm_names(code)


@pytest.mark.parametrize("seed", range(12))
def test_same_mnemonics_as_pyevmasm_on_random_pre_shanghai_bytes(seed: int) -> None:
    rng = random.Random(seed)
    pushes = list(range(0x60, 0x80))
    # Half the draws PUSH bytes, so operands overlap other PUSH bytes and truncation at the end is common.
    code = bytes(
        rng.choice(pushes) if rng.random() < 0.5 else rng.choice(PRE_SHANGHAI_BYTES)
        for _ in range(rng.randint(1, 1500))
    )
    assert disassemble(code) == pyevmasm_names(code)


@pytest.mark.parametrize("seed", range(4))
def test_same_boundaries_as_pyevmasm_on_random_bytes_of_every_value(seed: int) -> None:
    rng = random.Random(1000 + seed)
    code = bytes(rng.randrange(256) for _ in range(2000))
    assert as_pyevmasm_sees_it(disassemble(code)) == pyevmasm_names(code)


# -- input validation -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    ["6001", "0x6001", "0X6001", "  0x6001\n", "\t6001 ", "60" + "01", b"\x60\x01", bytearray(b"\x60\x01")],
)
def test_accepted_spellings(text: str | bytes) -> None:
    assert parse_hex(text) == b"\x60\x01"


def test_upper_and_mixed_case_hex() -> None:
    assert parse_hex("0xABcdEF") == b"\xab\xcd\xef"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "record 'a': empty bytecode"),
        ("   ", "record 'a': empty bytecode"),
        ("0x", "record 'a': empty bytecode (only 0x)"),
        (" 0X ", "record 'a': empty bytecode (only 0x)"),
        (b"", "record 'a': empty bytecode"),
        ("0x600", "record 'a': odd number of hex digits (3)"),
        ("0x60zz", "record 'a': non-hex character 'z' at position 4 of the input"),
        ("  6g", "record 'a': non-hex character 'g' at position 3 of the input"),
        ("60 01", "record 'a': non-hex character ' ' at position 2 of the input"),
        ("6001é", "record 'a': non-hex character 'é' at position 4 of the input"),
        ("0x0x6001", "record 'a': non-hex character 'x' at position 3 of the input"),
        (None, "record 'a': expected hex text or bytes, got NoneType"),
    ],
)
def test_bad_input_raises_one_clear_line_naming_the_source(text: str, message: str) -> None:
    with pytest.raises(InvalidBytecodeError) as err:
        parse_hex(text, source="record 'a'")
    assert str(err.value) == message
    assert isinstance(err.value, ValueError)


def test_encode_and_disassemble_validate_too() -> None:
    with pytest.raises(InvalidBytecodeError, match=r"^contract 7: odd number of hex digits \(5\)$"):
        EvmTokenizer().encode("0x60016", source="contract 7")
    with pytest.raises(InvalidBytecodeError, match="^bytecode: empty bytecode"):
        disassemble("0x")


# -- tokenizer ----------------------------------------------------------------------------------------------
def test_vocabulary_is_fixed_and_starts_with_pad_and_unk() -> None:
    tok = EvmTokenizer()
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and tok.pad_id == 0
    assert tok.vocab[2:5] == ["STOP", "ADD", "MUL"] and tok.vocab[-1] == "SELFDESTRUCT"
    assert tok.vocab_size == len(tok.vocab) == 2 + 149 == len(set(tok.vocab))
    assert EvmTokenizer(strip_metadata=False).vocab == tok.vocab
    buckets = EvmTokenizer(push_buckets=9)
    assert buckets.vocab[: tok.vocab_size] == tok.vocab  # opcode ids do not move with the option
    assert buckets.vocab[tok.vocab_size :] == [f"<arg:{i}>" for i in range(9)]


def test_encode_gives_int32_ids_that_decode_to_the_disassembly() -> None:
    tok = EvmTokenizer()
    for version in VERSIONS:
        code = vault(version)
        ids = tok.encode(code)
        assert ids.dtype == np.int32 and ids.ndim == 1
        assert tok.pad_id not in ids
        assert tok.decode(ids) == disassemble(code, strip_metadata=True)
        assert np.array_equal(tok.encode("0x" + code.hex().upper()), ids)
    keep = EvmTokenizer(strip_metadata=False)
    assert keep.decode(keep.encode(vault("0.8.26"))) == disassemble(vault("0.8.26"))


def test_decode_drops_padding_and_rejects_unknown_ids() -> None:
    tok = EvmTokenizer()
    ids = tok.encode("0x600101")
    assert tok.decode(np.concatenate([ids, [tok.pad_id] * 3])) == ["PUSH1", "ADD"]
    assert tok.decode(ids.tolist()) == ["PUSH1", "ADD"]
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])


@pytest.mark.parametrize("push_buckets", [None, 9])
def test_max_length_truncates_to_a_prefix(push_buckets: int | None) -> None:
    tok = EvmTokenizer(push_buckets=push_buckets)
    code = vault("0.8.26") + vault("0.5.17")
    full = tok.encode(code)
    for max_length in (0, 1, 2, 7, 100, len(full) - 1, len(full), len(full) + 5):
        assert np.array_equal(tok.encode(code, max_length=max_length), full[:max_length])
    # All-PUSH32 code: max_length instructions need the most bytes the encoder keeps before scanning.
    wide = (b"\x7f" + b"\x01" * 32) * 20
    assert np.array_equal(tok.encode(wide, max_length=5), tok.encode(wide)[:5])
    with pytest.raises(ValueError, match="max_length"):
        tok.encode(code, max_length=-1)


def test_push_buckets_follow_each_push_with_its_operand_magnitude() -> None:
    code = (
        b"\x60\x00"  # PUSH1 0          -> zero
        + b"\x60\x01"  # PUSH1 1          -> 1 bit
        + b"\x61\x01\x00"  # PUSH2 0x0100 -> 9 bits
        + b"\x63\x00\x00\x00\xff"  # PUSH4 0xff: leading zero bytes do not count -> 8 bits
        + b"\x73"
        + b"\xff" * 20  # PUSH20 address mask -> 160 bits
        + b"\x7f"
        + b"\x80"
        + bytes(31)  # PUSH32 2**255 -> 256 bits
        + b"\x5f\x01"  # PUSH0 has no operand and no bucket
    )
    exact = EvmTokenizer(push_buckets=257)  # one bucket per bit length
    pushes = ["PUSH1", "PUSH1", "PUSH2", "PUSH4", "PUSH20", "PUSH32"]
    bits = [0, 1, 9, 8, 160, 256]
    expected = [t for p, b in zip(pushes, bits, strict=True) for t in (p, f"<arg:{b}>")] + ["PUSH0", "ADD"]
    assert exact.decode(exact.encode(code)) == expected
    by_bytes = EvmTokenizer(push_buckets=33)  # zero, then significant byte count
    assert [t for t in by_bytes.decode(by_bytes.encode(code)) if t.startswith("<")] == [
        "<arg:0>",
        "<arg:1>",
        "<arg:2>",
        "<arg:1>",
        "<arg:20>",
        "<arg:32>",
    ]
    coarse = EvmTokenizer(push_buckets=2)  # zero / non-zero
    coarse_buckets = [t for t in coarse.decode(coarse.encode(code)) if t.startswith("<")]
    assert coarse_buckets == ["<arg:0>"] + ["<arg:1>"] * 5


def test_push_buckets_agree_with_pyevmasm_operands_on_real_code() -> None:
    tok = EvmTokenizer(push_buckets=257, strip_metadata=False)
    for version in ("0.4.26", "0.5.17"):
        code = vault(version)
        expected = []
        for ins in pyevmasm.disassemble_all(code):
            expected.append(ins.name)
            if ins.operand_size:
                expected.append(f"<arg:{ins.operand.bit_length()}>")
        assert as_pyevmasm_sees_it(tok.decode(tok.encode(code))) == expected


@pytest.mark.parametrize("bad", [0, 1, 258, 2.5, True, "9"])
def test_push_buckets_must_be_a_sensible_int(bad: object) -> None:
    with pytest.raises(ValueError, match="push_buckets"):
        EvmTokenizer(push_buckets=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("push_buckets", "strip"), [(None, True), (17, False)])
def test_state_dict_round_trip_through_json(push_buckets: int | None, strip: bool) -> None:
    tok = EvmTokenizer(push_buckets=push_buckets, strip_metadata=strip)
    state = json.loads(json.dumps(tok.state_dict()))
    again = EvmTokenizer.from_state_dict(state)
    assert (again.push_buckets, again.strip_metadata, again.vocab) == (push_buckets, strip, tok.vocab)
    code = vault("0.8.26")
    assert np.array_equal(again.encode(code), tok.encode(code))


def test_state_dict_with_another_vocabulary_is_refused() -> None:
    state = EvmTokenizer().state_dict()
    state["vocab"] = state["vocab"][:-1]
    with pytest.raises(ValueError, match="vocabulary differs"):
        EvmTokenizer.from_state_dict(state)
    with pytest.raises(ValueError, match="not an EvmTokenizer"):
        EvmTokenizer.from_state_dict({"kind": "bpe"})

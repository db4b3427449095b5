"""Opcode tokenizer throughput: our numpy disassembler vs pyevmasm on the same bytecode, in one process.

Inputs are ~10 KB each (10 KB = 10240 bytes): compiled solc output (the vault fixtures of all five eras in
tests/fixtures/evm, concatenated in rotating order; a synthetic instruction stream if the fixtures are not
there) and random bytes without post-Istanbul opcodes. Times are the best of several passes over all inputs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from training_pipeline.config import project_root
from training_pipeline.data.evm import OPCODES, EvmTokenizer, disassemble

SIZE = 10 * 1024
# pyevmasm stops at Istanbul and calls these INVALID; none has an immediate, so instruction boundaries agree.
_POST_ISTANBUL = {0x48, 0x49, 0x4A, 0x5C, 0x5D, 0x5E, 0x5F}
_POST_ISTANBUL_NAMES = {OPCODES[b][0] for b in _POST_ISTANBUL}


def _fixture_codes() -> list[bytes]:
    paths = sorted((project_root() / "tests" / "fixtures" / "evm").glob("vault-*.hex"))
    return [bytes.fromhex(p.read_text().strip()) for p in paths]


def _synthetic_code(rng: random.Random, size: int) -> bytes:
    """Instructions in a compiled contract's rough mix: many PUSH1/2 and DUP/SWAP, a few wide PUSHes."""
    out = bytearray()
    common = [0x01, 0x03, 0x10, 0x14, 0x15, 0x16, 0x35, 0x50, 0x51, 0x52, 0x54, 0x55, 0x56, 0x57, 0x5B]
    while len(out) < size:
        r = rng.random()
        if r < 0.35:
            width = rng.choices([1, 2, 4, 20, 32], weights=[60, 30, 5, 3, 2])[0]
            out += bytes([0x5F + width]) + rng.randbytes(width)
        elif r < 0.6:
            out.append(rng.choice(range(0x80, 0xA0)))
        else:
            out.append(rng.choice(common))
    return bytes(out[:size])


def _inputs(n_compiled: int, n_random: int) -> dict[str, list[bytes]]:
    rng = random.Random(20240601)
    fixtures = _fixture_codes()
    compiled = []
    for i in range(n_compiled):
        if fixtures:
            order = fixtures[i % len(fixtures) :] + fixtures[: i % len(fixtures)]
            blob = b"".join(order)
            compiled.append((blob * (SIZE // len(blob) + 1))[:SIZE])
        else:
            compiled.append(_synthetic_code(rng, SIZE))
    safe = [b for b in range(256) if b not in _POST_ISTANBUL]
    randoms = [bytes(rng.choices(safe, k=SIZE)) for _ in range(n_random)]
    return {"solc" if fixtures else "synthetic": compiled, "random": randoms}


def _best_seconds(fn: Callable[[bytes], object], codes: list[bytes], repeats: int) -> float:
    """Fastest of ``repeats`` passes of ``fn`` over all ``codes``."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for code in codes:
            fn(code)
        best = min(best, time.perf_counter() - start)
    return best


def _measure(codes: list[bytes], slow_repeats: int, fast_repeats: int) -> dict:
    import pyevmasm  # test/benchmark-only dependency

    def reference(code: bytes) -> list:
        return list(pyevmasm.disassemble_all(code))

    plain, buckets = EvmTokenizer(strip_metadata=False), EvmTokenizer(push_buckets=33, strip_metadata=False)
    agree = all(
        [i.name for i in reference(c)]
        == ["INVALID" if name in _POST_ISTANBUL_NAMES else name for name in disassemble(c)]
        for c in codes
    )
    per_10kb = 1e3 * SIZE / sum(map(len, codes))
    theirs = _best_seconds(reference, codes, slow_repeats) * per_10kb
    ours = _best_seconds(disassemble, codes, fast_repeats) * per_10kb
    encode = _best_seconds(plain.encode, codes, fast_repeats) * per_10kb
    encode_buckets = _best_seconds(buckets.encode, codes, fast_repeats) * per_10kb
    return {
        "inputs": len(codes),
        "bytes_total": sum(map(len, codes)),
        "instructions_total": sum(len(disassemble(c)) for c in codes),
        "pyevmasm_ms_per_10kb": round(theirs, 3),
        "ours_ms_per_10kb": round(ours, 4),
        "encode_ms_per_10kb": round(encode, 4),
        "encode_push_buckets_ms_per_10kb": round(encode_buckets, 4),
        "speedup_vs_pyevmasm": round(theirs / ours, 1),
        "same_instructions_as_pyevmasm": agree,
    }


def run(quick: bool = False) -> dict:
    """Time pyevmasm.disassemble_all (materialized) against ``disassemble`` and ``EvmTokenizer.encode``."""
    sets = _inputs(n_compiled=3 if quick else 16, n_random=2 if quick else 8)
    slow, fast = (2, 30) if quick else (3, 50)
    by_kind = {kind: _measure(codes, slow, fast) for kind, codes in sets.items()}
    overall = _measure([c for codes in sets.values() for c in codes], slow, fast)
    return {"tokenizer": {**overall, "repeats": {"pyevmasm": slow, "ours": fast}, "by_kind": by_kind}}

"""The shared Solidity lexer and pragma → compiler choice (npm ranges through semantic_version)."""

from __future__ import annotations

import random

import pytest

from training_pipeline.corpus.solc import compatible_compilers, pragma_constraints
from training_pipeline.utils.solidity import (
    COMMENTS,
    code_only,
    comments_and_strings,
    iter_tokens,
    pragmas,
    render,
    tokenize,
)

SOURCE = 'pragma solidity ^0.5.0; // "quote\ncontract A { string s = "a//b"; /* x\n y */ uint x = 0x1f; }\n'


def test_tokens_round_trip_and_kinds() -> None:
    toks = tokenize(SOURCE.replace("\n", "\r\n"))
    assert render(toks) == SOURCE
    kinds = {t.text: t.kind for t in toks}
    assert kinds['// "quote'] == "comment" and kinds['"a//b"'] == "str" and kinds["0x1f"] == "num"
    assert kinds["/* x\n y */"] == "block" and kinds["pragma"] == "ident" and kinds["{"] == "punct"
    assert [t.line for t in toks if t.text == "uint"] == [3]


def _spans(toks) -> list[tuple]:
    return [(t.kind, t.text, t.line, t.start) for t in toks]


def test_comment_and_string_scan_equals_the_full_lexer() -> None:
    # The fast scan must find exactly the lexer's comment and string tokens: the leftmost token wins, so
    # "//" in a string, a quote in a comment, "/=" before "/", escapes and unterminated ones all matter.
    rng = random.Random(0)
    alphabet = list("/*\"'\\\n =.1ax\r")
    texts = [SOURCE, 'a /=/ b; c /=// d\n"x\\"/*"\' // \'', "/* never closed\n 'x"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16))) for _ in range(20000)]
    for text in texts:
        full = [t for t in iter_tokens(text) if t.kind in COMMENTS or t.kind == "str"]
        assert _spans(comments_and_strings(text)) == _spans(full), repr(text)


def test_code_only_keeps_offsets_and_lines() -> None:
    code = code_only(SOURCE)
    assert len(code) == len(SOURCE) and code.count("\n") == SOURCE.count("\n")
    assert "//" not in code and "quote" not in code and "uint x = 0x1f" in code


def test_pragmas_skip_comments() -> None:
    src = "/* pragma solidity ^0.4.0; */\npragma solidity >=0.4.22 <0.6.0;\npragma experimental ABIEncoderV2;"
    assert [(p.name, p.value, p.line) for p in pragmas(src)] == [
        ("solidity", ">=0.4.22 <0.6.0", 2),
        ("experimental", "ABIEncoderV2", 3),
    ]


@pytest.mark.parametrize(
    ("pragma", "expected"),
    [
        ("^0.4.24", ["0.4.26"]),
        ("0.5.17", ["0.5.17"]),
        ("=0.6.12", ["0.6.12"]),
        ("~0.7.0", ["0.7.6"]),
        (">=0.4.22 <0.6.0", ["0.4.26", "0.5.17"]),
        (">= 0.6.0 < 0.8.0", ["0.6.12", "0.7.6"]),
        ("^0.4.0 || ^0.8.0", ["0.4.26", "0.8.26"]),
        ("0.5.16", []),
    ],
)
def test_compiler_choice(pragma: str, expected: list[str]) -> None:
    assert compatible_compilers(f"pragma solidity {pragma};\ncontract A {{}}") == expected


def test_no_pragma_means_no_guess() -> None:
    assert pragma_constraints("contract A {}") == [] and compatible_compilers("contract A {}") == []


@pytest.mark.parametrize(
    "text", ["pragma solidity^0.4.24;", "pragma solidity>=0.4.22 <0.6.0;", "pragma solidity=0.5.16;"]
)
def test_pragma_operator_right_after_the_name(text: str) -> None:
    """Real files write the operator against the name (CGT has four): still a version directive."""
    (found,) = pragmas(text + "\ncontract A {}\n")
    assert found.name == "solidity" and found.value == text.split("solidity", 1)[1].rstrip(";")


def test_pragma_without_a_separator_or_value_is_no_directive() -> None:
    assert pragmas("pragma solidity0.8;\npragma solidity;\n") == []


def test_spaces_around_dots_are_a_range_solc_accepts() -> None:
    """``pragma solidity ^ 0.4 .6;`` (17 CGT files) compiles with solc 0.4.x: the range must parse."""
    assert compatible_compilers("pragma solidity ^ 0.4 .6;\ncontract A {}\n") == ["0.4.26"]

"""Source clean-up: label-bearing comments blanked with lines kept, clone hashing robust to renames."""

from __future__ import annotations

import pytest

from training_pipeline.data.clean import blank_label_comments, code_only, normalized_source_hash

LEAKY_COMMENTS = [
    "// <yes> <report> REENTRANCY",
    "// BUG",
    "//bug",
    "// vulnerable to a drain",
    "// slither-disable-next-line reentrancy-eth",
    "/// @audit unchecked return value",
    "// SWC-107",
    "/* integer overflow here */",
    "// underflow bug",
    "// solhint-disable-next-line avoid-tx-origin",
    "// front-running possible",
    "// timestamp dependence",
    "// tx.origin check",
]


@pytest.mark.parametrize("comment", LEAKY_COMMENTS)
def test_label_bearing_comments_are_blanked(comment: str) -> None:
    source = f"contract A {{\n    uint x; {comment}\n    uint y;\n}}\n"
    cleaned, n = blank_label_comments(source)
    assert n == 1
    assert comment not in cleaned and "uint x;" in cleaned and "uint y;" in cleaned
    assert cleaned.count("\n") == source.count("\n")


def test_neutral_comments_and_strings_stay() -> None:
    source = (
        'contract A {\n    string u = "http://x.org // reentrancy overflow";  // the home page\n'
        "    /* total supply */ uint s;\n}\n"
    )
    cleaned, n = blank_label_comments(source)
    assert n == 0 and cleaned == source


def test_quote_inside_comment_does_not_open_a_string() -> None:
    source = (
        "contract A {\n    // don't: reentrancy\n    uint x; // it's fine\n"
        '    string s = "a\'b"; // BUG\n}\n'
    )
    cleaned, n = blank_label_comments(source)
    assert n == 2
    assert "reentrancy" not in cleaned and "BUG" not in cleaned
    assert "// it's fine" in cleaned and 'string s = "a\'b";' in cleaned


def test_multiline_block_comment_keeps_its_newlines() -> None:
    source = "uint a; /* first line\n   reentrancy here\n   last */ uint b;\nuint c;\n"
    cleaned, n = blank_label_comments(source)
    assert n == 1
    assert cleaned.splitlines() == ["uint a;  ", "", " uint b;", "uint c;"]


def test_unterminated_block_comment_runs_to_the_end() -> None:
    cleaned, n = blank_label_comments("uint a;\n/* BUG\nuint b;")
    assert n == 1 and cleaned == "uint a;\n \n"


def test_comments_on_given_lines_are_blanked_whatever_they_say() -> None:
    source = "uint a; // harmless one\nuint b; // harmless two\n"
    cleaned, n = blank_label_comments(source, lines=[2])
    assert n == 1 and "harmless one" in cleaned and "harmless two" not in cleaned


def test_code_only_keeps_offsets() -> None:
    source = 'a = "x//y"; // c\n/* d\n e */ b;'
    code = code_only(source)
    assert len(code) == len(source) and code.count("\n") == source.count("\n")
    assert code.startswith("a = ") and "b;" in code and "c" not in code.replace("b;", "")


def test_hash_ignores_formatting_and_comments() -> None:
    a = "contract A {\n  uint x; // note\n  function f() public { x = 1; }\n}"
    b = "contract A { uint x;\n\n /* other */ function f() public {x=1;} }"
    assert normalized_source_hash(a) == normalized_source_hash(b)


def test_hash_ignores_identifier_renames_but_not_semantics() -> None:
    a = "contract A { address o; function f() public { require(msg.sender == o); } }"
    renamed = "contract Bank { address boss; function g() public { require(msg.sender == boss); } }"
    origin = "contract A { address o; function f() public { require(tx.origin == o); } }"
    assert normalized_source_hash(a) == normalized_source_hash(renamed)
    assert normalized_source_hash(a) != normalized_source_hash(origin)
    # an inconsistent rename (two names collapsed into one) is a different program
    two = "contract A { uint a; uint b; function f() public { a = b; } }"
    one = "contract A { uint a; uint b; function f() public { a = a; } }"
    assert normalized_source_hash(two) != normalized_source_hash(one)


def test_hash_keeps_strings_and_reads_slashes_inside_them() -> None:
    a = 'contract A { string s = "http://a.org"; uint x; }'
    b = 'contract A { string s = "http://b.org"; uint x; }'
    assert normalized_source_hash(a) != normalized_source_hash(b)
    assert normalized_source_hash(a) == normalized_source_hash(a.replace("uint x;", "uint x; // c\n"))

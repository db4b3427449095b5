"""Source augmentation: scanner, semantics-keeping transforms, line maps, recompiles, train-only variants."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from conftest import compose_config, tiny_overrides
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate

from training_pipeline.corpus import augment as A
from training_pipeline.corpus.augment import AugmentConfig, AugmentStats, augment_records, augment_source
from training_pipeline.corpus.solc import CompileJob, SolcPool
from training_pipeline.data.evm import parse_hex, strip_metadata
from training_pipeline.errors import ConfigError
from training_pipeline.utils.checks import config_dataclass

TRICKY = """// SPDX-License-Identifier: MIT
pragma solidity 0.8.26;

/* a block comment with { braces } and "quotes" */
library MathLib {
    function twice(uint256 a) internal pure returns (uint256) {
        return a * 2;
    }
}

contract Base {
    uint256 internal counter; // trailing { comment
    event Bumped(uint256 by);

    modifier onlyPositive(uint256 amount) {
        require(amount > 0, "amount // not a comment");
        _;
    }

    function _bump(uint256 by) internal virtual {
        counter += by;
        emit Bumped(by);
    }
}

contract Vault is Base {
    using MathLib for uint256;

    struct Position { uint256 size; address holder; }

    mapping(address => Position) private positions;
    uint256 public total;
    string private note = "it's /* not */ a comment";

    function deposit(uint256 size) external payable onlyPositive(size) {
        Position storage p = positions[msg.sender];
        p.size = p.size + size.twice();
        p.holder = msg.sender;
        uint256 before = total;
        total = before + size;
        _bump(size);
        uint256 word;
        assembly {
            word := add(before, 1)
        }
        total += word > 0 ? 0 : 1;
    }

    function make(uint256 amount) external view returns (Position memory) {
        return Position({size: amount, holder: msg.sender});
    }

    function _bump(uint256 by) internal override {
        counter = counter + by;
    }
}
"""


N_AUGMENTED = 12  # training contracts the datamodule fixture augments (each variant is a real solc compile)


@pytest.fixture(scope="module")
def datamodule(data_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """The tiny corpus through the shared datamodule with augmentation on (one variant per contract).

    Only the first N_AUGMENTED training contracts are handed to ``augment_records``, to keep compiles few.
    """
    cfg = compose_config(
        "train.yaml",
        [*tiny_overrides(data_dir), "data.augment.enabled=true", "data.augment.copies=1"],
        tmp_path_factory.mktemp("aug_run"),
    )
    GlobalHydra.instance().clear()
    dm = instantiate(cfg.data, _convert_="all")
    dm.prepare_data()
    with pytest.MonkeyPatch.context() as mp:

        def few(records, c, d):
            return augment_records(records[:N_AUGMENTED], c, d)

        mp.setattr(A, "augment_records", few)
        mp.setattr("training_pipeline.data.contracts.augment_records", few)  # bound there at import
        dm.setup()
    return dm


@pytest.fixture(scope="module")
def originals(datamodule) -> list[dict]:
    return [r for r in datamodule.records if not r.get("augmented_from")]


@pytest.fixture(scope="module")
def pool(data_dir: Path):
    with SolcPool(n_workers=2, cache_dir=data_dir / "solc_cache") as p:
        yield p


def _selectors(bytecode: str) -> set[bytes]:
    """4-byte values compared in the dispatcher (PUSH4 x, EQ), walking instructions (operands skipped)."""
    code, found, i = strip_metadata(parse_hex(bytecode)), set(), 0
    while i < len(code):
        op = code[i]
        if 0x60 <= op <= 0x7F:
            size = op - 0x5F
            if op == 0x63 and i + 5 < len(code) and code[i + 5] == 0x14:
                found.add(code[i + 1 : i + 5])
            i += size
        i += 1
    return found


def _pick(records: list[dict], n: int) -> list[dict]:
    """n records taken round-robin over the compiler eras."""
    by_era: dict[str, list[dict]] = {}
    for r in records:
        by_era.setdefault(r["compiler_version"], []).append(r)
    queues = [iter(group) for _, group in sorted(by_era.items())]
    out: list[dict] = []
    while len(out) < n and queues:
        for q in list(queues):
            r = next(q, None)
            if r is None:
                queues.remove(q)
            elif len(out) < n:
                out.append(r)
    return out


# -- config and scanner ----------------------------------------------------------------------------------
def test_config_is_checked() -> None:
    assert AugmentConfig(transforms=["rename"]).transforms == ("rename",)
    with pytest.raises(ConfigError, match="transforms"):
        AugmentConfig(transforms=["rename", "shuffle"])
    with pytest.raises(ConfigError, match="copies"):
        AugmentConfig(copies=0)
    with pytest.raises(ConfigError, match="data.augment"):
        config_dataclass(AugmentConfig, {"enabled": True, "copy": 2}, "data.augment")


def test_scanner_round_trips_every_source(originals) -> None:
    for r in originals:
        assert A.render(A.tokenize(r["source_code"])) == r["source_code"].replace("\r\n", "\n")


def test_strings_comments_and_foreign_names_survive_renaming() -> None:
    changed = 0
    for seed in range(8):
        v = augment_source(TRICKY, random.Random(seed), ("rename",), "0.8.26")
        changed += bool(v.renames)
        assert '"amount // not a comment"' in v.source and '"it\'s /* not */ a comment"' in v.source
        assert "a block comment with { braces }" in v.source
        kept = {
            "size",
            "holder",
            "twice",
            "deposit",
            "make",
            "total",
            "before",
            "word",
            "MathLib",
            "Position",
        }
        assert not kept & set(v.renames), "struct fields, library/public functions, assembly names stay"
        assert {"Vault", "Base", "msg", "sender", "_"}.isdisjoint(v.renames)  # types, builtins
        before, after = {t.text for t in A.tokenize(TRICKY)}, {t.text for t in A.tokenize(v.source)}
        for old, new in v.renames.items():
            assert new not in before and old not in after
    assert changed >= 6


def test_nothing_is_renamed_when_some_code_is_unseen() -> None:
    unseen_base = TRICKY.replace("contract Vault is Base {", "contract Vault is Base, Pausable {")
    imported = TRICKY.replace("pragma solidity 0.8.26;", 'pragma solidity 0.8.26;\nimport "./Other.sol";')
    for source in (unseen_base, imported):
        assert augment_source(source, random.Random(0), ("rename",), "0.8.26").renames == {}


# -- semantics at the bytecode level -------------------------------------------------------------------
def test_every_transform_of_a_tricky_source_compiles(pool) -> None:
    variants = [augment_source(TRICKY, random.Random(s), A.TRANSFORMS, "0.8.26").source for s in range(4)]
    results = pool.compile([CompileJob(src, "0.8.26", "Vault") for src in [TRICKY, *variants]])
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    assert len({*variants, TRICKY}) == 5


def test_comment_and_whitespace_variants_compile_to_the_same_runtime_code(originals, pool) -> None:
    picked = _pick(originals, 6)
    variants = [
        augment_source(r["source_code"], random.Random(i), ("comments", "format"), r["compiler_version"])
        for i, r in enumerate(picked)
    ]
    assert all(v.source != r["source_code"] for v, r in zip(variants, picked, strict=True))
    jobs = [
        CompileJob(v.source, r["compiler_version"], r["contract_name"])
        for v, r in zip(variants, picked, strict=True)
    ]
    for r, result in zip(picked, pool.compile(jobs), strict=True):
        assert result.ok, result.error
        assert strip_metadata(parse_hex(result.bytecode)) == strip_metadata(parse_hex(r["bytecode"])), r["id"]


def test_renaming_changes_no_public_selector(originals, pool) -> None:
    picked = _pick(originals, 6)
    variants = [
        augment_source(r["source_code"], random.Random(i), ("rename",), r["compiler_version"])
        for i, r in enumerate(picked)
    ]
    assert sum(bool(v.renames) for v in variants) >= 5
    jobs = [
        CompileJob(v.source, r["compiler_version"], r["contract_name"])
        for v, r in zip(variants, picked, strict=True)
    ]
    for r, result in zip(picked, pool.compile(jobs), strict=True):
        assert result.ok, result.error
        assert _selectors(result.bytecode) == _selectors(r["bytecode"]) != set(), r["id"]


# -- line maps ------------------------------------------------------------------------------------------
_CANON = {"uint256": "uint", "int256": "int", "keccak256": "sha3", "selfdestruct": "suicide"}


def _statement(line: str, renames: dict[str, str] | None = None) -> list[str]:
    """The code of one line, renamed back, spelled canonically: braces, comments and layout ignored."""
    toks = A.compound_assignments(A.tokenize(line), expand=True)
    words = [(renames or {}).get(t.text, t.text) if t.kind == "ident" else t.text for t in toks if t.code]
    words = [_CANON.get(w, w) for w in words if w not in ("{", "}", "(", ")")]
    out: list[str] = []
    for w in words:
        if out[-2:] == ["block", "."] and w == "timestamp":
            out[-2:] = ["now"]
        else:
            out.append(w)
    return out


def test_vulnerable_lines_follow_their_statement(originals) -> None:
    flawed = [r for r in originals if r.get("vulnerable_lines")]
    assert len(flawed) >= 10
    moved = 0
    for r in flawed:
        for k in range(3):
            v = augment_source(
                r["source_code"], A.variant_rng(0, r["id"], k), A.TRANSFORMS, r["compiler_version"]
            )
            new_lines = A.remap_lines(r["vulnerable_lines"], v.lines)
            assert new_lines is not None and new_lines.keys() == r["vulnerable_lines"].keys()
            old_text, new_text = r["source_code"].split("\n"), v.source.split("\n")
            inverse = {new: old for old, new in v.renames.items()}
            for label, nums in r["vulnerable_lines"].items():
                assert len(new_lines[label]) == len(nums)
                for old in nums:
                    new = v.lines[old]
                    assert new in new_lines[label]
                    before = _statement(old_text[old - 1])
                    after = _statement(new_text[new - 1], inverse)
                    assert before and before == after, (r["id"], label, old_text[old - 1], new_text[new - 1])
                    moved += old != new
    assert moved > 0  # reordering and comments did move lines


# -- records and splits ----------------------------------------------------------------------------------
def test_variants_stay_in_their_group_and_only_in_train(datamodule) -> None:
    dm = datamodule
    pairs = list(zip(dm.records, dm.split_of, strict=True))
    by_id = {r["id"]: r for r, _ in pairs if not r.get("augmented_from")}
    split_of_group = {r["group"]: s for r, s in pairs if not r.get("augmented_from")}
    variants = [(r, s) for r, s in pairs if r.get("augmented_from")]
    n_train = sum(1 for r, s in pairs if s == "train" and not r.get("augmented_from"))
    assert len(variants) == N_AUGMENTED  # copies=1 and nothing failed to compile
    for r, split in variants:
        base = by_id[r["augmented_from"]]
        assert split == "train" and split_of_group[base["group"]] == "train"
        assert r["id"] == base["id"] + "~aug0" and r["split"] == "train"
        assert (r["group"], r["fold"], r["labels"], r["family"]) == (
            base["group"],
            base["fold"],
            base["labels"],
            base["family"],
        )
        assert r["source_code"] != base["source_code"] and r["bytecode"].startswith("0x")
    # recompiled, not copied: renamed events and rewritten idioms change the code of most variants
    assert (
        sum(r["bytecode"] != by_id[r["augmented_from"]]["bytecode"] for r, _ in variants) > len(variants) / 2
    )
    assert not set(dm.indices("all")) & {i for i, (r, _) in enumerate(pairs) if r.get("augmented_from")}
    assert len(dm.splits["train"]) == n_train + len(variants)
    assert {s: dm.split_of.count(s) for s in ("val", "test")} == {
        s: sum(1 for r, x in pairs if x == s and not r.get("augmented_from")) for s in ("val", "test")
    }


def test_augmentation_is_deterministic(datamodule, data_dir: Path) -> None:
    train = [r for r, s in zip(datamodule.records, datamodule.split_of, strict=True) if s == "train"]
    train = [r for r in train if not r.get("augmented_from")][:N_AUGMENTED]
    stats = AugmentStats()
    again = augment_records(train, AugmentConfig(enabled=True, copies=1), data_dir, stats=stats)  # cache hits
    first = [r for r in datamodule.records if r.get("augmented_from")]
    assert [(r["id"], r["source_code"], r["bytecode"]) for r in again] == [
        (r["id"], r["source_code"], r["bytecode"]) for r in first
    ]
    assert stats.variants == stats.kept == len(train) and stats.failure_rate == 0.0
    source, version = train[0]["source_code"], train[0]["compiler_version"]
    assert (
        augment_source(source, A.variant_rng(1, "x", 0), A.TRANSFORMS, version).source
        != again[0]["source_code"]
    )


def test_a_variant_that_does_not_compile_is_dropped(data_dir: Path, monkeypatch) -> None:
    record = {
        "id": "broken",
        "source_code": TRICKY,
        "compiler_version": "0.8.26",
        "contract_name": "Vault",
        "vulnerable_lines": None,
        "labels": [],
    }

    def break_it(source, rng, transforms, version):
        return A.Variant(source.replace("uint256 before", "uint256 before before"), {}, {}, ("rename",))

    monkeypatch.setattr(A.driver, "augment_source", break_it)  # augment_records looks it up there
    stats = AugmentStats()
    cfg = AugmentConfig(enabled=True, copies=1, n_workers=1)
    assert augment_records([record], cfg, data_dir, stats=stats) == []
    assert stats.failed == 1 and stats.failure_rate == 1.0 and "broken~aug0" in stats.errors[0]

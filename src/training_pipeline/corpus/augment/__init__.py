"""Semantics-preserving augmentation of training contracts: source rewrites, recompiled with solc.

Works on any single-file Solidity source (generated or imported) through a small scanner of its own: tokens
keep the 1-based line they came from, so every rewrite carries a line map and ``vulnerable_lines`` follow
their statement. Transforms (``data.augment.transforms``):

- ``rename``: private/internal names declared in the file (locals, parameters, non-public state variables,
  internal/private functions, modifiers, events) get fresh names, consistently across the file. A name is
  left alone when it is also public/external, an interface member, a struct field or enum value, a type,
  a builtin, reached through ``.``, used as a named argument, or seen in inline assembly; a file with imports
  or a base contract it does not define is not renamed at all (the unseen code could use any name).
- ``reorder``: functions, modifiers, events and constructors change places inside their contract (state
  variables keep their order: it is the storage layout); a member moves with its doc comment.
- ``comments``: strip comments (SPDX and ``@solidity`` kept) and/or insert neutral ones.
- ``format``: re-indent (2/3/4 spaces or tabs), brace on the same or the next line, blank-line runs,
  ``if (`` versus ``if(``.
- ``idioms``: ``uint``↔``uint256``, ``int``↔``int256``; ``now``↔``block.timestamp`` before 0.7;
  ``sha3``↔``keccak256`` and ``suicide``↔``selfdestruct`` before 0.5; ``x += y``↔``x = x + y`` only for
  side-effect-free operands.

Every variant is compiled again with the record's compiler (the SolcPool cache under ``data_dir/solc_cache``
makes reruns free); a variant that does not compile is dropped and counted, never given its original's
bytecode. Variants keep the group, fold, labels and family of their original, so they never cross splits.
"""

from training_pipeline.corpus.augment.driver import (
    TRANSFORMS,
    AugmentConfig,
    AugmentStats,
    Variant,
    augment_records,
    augment_source,
    line_map,
    remap_lines,
    variant_rng,
)
from training_pipeline.corpus.augment.idioms import compound_assignments, idioms
from training_pipeline.corpus.augment.layout import (
    Style,
    insert_comments,
    random_style,
    reformat,
    reorder,
    strip_comments,
)
from training_pipeline.corpus.augment.names import rename
from training_pipeline.corpus.augment.scope import ContractInfo, Member, Scan, scan
from training_pipeline.utils.solidity import Tok, render, tokenize

__all__ = [
    "TRANSFORMS",
    "AugmentConfig",
    "AugmentStats",
    "ContractInfo",
    "Member",
    "Scan",
    "Style",
    "Tok",
    "Variant",
    "compound_assignments",
    "variant_rng",
    "augment_records",
    "augment_source",
    "idioms",
    "insert_comments",
    "line_map",
    "random_style",
    "reformat",
    "remap_lines",
    "rename",
    "render",
    "reorder",
    "scan",
    "strip_comments",
    "tokenize",
]

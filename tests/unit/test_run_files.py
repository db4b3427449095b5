"""Run-dir files written by several processes at once (DDP ranks share one run dir)."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

from training_pipeline.utils.run import write_json


def _write_many(path: str, rank: int, n: int) -> None:
    for i in range(n):
        write_json(Path(path), {"rank": rank, "i": i})


def test_processes_writing_one_json_file_never_collide(tmp_path: Path) -> None:
    # with one shared temp name, a rank's rename moved the other's temp file away (FileNotFoundError)
    path = tmp_path / "status.json"
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(path), rank, 300)) for rank in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert json.loads(path.read_text())["i"] == 299  # whole JSON from one of them, the last write
    assert list(tmp_path.iterdir()) == [path]  # no temp file left behind

"""Gated retraining (monitoring/retrain.py) on the tiny corpus: a better challenger is promoted, one that
misses the margin is refused with the champion kept, both audited and tagged; the drift trigger, bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import TINY_CORPUS, tiny_overrides

from training_pipeline import taxonomy
from training_pipeline.data.records import read_records, write_records
from training_pipeline.deploy import audit, registry
from training_pipeline.deploy.package import assemble, load_component, open_package
from training_pipeline.monitoring.retrain import main

NAME = "scathat-bytecode_detector"


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _overrides(data_dir: Path, epochs: int) -> list[str]:
    return [*tiny_overrides(data_dir), f"trainer.max_epochs={epochs}", "~callbacks.rich_progress_bar"]


def _weak_copy(package: Path, out_dir: Path) -> Path:
    """The same model with thresholds above 1: it flags nothing, so its F1 is 0 for every class."""
    pkg = open_package(package)
    module, featurizer = load_component(pkg.path / "model")
    module.thresholds.fill_(2.0)
    meta = {**pkg.meta, "created_at": "weak copy for a test"}
    return assemble(meta, {"model": (module, featurizer)}, out_dir, archive=False).path


def _new_data(eval_set: Path, path: Path) -> Path:
    """2 records repeating an id, 2 repeating a contract (new id, same source), 6 new (bytecode only)."""
    records = read_records(eval_set)
    assert len(records) >= 10
    rows = [dict(r) for r in records[:2]]
    rows += [{**r, "id": f"copy-{r['id']}", "group": None} for r in records[2:4]]
    rows += [
        {
            **r,
            "id": f"new-{k}",
            "source_code": None,
            "group": None,
            "bytecode": r["bytecode"] + "00" * (k + 1),
        }
        for k, r in enumerate(records[4:10])
    ]
    return write_records(rows, path)


def _entries(action: str) -> list[dict]:
    return [e for e in audit.read() if e["action"] == action]


def test_retrain_promotes_a_better_challenger_and_refuses_one_below_the_margin(tmp_path, data_dir, capsys):
    out = tmp_path / "retrain"
    base = ["--models", "bytecode_detector", "--output-dir", str(out), "--increment-version"]
    first = [*base, "--config-overrides", *_overrides(data_dir, 1)]

    # 1. no champion yet: the challenger becomes the first one and the evaluation set is frozen
    code, printed, _ = _run(capsys, *first)
    assert code == 0, printed
    (run1,) = [d for d in out.iterdir() if d.name != "eval_sets"]
    d1 = json.loads((run1 / "decision.json").read_text())
    assert d1["decision"] == "promoted" and d1["champion"] is None and "no champion yet" in d1["reason"]
    assert d1["eval_set"]["frozen_now"] and Path(d1["eval_set"]["path"]).is_file()
    first_version = d1["registered_version"]

    # a deliberately weak champion (flags nothing) replaces it
    weak = _weak_copy(Path(d1["challenger"]["package"]), tmp_path / "weak")
    weak_version = registry.register(weak, reason="test: weak champion")
    registry.promote(NAME, weak_version, "champion", reason="test")

    # 2. new data (deduped) and a challenger that beats the weak champion: promoted, audited, tagged
    new = _new_data(Path(d1["eval_set"]["path"]), tmp_path / "new.jsonl")
    code, printed, _ = _run(
        capsys, *base, "--new-data", str(new), "--config-overrides", *_overrides(data_dir, 2)
    )
    assert code == 0, printed
    d2 = json.loads(next(p for p in out.glob("*/decision.json") if p.parent != run1).read_text())
    assert d2["champion"]["version"] == weak_version and d2["champion"]["scores"]["value"] == 0.0
    assert d2["challenger"]["scores"]["value"] >= 0.01, d2["challenger"]["scores"]
    assert d2["decision"] == "promoted", d2["reason"]
    assert d2["eval_set"]["sha256"] == d1["eval_set"]["sha256"] and not d2["eval_set"]["frozen_now"]
    added = d2["added"]
    assert (added["read"], added["duplicate_ids"], added["duplicate_contracts"], added["kept"]) == (
        10,
        2,
        2,
        6,
    )
    assert added["total"] == 6 and sum(added["per_split"].values()) == 6
    assert "new data: 10 records read, 6 kept (2 repeated ids, 2 clones dropped)" in printed
    assert added["data_version"] != added["base_version"] == d1["data_version"]
    assert "champion" in printed and "f1_macro" in printed and "decision: promoted" in printed
    champion = registry.show(NAME, alias="champion")
    assert champion["version"] == d2["registered_version"] not in (first_version, weak_version)
    assert champion["tags"]["retrain.decision"] == "promoted"
    assert champion["tags"]["retrain.before"] == "0" and float(champion["tags"]["retrain.after"]) > 0
    last = _entries("retrain")[-1]
    assert last["details"]["decision"] == "promoted" and last["version"] == d2["registered_version"]
    assert last["details"]["before"] == 0.0 and last["reason"] == d2["reason"]

    # 3. the first request again (resumes: no training) with an impossible margin: refused, champion kept
    code, printed, _ = _run(capsys, *first, "--margin", "1.0")
    assert code == 0, printed
    assert "challenger: reused" in printed
    d3 = json.loads((run1 / "decision.json").read_text())
    assert d3["decision"] == "refused" and not d3["passed"]
    assert "< margin 1" in d3["reason"], d3["reason"]
    assert d3["registered_version"] == first_version and d3["alias"] == "challenger"
    assert registry.show(NAME, alias="champion")["version"] == d2["registered_version"]
    tags = registry.show(NAME, version=first_version)["tags"]
    assert tags["retrain.decision"] == "refused" and tags["retrain.reason"] == d3["reason"]
    last = _entries("retrain")[-1]
    assert last["details"]["decision"] == "refused" and "< margin 1" in last["reason"]
    assert audit.verify()[0]


def test_drift_trigger_without_an_alert_does_nothing(tmp_path, capsys):
    monitoring = tmp_path / "monitoring"
    monitoring.mkdir()
    (monitoring / "latest.json").write_text(json.dumps({"status": "warning"}))
    before = len(_entries("retrain"))
    code, printed, err = _run(
        capsys,
        "--trigger",
        "drift",
        "--monitoring-dir",
        str(monitoring),
        "--output-dir",
        str(tmp_path / "out"),
    )
    assert code == 0 and err == ""
    assert printed.strip().splitlines() == [
        f"retrain: nothing to do: the latest drift report {monitoring / 'latest.json'} has status 'warning', "
        "not alert (--trigger drift)"
    ]
    assert not (tmp_path / "out").exists() and len(_entries("retrain")) == before


def test_missing_new_data_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "missing.jsonl"
    code, printed, err = _run(capsys, "--new-data", str(missing), "--output-dir", str(tmp_path / "out"))
    assert code == 2 and printed == ""
    assert err.strip().splitlines() == [f"error: {missing}: no such file (--new-data)"]
    assert not (tmp_path / "out").exists()


def test_bad_flag_is_one_error_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--models", "everything"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: argument --models: invalid choice")


BEHAVIOR_NAME = "scathat-behavior_model"


def _behavior_overrides(data_dir: Path, *extra: str) -> list[str]:
    """A tiny behavior model (test_pipeline's MODEL_OVERRIDES) on the tiny corpus's simulated histories."""
    return [
        f"paths.data_dir={data_dir}",
        f"data.corpus.n_contracts={TINY_CORPUS}",
        "data.batch_size=8",
        "data.max_length=32",
        "model.d_model=8",
        "model.hidden=8",
        "trainer.max_epochs=1",
        "~callbacks.rich_progress_bar",
        *extra,
    ]


def test_behavior_model_retrain_freezes_histories_promotes_then_refuses_below_the_margin(
    tmp_path, data_dir, capsys
):
    out = tmp_path / "retrain"
    base = ["--models", "behavior_model", "--output-dir", str(out), "--increment-version"]

    # 1. no champion yet: the test histories are frozen and the first challenger becomes the champion
    code, printed, _ = _run(capsys, *base, "--config-overrides", *_behavior_overrides(data_dir))
    assert code == 0, printed
    (run1,) = [d for d in out.iterdir() if d.name != "eval_sets"]
    d1 = json.loads((run1 / "decision.json").read_text())
    assert d1["decision"] == "promoted" and d1["champion"] is None and "no champion yet" in d1["reason"]
    frozen = Path(d1["eval_set"]["path"])
    assert d1["eval_set"]["frozen_now"] and frozen.parent == out / "eval_sets"
    assert frozen.name == d1["data_version"].replace(":", "-") + ".jsonl"
    assert d1["eval_set"]["sha256"] == hashlib.sha256(frozen.read_bytes()).hexdigest()
    histories = [json.loads(line) for line in frozen.read_text().splitlines()]
    assert len(histories) == d1["eval_set"]["n_records"] == d1["eval_set"]["n_used"] > 0
    assert all(h["label"] in taxonomy.ANOMALY_TYPES and len(h["method"]) > 0 for h in histories)
    scores = d1["challenger"]["scores"]
    present = {h["label"] for h in histories}
    assert set(scores["per_class_f1"]) == present and scores["n_records"] == len(histories)
    assert 0.0 <= scores["f1_macro"] <= 1.0 and scores["value"] == scores["f1_macro"]
    assert scores["f1_macro"] == pytest.approx(sum(scores["per_class_f1"].values()) / len(present), abs=1e-5)
    assert "f1/" in printed and f"({len(histories)} histories)" in printed
    assert registry.show(BEHAVIOR_NAME, alias="champion")["version"] == d1["registered_version"]
    last = _entries("retrain")[-1]
    assert last["model"] == BEHAVIOR_NAME and last["details"]["decision"] == "promoted"
    assert last["details"]["eval_set_sha256"] == d1["eval_set"]["sha256"]

    # 2. another challenger (another seed) with an impossible margin: refused, the champion kept; the frozen
    #    set is reused and the champion scores on it as it did when it was the challenger
    code, printed, _ = _run(
        capsys, *base, "--margin", "1.0", "--config-overrides", *_behavior_overrides(data_dir, "seed=7")
    )
    assert code == 0, printed
    d2 = json.loads(next(p for p in out.glob("*/decision.json") if p.parent != run1).read_text())
    assert d2["decision"] == "refused" and not d2["passed"] and "< margin 1" in d2["reason"], d2["reason"]
    assert d2["eval_set"]["sha256"] == d1["eval_set"]["sha256"] and not d2["eval_set"]["frozen_now"]
    assert d2["champion"]["version"] == d1["registered_version"]
    assert d2["champion"]["scores"] == d1["challenger"]["scores"]
    assert d2["alias"] == "challenger" and d2["registered_version"] != d1["registered_version"]
    assert registry.show(BEHAVIOR_NAME, alias="champion")["version"] == d1["registered_version"]
    tags = registry.show(BEHAVIOR_NAME, version=d2["registered_version"])["tags"]
    assert (
        tags["retrain.decision"] == "refused" and tags["retrain.eval_set_sha256"] == d1["eval_set"]["sha256"]
    )
    last = _entries("retrain")[-1]
    assert last["model"] == BEHAVIOR_NAME and last["details"]["decision"] == "refused"
    assert "< margin 1" in last["reason"] and audit.verify()[0]


def test_behavior_model_new_data_is_one_error_line(tmp_path, capsys):
    csv = tmp_path / "txs.csv"
    csv.write_text("hash,from,to,value\n")
    args = ["--models", "behavior_model", "--new-data", str(csv), "--output-dir", str(tmp_path / "out")]
    code, printed, err = _run(capsys, *args)
    assert code == 2 and printed == ""
    (line,) = err.strip().splitlines()
    assert line.startswith("error: --new-data: behavior_model does not merge") and "data=behavior_csv" in line
    assert not (tmp_path / "out").exists()


def test_behavior_model_missing_explorer_csv_is_one_error_line(tmp_path, capsys):
    missing = tmp_path / "txs.csv"
    overrides = ["data=behavior_csv", f"data.path={missing}", f"data.labels_path={tmp_path / 'labels.csv'}"]
    args = ["--models", "behavior_model", "--output-dir", str(tmp_path / "out"), "--config-overrides"]
    code, printed, err = _run(capsys, *args, *overrides)
    assert code == 2 and printed == ""
    assert err.strip().splitlines() == [f"error: {missing}: no such file or folder (data.*path)"]
    assert not (tmp_path / "out").exists()

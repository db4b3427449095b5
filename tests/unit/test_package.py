"""Model packages: what goes in rebuilds the same model, one changed byte anywhere is refused with the file
named, nothing in a package or a checkpoint is unpickled, and archives extract only inside their target."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import tarfile
from pathlib import Path

import pytest
import torch
from conftest import tiny_detector

from training_pipeline.deploy.package import (
    MANIFEST,
    PackageError,
    archive_package,
    assemble,
    load_component,
    open_package,
    verify_package,
    write_manifest,
)
from training_pipeline.errors import DataError
from training_pipeline.models.bytecode_detector import BytecodeDetector
from training_pipeline.models.checkpoint import load_checkpoint
from training_pipeline.scan import Scanner, read_inputs
from training_pipeline.scan.models import BaseView
from training_pipeline.utils.checkpoints import REFUSED

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
HEXES = [str(p) for p in sorted((FIXTURES / "evm").glob("*.hex"))[:3]]
FEATURIZER = {"batch_size": 2, "max_length": 512}


def tuned_detector() -> BytecodeDetector:
    model = tiny_detector()
    model.thresholds.fill_(0.37)  # a tuned threshold must survive packaging
    return model


@pytest.fixture
def package(tmp_path: Path):
    meta = {"name": "scathat-bytecode_detector", "kind": "model", "model": "bytecode_detector"}
    return assemble(meta, {"model": (tuned_detector(), FEATURIZER)}, tmp_path / "packages")


def _copy(pkg, tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    shutil.copytree(pkg.path, target)
    return target


class Marker:
    """A pickle that, when loaded, would create a file: proof that nothing was unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_package_rebuilds_the_same_model_and_scan(package, tmp_path: Path) -> None:
    module, featurizer = load_component(package.path / "model")
    assert featurizer == FEATURIZER and torch.allclose(module.thresholds, torch.full((9,), 0.37))
    items = read_inputs(HEXES)
    direct = Scanner([BaseView.of(tuned_detector(), FEATURIZER)]).scan(items)
    scanner = Scanner.from_model(str(package.path))
    assert [r["vulnerabilities"] for r in scanner.scan(items)] == [r["vulnerabilities"] for r in direct]
    assert scanner.models["package_id"] == package.id and scanner.models["kind"] == "package"
    # the id is the manifest's sha256 and names the directory
    assert package.path.name == f"scathat-bytecode_detector-{package.id[:12]}"
    again = open_package(archive_package(package))  # the .tar.gz holds the same package
    assert again.id == package.id and again.path != package.path
    spec = json.loads((package.path / "model" / "model.json").read_text())
    assert spec["summary"]["thresholds"] == pytest.approx([0.37] * 9)  # readable without the weights


def test_one_flipped_byte_in_any_file_is_refused_naming_it(package, tmp_path: Path) -> None:
    files = json.loads((package.path / MANIFEST).read_text())["files"]
    assert {"package.json", "model/model.json", "model/weights.safetensors", "model/featurizer.json"} <= set(
        files
    )
    for k, rel in enumerate(files):
        copy = _copy(package, tmp_path, f"flip{k}")
        data = bytearray((copy / rel).read_bytes())
        data[len(data) // 2] ^= 0x01
        (copy / rel).write_bytes(bytes(data))
        with pytest.raises(PackageError, match=f"{copy / rel}: sha256 differs"):
            verify_package(copy)
        with pytest.raises(PackageError, match="sha256 differs"):
            Scanner.from_model(str(copy))
    copy = _copy(package, tmp_path, "extra")
    (copy / "model" / "extra.py").write_text("print('hi')\n")
    with pytest.raises(PackageError, match="extra.py: file not in the package manifest"):
        verify_package(copy)
    copy = _copy(package, tmp_path, "missing")
    (copy / "model" / "featurizer.json").unlink()
    with pytest.raises(PackageError, match="featurizer.json: listed in the package manifest but missing"):
        verify_package(copy)
    manifest_flip = _copy(package, tmp_path, "manifest")
    (manifest_flip / MANIFEST).write_text(
        (manifest_flip / MANIFEST).read_text().replace("scathat-package", "x")
    )
    with pytest.raises(PackageError, match="MANIFEST.json: not a scathat-package/1 manifest"):
        verify_package(manifest_flip)


def test_a_pickle_in_place_of_the_weights_is_refused_and_never_runs(package, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    copy = _copy(package, tmp_path, "pickled")
    weights = copy / "model" / "weights.safetensors"
    torch.save({"state_dict": {"x": Marker(marker)}}, weights)  # a pickle, with a rehashed manifest
    write_manifest(copy)
    with pytest.raises(PackageError, match=f"{weights}: not a safetensors file"):
        Scanner.from_model(str(copy))
    weights.write_bytes(pickle.dumps(Marker(marker)))
    write_manifest(copy)
    with pytest.raises(PackageError, match="not a safetensors file"):
        load_component(verify_package(copy).path / "model")
    assert not marker.exists()


def test_model_json_cannot_name_code_to_run(package, tmp_path: Path) -> None:
    copy = _copy(package, tmp_path, "cls")
    spec_path = copy / "model" / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["class"] = "os.system"
    spec_path.write_text(json.dumps(spec))
    write_manifest(copy)
    with pytest.raises(PackageError, match="'os.system' is not a packaged model class"):
        load_component(verify_package(copy).path / "model")


def test_an_archive_cannot_write_outside_its_target(tmp_path: Path) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(PackageError, match="not a package archive"):
        open_package(evil)
    assert not (tmp_path / "escaped.txt").exists()


def test_a_checkpoint_that_asks_for_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Marker(marker)}}, evil)
    with pytest.raises(DataError, match=REFUSED.split("(")[0].strip()):
        load_checkpoint(BytecodeDetector, evil)
    from training_pipeline.scan.cli import main

    assert main([HEXES[0], "--checkpoint", str(evil)]) == 2
    assert not marker.exists()

"""Notebooks run top to bottom on the tiny corpus, so they never rot (kernel: this interpreter, in tmp)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import ROOT, TINY_CORPUS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

KERNEL = "training-pipeline-test"


@pytest.fixture
def kernel_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A kernel running this interpreter, from a kernelspec in tmp_path; nothing written to the home dir."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    spec_dir = tmp_path / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "training-pipeline (test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    for var, sub in [
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "jupyter_data"),
        ("JUPYTER_CONFIG_DIR", "jupyter_config"),
        ("IPYTHONDIR", "ipython"),
        ("MPLCONFIGDIR", "mpl"),
    ]:
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    ksm = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")])
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=ksm)


def _execute(path: Path, km, timeout: int = 300):
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, km=km, timeout=timeout, kernel_name=KERNEL, resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    return nb


def _outputs(nb) -> tuple[str, int]:
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out["text"])
            images += "image/png" in out.get("data", {})
    return "".join(text), images


def test_data_exploration_notebook_runs_on_the_tiny_corpus(
    kernel_manager, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_EXPLORATION_DATA_DIR", str(data_dir))
    monkeypatch.setenv("DATA_EXPLORATION_OVERRIDES", f"data.corpus.n_contracts={TINY_CORPUS}")
    nb = _execute(ROOT / "notebooks" / "data_exploration.ipynb", kernel_manager)
    text, images = _outputs(nb)
    assert f"{TINY_CORPUS} records in" in text
    assert "split check: OK, no split shares a group" in text
    assert "clone groups across sources: 0" in text  # one source: no group spans two
    assert images >= 5  # counts, lengths, co-occurrence heatmap, per-split labels and groups, per source

"""Every notebook in notebooks/ runs top to bottom without an error, against the graft under test.

The kernel sees the same graft as these tests (PYTHONPATH of the kernel = the directory that holds
the imported graft package, e.g. build/python), runs with matplotlib's Agg backend and writes its
figures into a temporary directory. The committed notebooks carry no outputs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

import graft

nbformat = pytest.importorskip("nbformat", reason="nbformat is in requirements-dev.txt")
nbclient = pytest.importorskip("nbclient", reason="nbclient is in requirements-dev.txt")
pytest.importorskip("ipykernel", reason="ipykernel is in requirements-dev.txt")
pytest.importorskip("matplotlib", reason="matplotlib is in requirements-dev.txt")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks_and_they_carry_no_outputs() -> None:
    assert [p.name for p in NOTEBOOKS][:3] == ["01_hooks_and_caches.ipynb", "02_crown_scan.ipynb",
                                               "03_rome_memit.ipynb"]
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, f"{path.name} has outputs: clear them"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Not resolved: a build tree links the .py files, and the extension sits beside the links.
    package_root = Path(graft.__file__).parent.parent
    pythonpath = os.pathsep.join([str(package_root), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    # The kernel is a subprocess: it inherits this environment.
    monkeypatch.setenv("PYTHONPATH", pythonpath)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("GRAFT_REPO", str(REPO))
    monkeypatch.setenv("GRAFT_FIGURES", str(tmp_path / "figures"))
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    start = time.monotonic()
    client.execute()  # raises CellExecutionError naming the cell on any error
    print(f"{path.name}: {time.monotonic() - start:.1f} s")
    # The notebook drew its figures.
    assert list((tmp_path / "figures").glob("*.png"))

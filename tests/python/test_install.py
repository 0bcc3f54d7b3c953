"""`pip install --no-build-isolation --no-deps --target DIR .` builds and installs an importable graft.

A full compile of the C++ core takes many minutes on a small machine, so the install reuses the
CMake build directory the tests run from (GRAFT_CMAKE_BUILD_DIR, see setup.py): CMake then has
nothing or little to rebuild, and what is tested is the packaging — setup.py driving CMake, the
extension, the pure-Python files, the stub, the CLI and its console script landing in the target.
Set GRAFT_TEST_INSTALL_BUILD_DIR to build somewhere else (an empty directory: a full compile).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import graft

REPO = Path(__file__).resolve().parents[2]
MODELS = Path(os.environ.get("GRAFT_MODELS_DIR", REPO / "models"))


def build_dir_of_this_graft() -> Path:
    """The CMake build directory whose python/graft holds the graft under test."""
    configured = os.environ.get("GRAFT_TEST_INSTALL_BUILD_DIR")
    if configured:
        return Path(configured)
    build = Path(graft._graft.__file__).resolve().parents[2]
    if not (build / "CMakeCache.txt").exists():
        pytest.skip(f"graft under test ({graft._graft.__file__}) is not in a CMake build tree")
    return build


@pytest.mark.slow
def test_pip_install_into_a_target_directory(tmp_path: Path) -> None:
    target = tmp_path / "site"
    env = dict(os.environ, GRAFT_CMAKE_BUILD_DIR=str(build_dir_of_this_graft()), PIP_NO_INDEX="1",
               CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", "2"))
    env.pop("PYTHONPATH", None)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--no-cache-dir", "--quiet",
         "--target", str(target), str(REPO)],
        env=env, capture_output=True, text=True, timeout=1800)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]

    package = target / "graft"
    assert sorted(p.name for p in package.glob("_graft*.so"))
    for name in ("__init__.py", "model.py", "edits.py", "__main__.py", "_graft.pyi", "py.typed"):
        assert (package / name).is_file(), name
    assert os.access(package / "bin" / "graft", os.X_OK)

    # Import the installed copy (not the build tree's) in a fresh interpreter and run the model.
    check = ("import graft, sys; assert graft.__file__.startswith(sys.argv[1]), graft.__file__; "
             "m = graft.load(sys.argv[2]); print(m.generate('The capital of Quianeimtum is', max_new_tokens=3))")
    env = dict(os.environ, PYTHONPATH=str(target))
    run = subprocess.run([sys.executable, "-c", check, str(target), str(MODELS / "gemma4_facts")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.strip() == "The capital of Quianeimtum is Gimfous"

    # The console script runs the bundled CLI.
    cli = subprocess.run([str(target / "bin" / "graft"), "hooks", str(MODELS / "gemma4_facts")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert cli.returncode == 0, cli.stderr[-4000:]
    assert "blocks.0.mlp.hook_post" in cli.stdout

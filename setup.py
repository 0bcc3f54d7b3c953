"""Builds graft._graft with the project's CMake build (pyproject.toml holds the metadata).

``pip install --no-build-isolation .`` runs this with the environment's Python and torch:

- ``GRAFT_CMAKE_BUILD_DIR``: an existing or new CMake build directory to build in (for example
  ``build``, the one scripts/build.sh makes), so that an install after a normal build compiles
  nothing. Default: ``build-pip/cmake`` in the source tree, kept between installs; ccache (found by
  CMakeLists.txt) makes a fresh one cheaper.
- ``CMAKE_BUILD_PARALLEL_LEVEL``: compile jobs (CMake's own variable).
- ``GRAFT_CMAKE_ARGS``: extra arguments for the first configure of a new build directory.

Two targets are built: ``graft_python`` (the extension, copied into the package) and ``graft_cli``
(copied to ``graft/bin/graft``, run by the ``graft`` console script).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE_DIR = Path(__file__).resolve().parent


def _torch() -> tuple[str, Path]:
    """Version and package directory of the torch this build compiles against (never installed here)."""
    try:
        import torch
    except ImportError as error:  # pragma: no cover - a message for the user, not a code path we test
        raise SystemExit("graft: building needs torch importable in this Python; install torch first and use "
                         "`pip install --no-build-isolation .` so the build sees it") from error
    return torch.__version__, Path(torch.__file__).resolve().parent


class CMakeExtension(Extension):
    """An extension that CMake builds (no sources for setuptools to compile)."""

    def __init__(self, name: str, target: str) -> None:
        super().__init__(name, sources=[])
        self.target = target


class CMakeBuild(build_ext):
    """Configures (once) and builds the CMake targets, then copies their outputs into the package."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        build_dir = Path(os.environ.get("GRAFT_CMAKE_BUILD_DIR") or Path(self.build_temp) / "cmake")
        if not build_dir.is_absolute():
            build_dir = SOURCE_DIR / build_dir
        self._configure(build_dir)
        self._run(["cmake", "--build", str(build_dir), "--target", ext.target, "graft_cli"])

        built = sorted((build_dir / "python" / "graft").glob("_graft*.so"))
        if not built:
            raise SystemExit(f"graft: the CMake build in {build_dir} produced no python/graft/_graft*.so")
        destination = Path(self.get_ext_fullpath(ext.name))
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(built[-1], destination)

        cli = build_dir / "graft"
        package_dir = destination.parent
        (package_dir / "bin").mkdir(exist_ok=True)
        shutil.copy2(cli, package_dir / "bin" / "graft")

    def _configure(self, build_dir: Path) -> None:
        _, torch_dir = _torch()
        cache = build_dir / "CMakeCache.txt"
        if cache.exists():
            # Reusing a build directory: it must have been configured against this very torch.
            found = re.search(r"^GRAFT_TORCH_DIR:PATH=(.*)$", cache.read_text(), re.MULTILINE)
            if found and Path(found.group(1)).resolve() != torch_dir:
                raise SystemExit(f"graft: {build_dir} was configured for the torch in {found.group(1)}, "
                                 f"not this Python's ({torch_dir}); use another GRAFT_CMAKE_BUILD_DIR")
            return
        args = ["cmake", "-S", str(SOURCE_DIR), "-B", str(build_dir), f"-DPython3_EXECUTABLE={sys.executable}",
                "-DCMAKE_BUILD_TYPE=Release", "-DGRAFT_BUILD_TESTS=OFF"]
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        args += shlex.split(os.environ.get("GRAFT_CMAKE_ARGS", ""))
        self._run(args)

    def _run(self, command: list[str]) -> None:
        print("graft:", " ".join(shlex.quote(c) for c in command), flush=True)
        subprocess.run(command, check=True, cwd=SOURCE_DIR)


TORCH_VERSION, _ = _torch()
(SOURCE_DIR / "build-pip").mkdir(exist_ok=True)

setup(
    ext_modules=[CMakeExtension("graft._graft", target="graft_python")],
    cmdclass={"build_ext": CMakeBuild},
    # The extension links this torch's C++ ABI: any other version would fail at import.
    install_requires=[f"torch=={TORCH_VERSION}"],
    # Keep setuptools' own files out of build/, the default CMake build directory.
    options={"build": {"build_base": "build-pip"}, "egg_info": {"egg_base": "build-pip"}},
)

"""setuptools glue that builds a torch CUDA extension with CMake + Ninja (used by both setup.py files)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import Extension
from setuptools.command.build_ext import build_ext

from .cuda_archs import (BuildConfigError, check_torch_matches, cmake_architectures, find_cuda_home,
                         nvcc_version, select_archs)


def _tool(package: str, attr: str, name: str) -> str:
    """The cmake/ninja of the `cmake`/`ninja` Python packages (build requirements), else PATH's."""
    try:
        return str(Path(getattr(__import__(package), attr)) / name)
    except (ImportError, AttributeError):
        found = shutil.which(name)
        if found is None:
            sys.exit(f"error: {name} not found: pip install cmake ninja")
        return found


class CMakeExtension(Extension):
    def __init__(self, name: str, source_dir: str | Path) -> None:
        super().__init__(name, sources=[])
        self.source_dir = str(Path(source_dir).resolve())


class CMakeBuild(build_ext):
    """Configures and builds each CMakeExtension; the arch policy lives in cuda_archs.py."""

    def build_extension(self, ext: Extension) -> None:
        if not isinstance(ext, CMakeExtension):
            return super().build_extension(ext)
        try:
            import torch
        except ImportError:
            sys.exit("error: torch must be installed before building (pip install --no-build-isolation ...): "
                     "install torch==2.11.0 first, from the cu126 index for V100")
        try:
            cuda_home = find_cuda_home()
            cuda = nvcc_version(cuda_home)
            check_torch_matches(torch.version.cuda, cuda)
            archs = select_archs(os.environ.get("TORCH_CUDA_ARCH_LIST"), cuda)
        except BuildConfigError as e:
            sys.exit(f"error: {e}")
        print(f"[{ext.name}] CUDA {cuda[0]}.{cuda[1]} at {cuda_home}; archs {archs}", flush=True)

        out_dir = Path(self.get_ext_fullpath(ext.name)).parent.resolve()
        build_dir = Path(self.build_temp).resolve() / ext.name
        build_dir.mkdir(parents=True, exist_ok=True)
        cmake = _tool("cmake", "CMAKE_BIN_DIR", "cmake")
        # nvcc's host compiler must be the C++ compiler: a different one (seen: CUDAHOSTCXX pointing at a
        # custom GCC) drags its own libstdc++ into the link.
        cxx = os.environ.get("CXX") or shutil.which("c++") or shutil.which("g++") or "c++"
        cuda_host_cxx = os.environ.get("CUDAHOSTCXX") or cxx
        configure = [
            cmake, ext.source_dir, "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_tool('ninja', 'BIN_DIR', 'ninja')}",
            f"-DCMAKE_BUILD_TYPE={os.environ.get('CMAKE_BUILD_TYPE', 'Release')}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_CUDA_COMPILER={cuda_home / 'bin' / 'nvcc'}",
            f"-DCMAKE_CXX_COMPILER={cxx}",
            f"-DCMAKE_CUDA_HOST_COMPILER={cuda_host_cxx}",
            f"-DCUDAToolkit_ROOT={cuda_home}",
            f"-DSM7X_CUDA_ARCHS={cmake_architectures(archs)}",
        ]
        jobs = os.environ.get("MAX_JOBS") or str(os.cpu_count() or 1)
        env = {**os.environ, "CUDA_HOME": str(cuda_home)}
        subprocess.run(configure, cwd=build_dir, env=env, check=True)
        subprocess.run([cmake, "--build", ".", "-j", jobs], cwd=build_dir, env=env, check=True)
        check_no_private_libstdcxx(Path(self.get_ext_fullpath(ext.name)))


# std::locale::classic(): defined only in libstdc++'s own sources, never instantiated from headers.
_LIBSTDCXX_PROBE = "_ZNSt6locale7classicEv"


def check_no_private_libstdcxx(library: Path) -> None:
    """Fails the build if libstdc++ got linked statically into the extension (seen on the lent H100:
    CUDAHOSTCXX pointed at a custom GCC that ships only libstdc++.a). Its private copy of the C++
    locale segfaults the first time an error message formats a number. Skipped without binutils' nm."""
    nm = shutil.which("nm")
    if nm is None:
        return
    symbols = subprocess.run([nm, "--defined-only", str(library)], capture_output=True, text=True).stdout
    if _LIBSTDCXX_PROBE in symbols:
        library.unlink()
        sys.exit(f"error: {library.name} embeds its own copy of libstdc++ (the compiler or nvcc's host "
                 "compiler linked it statically); it would crash when formatting error messages. Build with "
                 "the system compiler: CC=/usr/bin/gcc CXX=/usr/bin/g++ CUDAHOSTCXX=/usr/bin/g++ pip install ...")

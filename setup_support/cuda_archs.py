"""Which GPU architectures a build compiles for: one policy for both wheels.

TORCH_CUDA_ARCH_LIST wins. Without it, a CUDA 12.x toolkit builds 7.0 and 7.5
(V100 and Turing) and a CUDA 13 toolkit builds 7.5 only, because CUDA 13 dropped
sm_70. Development builds for the lent H100 add 9.0 through TORCH_CUDA_ARCH_LIST.
Pure functions, so the policy is tested without a toolkit.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

# Volta needs a CUDA 12.x toolkit (12.6 matches torch 2.11.0+cu126, the last torch with sm_70).
LAST_CUDA_MAJOR_WITH_SM70 = 12
OLDEST_CUDA = (12, 6)


class BuildConfigError(RuntimeError):
    """A build setting that cannot work, with the fix in the message."""


def parse_arch_list(text: str) -> list[int]:
    """'7.0;7.5 9.0+PTX' -> [70, 75, 90] (sorted, unique). '+PTX' is accepted and ignored:
    the highest arch always carries PTX (see cmake_architectures). Arch-specific suffixes ('9.0a',
    '10.0f', set by some CUDA images) build the plain arch: no kernel here uses those features."""
    archs = set()
    for item in re.split(r"[;,\s]+", text.strip()):
        if not item:
            continue
        match = re.fullmatch(r"(\d+)\.(\d)[af]?(?:\+PTX)?", item, flags=re.IGNORECASE)
        if not match:
            raise BuildConfigError(
                f"TORCH_CUDA_ARCH_LIST entry {item!r} is not understood: use values like '7.0;7.5' "
                "(or '7.5;9.0' for a development build on an H100)"
            )
        archs.add(int(match.group(1)) * 10 + int(match.group(2)))
    if not archs:
        raise BuildConfigError("TORCH_CUDA_ARCH_LIST is set but empty: unset it or list archs like '7.0;7.5'")
    return sorted(archs)


def select_archs(requested: str | None, cuda_version: tuple[int, int]) -> list[int]:
    """The architectures to compile, as integers (70, 75, 90)."""
    if cuda_version < OLDEST_CUDA:
        raise BuildConfigError(
            f"CUDA toolkit {cuda_version[0]}.{cuda_version[1]} is too old: install CUDA 12.6 or 12.8 "
            "(V100 and Turing) or CUDA 13 (Turing only) and point CUDA_HOME at it"
        )
    if requested:
        archs = parse_arch_list(requested)
    elif cuda_version[0] <= LAST_CUDA_MAJOR_WITH_SM70:
        archs = [70, 75]
    else:
        archs = [75]
    if cuda_version[0] > LAST_CUDA_MAJOR_WITH_SM70 and any(a < 75 for a in archs):
        raise BuildConfigError(
            f"CUDA {cuda_version[0]}.{cuda_version[1]} cannot compile for sm_70 (V100): build with a "
            "CUDA 12.6/12.8 toolkit (CUDA_HOME=/usr/local/cuda-12.8) and torch 2.11.0+cu126, or drop 7.0 "
            "from TORCH_CUDA_ARCH_LIST for a Turing-only build"
        )
    if not any(a >= 70 for a in archs):
        raise BuildConfigError(f"TORCH_CUDA_ARCH_LIST={requested!r} holds no arch >= 7.0: add 7.0 and/or 7.5")
    return archs


def cmake_architectures(archs: list[int]) -> str:
    """CMake CUDA_ARCHITECTURES: machine code for every arch, plus PTX of the highest one so that
    newer GPUs (the H100 used for emulation) can JIT it."""
    return ";".join([f"{a}-real" for a in archs[:-1]] + [str(archs[-1])])


def find_cuda_home(default_home: Path = Path("/usr/local/cuda")) -> Path:
    """The CUDA toolkit to build with: CUDA_HOME, CUDA_PATH, /usr/local/cuda, then the nvcc on PATH
    (last, because some machines put a wrapper script there, outside any toolkit)."""
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            home = Path(os.environ[var])
            if (home / "bin" / "nvcc").exists():
                return home
            raise BuildConfigError(f"{var}={home} has no bin/nvcc: point it at a CUDA toolkit")
    if (default_home / "bin" / "nvcc").exists():
        return default_home
    nvcc = shutil.which("nvcc")
    if nvcc:
        return Path(nvcc).resolve().parent.parent
    raise BuildConfigError(
        "no CUDA compiler (nvcc) found: install a CUDA toolkit (12.6/12.8 for V100, 12.x or 13.x for "
        "Turing) and set CUDA_HOME to it; these wheels are CUDA extensions and have no CPU-only build"
    )


def parse_nvcc_version(text: str) -> tuple[int, int]:
    match = re.search(r"release (\d+)\.(\d+)", text)
    if not match:
        raise BuildConfigError(f"cannot read the CUDA version from nvcc --version:\n{text}")
    return int(match.group(1)), int(match.group(2))


def nvcc_version(cuda_home: Path) -> tuple[int, int]:
    out = subprocess.run([str(cuda_home / "bin" / "nvcc"), "--version"], capture_output=True, text=True,
                         check=True).stdout
    return parse_nvcc_version(out)


def check_torch_matches(torch_cuda: str | None, cuda_version: tuple[int, int]) -> None:
    """Extensions must be built with the CUDA major version torch was built with."""
    if torch_cuda is None:
        raise BuildConfigError("the installed torch is a CPU-only build: install torch==2.11.0 with CUDA "
                               "(cu126 index for V100, default PyPI or cu126 for Turing)")
    major = int(torch_cuda.split(".")[0])
    if major != cuda_version[0]:
        raise BuildConfigError(
            f"torch was built with CUDA {torch_cuda} but nvcc is {cuda_version[0]}.{cuda_version[1]}: use a "
            f"CUDA {major}.x toolkit (CUDA_HOME), or install the torch build that matches the toolkit "
            "(torch==2.11.0 from https://download.pytorch.org/whl/cu126 for CUDA 12)"
        )

#!/usr/bin/env python3
"""Proves that the code that runs on the SM70 path is Volta code.

CUDA 13's nvcc cannot target sm_70, so every kernel translation unit that may run on a V100 (all
.cu files except the Turing-only *_sm75.cu) is compiled to PTX for compute_75 with the local nvcc,
retargeted to sm_70, and assembled by the ptxas of CUDA 12.8 (PyPI: nvidia-cuda-nvcc-cu12, which
ships ptxas only). ptxas rejects every instruction Volta lacks (ldmatrix, cp.async, bf16 mma, ...). Each file's line also
reports what ptxas allots on sm_70 (most registers and shared memory of its kernels, and any
register spills: Volta's allocation can differ from the GPU the kernels are tested on).

Rule this relies on: SM70-path code selects its instructions by arch tag, not by
`#if __CUDA_ARCH__ >= 750` (which this check would see from the sm_75 side and reject).

Usage: tools/check_volta_legality.py [FILE.cu ...]   (default: every SM70-reachable TU of both wheels)
Exit status 0 when every file assembles for sm_70.
"""
from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from setup_support.cuda_archs import find_cuda_home  # noqa: E402

KERNEL_DIRS = [ROOT / "csrc", ROOT / "flash-attention-v100" / "csrc"]
INCLUDE_DIRS = KERNEL_DIRS
# Highest PTX ISA each ptxas release accepts (the retargeted PTX declares it).
PTX_ISA_OF_PTXAS = {(12, 6): "8.5", (12, 8): "8.7", (12, 9): "8.8"}


def sm70_reachable_sources() -> list[Path]:
    return sorted(p for d in KERNEL_DIRS for p in d.rglob("*.cu") if not p.name.endswith("_sm75.cu"))


def missing_toolchain() -> str | None:
    """Why this check cannot run here (no CUDA toolkit, no ptxas 12.8), or None."""
    from setup_support.cuda_archs import BuildConfigError

    try:
        find_cuda_home()
    except BuildConfigError as e:
        return str(e)
    try:
        found = importlib.util.find_spec("nvidia.cuda_nvcc") is not None
    except ModuleNotFoundError:  # no nvidia namespace at all
        found = False
    return None if found else "nvidia-cuda-nvcc-cu12 (ptxas 12.8) is not installed: pip install -e '.[test]'"


def find_ptxas() -> Path:
    try:
        import nvidia.cuda_nvcc
    except ImportError:
        sys.exit("error: ptxas for sm_70 not found: pip install nvidia-cuda-nvcc-cu12==12.8.93")
    for base in nvidia.cuda_nvcc.__path__:
        ptxas = Path(base) / "bin" / "ptxas"
        if ptxas.exists():
            return ptxas
    sys.exit("error: nvidia-cuda-nvcc-cu12 has no bin/ptxas: pip install nvidia-cuda-nvcc-cu12==12.8.93")


def ptxas_version(ptxas: Path) -> tuple[int, int]:
    out = subprocess.run([str(ptxas), "--version"], capture_output=True, text=True, check=True).stdout
    major, minor = re.search(r"release (\d+)\.(\d+)", out).groups()
    return int(major), int(minor)


def retarget_to_sm70(ptx: str, isa: str) -> str:
    ptx, n_target = re.subn(r"^\.target\s+sm_\d+a?", ".target sm_70", ptx, flags=re.MULTILINE)
    ptx, n_version = re.subn(r"^\.version\s+\d+\.\d+", f".version {isa}", ptx, flags=re.MULTILINE)
    if n_target != 1 or n_version != 1:
        raise RuntimeError("unexpected PTX header (no single .version/.target line)")
    return ptx


def compile_ptx(source: Path, nvcc: Path, workdir: Path) -> str:
    """PTX of one translation unit for compute_75 (what both arch paths start from)."""
    ptx_path = workdir / (source.stem + ".ptx")
    includes = [f"-I{d}" for d in INCLUDE_DIRS]
    compile_cmd = [str(nvcc), "-ptx", "-arch=compute_75", "-std=c++17", "--expt-relaxed-constexpr", *includes,
                   "-o", str(ptx_path), str(source)]
    result = subprocess.run(compile_cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"nvcc could not compile it:\n{result.stderr}")
    return ptx_path.read_text()


def assemble_for_sm70(source: Path, nvcc: Path, ptxas: Path, isa: str, workdir: Path) -> tuple[str, str]:
    """(retargeted PTX, ptxas -v output) of one translation unit; RuntimeError says which step refused it."""
    ptx = retarget_to_sm70(compile_ptx(source, nvcc, workdir), isa)
    volta_ptx = workdir / (source.stem + ".sm70.ptx")
    volta_ptx.write_text(ptx)
    result = subprocess.run([str(ptxas), "-v", "-arch=sm_70", "-o", str(workdir / "out.cubin"), str(volta_ptx)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ptxas rejects it for sm_70:\n{result.stderr.strip()}")
    return ptx, result.stdout + result.stderr


def check_file(source: Path, nvcc: Path, ptxas: Path, isa: str, workdir: Path) -> tuple[bool, str]:
    try:
        ptx, verbose = assemble_for_sm70(source, nvcc, ptxas, isa, workdir)
    except RuntimeError as e:
        return False, str(e)
    kernels = len(re.findall(r"^(?:\.visible\s+|\.weak\s+)?\.entry\s", ptx, flags=re.MULTILINE))
    hmma = ptx.count("mma.sync.aligned.m8n8k4")
    return True, f"{kernels} kernels, {hmma} m8n8k4 mma, {resources(verbose)}"


def kernel_resources(ptxas_verbose: str) -> dict[str, tuple[int, int]]:
    """Mangled kernel name -> (registers per thread, static shared memory bytes), from ptxas -v."""
    found = {}
    for block in re.split(r"Compiling entry function ", ptxas_verbose)[1:]:
        name = block.split("'")[1]
        registers = re.search(r"Used (\d+) registers", block)
        smem = re.search(r"(\d+) bytes smem", block)
        found[name] = (int(registers.group(1)) if registers else 0, int(smem.group(1)) if smem else 0)
    return found


def resources(ptxas_verbose: str) -> str:
    """Most registers and shared memory over the file's kernels, and the kernels that spill."""
    registers = [int(n) for n in re.findall(r"Used (\d+) registers", ptxas_verbose)]
    smem = [int(n) for n in re.findall(r"(\d+) bytes smem", ptxas_verbose)]
    spilling = [name for name, stores in re.findall(
        r"Function properties for (\S+)\s+\d+ bytes stack frame, (\d+) bytes spill stores", ptxas_verbose)
        if int(stores)]
    summary = f"<= {max(registers, default=0)} registers, <= {max(smem, default=0)} B smem"
    return summary + (f", spills in {len(spilling)}: {', '.join(spilling[:3])}" if spilling else ", no spills")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", type=Path, help="translation units to check")
    args = parser.parse_args(argv)
    sources = args.sources or sm70_reachable_sources()
    if not sources:
        print("error: no SM70-reachable .cu file found: nothing was proven", file=sys.stderr)
        return 1
    nvcc = find_cuda_home() / "bin" / "nvcc"
    ptxas = find_ptxas()
    version = ptxas_version(ptxas)
    if version not in PTX_ISA_OF_PTXAS:
        sys.exit(f"error: ptxas {version} is not one this check knows: use nvidia-cuda-nvcc-cu12==12.8.93")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            ok, detail = check_file(source.resolve(), nvcc, ptxas, PTX_ISA_OF_PTXAS[version], Path(tmp))
            name = source.resolve().relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
            print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
            failures += not ok
    print(f"Volta legality (ptxas {version[0]}.{version[1]} -arch=sm_70): "
          f"{len(sources) - failures}/{len(sources)} translation units pass")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

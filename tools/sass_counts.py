#!/usr/bin/env python3
"""Static instruction counts, by opcode, of the kernels of one translation unit for each GPU arch asked.

What a path's machine code issues where no GPU of that kind is at hand: the sm70 AWQ kernel as a V100
runs it (sm_70: compute_75 PTX retargeted and assembled by ptxas 12.8, as tools/check_volta_legality.py
does) against the same source on the lent Hopper GPU (sm_90, the local nvcc), where `mma.m8n8k4` is not
an instruction and becomes a call into a software routine. Counts are static: each instruction once,
loops not multiplied. Routines the kernels call are listed with their own counts.

  tools/sass_counts.py csrc/quantization/awq/awq_gemm_sm70.cu --arch sm_70 sm_90 \\
      --kernel 'fused_gemm_kernel<sm7x::Sm70, 1, 8, 1, false>'
"""
from __future__ import annotations

import argparse
import collections
import importlib.util
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT))
from check_volta_legality import (INCLUDE_DIRS, PTX_ISA_OF_PTXAS, compile_ptx, find_ptxas,  # noqa: E402
                                  ptxas_version, retarget_to_sm70)
from setup_support.cuda_archs import find_cuda_home  # noqa: E402

SECTION = re.compile(r"^\s*\.text\.(\S+):\s*$")
ROUTINE = re.compile(r"^(\$\S+):\s*$")  # a called routine's label inside a kernel's section
INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")
CALL_TARGET = re.compile(r"CALL\S*\s+`\((\S+?)\)")


@dataclass
class Code:
    """One kernel's instructions (its own body, routines apart) and the routines it calls."""
    opcodes: collections.Counter = field(default_factory=collections.Counter)
    calls: collections.Counter = field(default_factory=collections.Counter)  # routine -> call sites

    @property
    def total(self) -> int:
        return sum(self.opcodes.values())


def parse_sass(text: str) -> tuple[dict[str, Code], dict[str, Code]]:
    """nvdisasm output -> (kernels by mangled name, routines by label). A routine's body is counted once,
    under the routine, not in the kernel whose section holds it."""
    kernels: dict[str, Code] = {}
    routines: dict[str, Code] = {}
    current: Code | None = None
    for line in text.splitlines():
        if m := SECTION.match(line):
            current = kernels.setdefault(m.group(1), Code())
        elif m := ROUTINE.match(line.strip()):
            current = routines.setdefault(m.group(1), Code())
        elif current is not None and (m := INSTRUCTION.match(line)):
            current.opcodes[m.group(1)] += 1
            if t := CALL_TARGET.search(line):
                current.calls[t.group(1)] += 1
    return kernels, routines


def demangle(names: list[str]) -> dict[str, str]:
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def find_nvdisasm() -> Path | None:
    """nvdisasm of the local toolkit, else the one Triton ships (vLLM installs Triton); None if neither."""
    candidates = [find_cuda_home() / "bin" / "nvdisasm"]
    spec = importlib.util.find_spec("triton")
    if spec and spec.origin:
        candidates.append(Path(spec.origin).parent / "backends" / "nvidia" / "bin" / "nvdisasm")
    return next((path for path in candidates if path.exists()), None)


def cubin(source: Path, arch: str, workdir: Path) -> Path:
    """The translation unit assembled for arch: sm_70 through ptxas 12.8 (CUDA 13 cannot target it), other
    archs through the local nvcc."""
    nvcc = find_cuda_home() / "bin" / "nvcc"
    out = workdir / f"{source.stem}.{arch}.cubin"
    if arch == "sm_70":
        ptxas = find_ptxas()
        isa = PTX_ISA_OF_PTXAS.get(ptxas_version(ptxas))
        if isa is None:
            sys.exit(f"error: ptxas {ptxas_version(ptxas)} is not one this tool knows: "
                     "use nvidia-cuda-nvcc-cu12==12.8.93")
        ptx = workdir / f"{source.stem}.sm70.ptx"
        ptx.write_text(retarget_to_sm70(compile_ptx(source, nvcc, workdir), isa))
        command = [str(ptxas), "-O3", "-arch=sm_70", "-o", str(out), str(ptx)]
    else:
        command = [str(nvcc), "-cubin", f"-arch={arch}", "-O3", "-std=c++17", "--expt-relaxed-constexpr",
                   *[f"-I{d}" for d in INCLUDE_DIRS], "-o", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: {source.name} does not build for {arch}:\n{result.stderr.strip()}")
    return out


def sass(binary: Path) -> str:
    nvdisasm = find_nvdisasm()
    if nvdisasm is None:
        sys.exit("error: nvdisasm not found (neither the CUDA toolkit's nor Triton's): pip install triton")
    result = subprocess.run([str(nvdisasm), "-c", str(binary)], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"error: nvdisasm failed on {binary.name}:\n{result.stderr.strip()}")
    return result.stdout


def report(arch: str, kernels: dict[str, Code], routines: dict[str, Code], pattern: str, top: int) -> list[str]:
    names = demangle(list(kernels))
    chosen = [k for k in kernels if re.search(pattern, names[k])]
    lines = []
    for kernel in chosen:
        code = kernels[kernel]
        common = ", ".join(f"{op} {n}" for op, n in code.opcodes.most_common(top))
        lines.append(f"{arch}  {names[kernel]}: {code.total} instructions ({common})")
        for routine, sites in code.calls.items():
            body = routines.get(routine, Code())
            common = ", ".join(f"{op} {n}" for op, n in body.opcodes.most_common(top))
            lines.append(f"{arch}    calls {routine} from {sites} sites: {body.total} instructions each ({common})")
    if not chosen:
        lines.append(f"{arch}  no kernel matches {pattern!r}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="a translation unit (.cu)")
    parser.add_argument("--arch", nargs="+", default=["sm_70", "sm_90"],
                        help="sm_70 and/or archs the local nvcc targets")
    parser.add_argument("--kernel", default=".", help="regex on the demangled kernel name")
    parser.add_argument("--top", type=int, default=10, help="opcodes listed per kernel")
    args = parser.parse_args(argv)
    found = True
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.arch:
            kernels, routines = parse_sass(sass(cubin(args.source.resolve(), arch, Path(tmp))))
            lines = report(arch, kernels, routines, args.kernel, args.top)
            found &= not lines[-1].endswith(f"matches {args.kernel!r}")
            print("\n".join(lines))
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())

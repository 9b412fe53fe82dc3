#!/usr/bin/env python3
"""Finds kernels whose PTX reads a register that nothing writes.

NVVM lowers a value it considers undefined (undefined behaviour in the source, or a miscompile) to a
register that is read but never written: the kernel then computes with garbage and still assembles
and runs. Seen here on 2026-12-01: with the AWQ kernel's two column tiles' weight fetches in an array
of structs, nvcc 13.0 left the second tile's weight words undefined (wrong sums on the GPU, found only
there). Every kernel translation unit of both wheels is compiled to PTX for compute_75, as the Volta
check does, and each kernel's registers are checked: read somewhere means written somewhere.

Usage: tools/check_ptx_registers.py [FILE.cu ...]   (default: every kernel TU of both wheels)
Exit status 0 when no kernel reads an unwritten register.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_volta_legality import KERNEL_DIRS, ROOT, compile_ptx, find_cuda_home  # noqa: E402

REGISTER = re.compile(r"%(?:rd|rs|rq|r|fd|f|p|hh|h)\d+\b")
# Instructions whose first operand is read, not written.
NO_DESTINATION = {"st", "stmatrix", "sust", "red", "bra", "brx", "ret", "membar", "fence", "prefetch", "call",
                  "exit", "trap", "cp", "nanosleep", "griddepcontrol"}


def kernel_bodies(ptx: str) -> dict[str, str]:
    """Kernel name -> its PTX body (.entry functions; a .func that follows is not part of it)."""
    parts = re.split(r"^(?:\.visible\s+|\.weak\s+)?\.(entry|func)\s+", ptx, flags=re.MULTILINE)
    return {body[:body.index("(")].strip(): body for kind, body in zip(parts[1::2], parts[2::2]) if kind == "entry"}


def has_destination(opcode: str) -> bool:
    base, *qualifiers = opcode.split(".")
    if base in ("bar", "barrier"):
        return "red" in qualifiers  # bar.red writes its result; bar.sync, .arrive, .warp write nothing
    if (base == "wmma" and "store" in qualifiers) or (base == "mbarrier" and "init" in qualifiers):
        return False
    return base not in NO_DESTINATION


def statements(body: str):
    """The body's statements, comments dropped, one-line inline-asm blocks split at ';'."""
    for line in body.splitlines():
        for statement in line.split("//", 1)[0].split(";"):
            statement = statement.strip().strip("{}").strip()
            if statement and not statement.startswith(".") and not statement.endswith(":"):
                yield statement


def undefined_registers(ptx: str) -> dict[str, list[str]]:
    """Kernel name -> registers it reads but never writes (kernels without any are left out)."""
    found = {}
    for name, body in kernel_bodies(ptx).items():
        written, read = set(), set()
        for line in statements(body):
            guard = re.match(r"^@!?(%p\d+)\s+", line)
            if guard:
                read.add(guard.group(1))
                line = line[guard.end():]
            opcode, operands = (line.split(None, 1) + [""])[:2]
            if not has_destination(opcode):
                read.update(REGISTER.findall(operands))
                continue
            destination = re.match(r"\s*(\{[^}]*\}|[^,]+)", operands)
            if destination is None:
                continue
            written.update(REGISTER.findall(destination.group(1)))
            read.update(REGISTER.findall(operands[destination.end():]))
        if read - written:
            found[name] = sorted(read - written, key=lambda r: (len(r), r))
    return found


def kernel_sources() -> list[Path]:
    return sorted(p for d in KERNEL_DIRS for p in d.rglob("*.cu"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="*", type=Path, help="translation units to check")
    args = parser.parse_args(argv)
    sources = args.sources or kernel_sources()
    nvcc = find_cuda_home() / "bin" / "nvcc"
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for source in sources:
            name = source.resolve().relative_to(ROOT) if source.resolve().is_relative_to(ROOT) else source
            try:
                ptx = compile_ptx(source.resolve(), nvcc, Path(tmp))
            except RuntimeError as e:
                print(f"FAIL {name}: {e}")
                failures += 1
                continue
            bad = undefined_registers(ptx)
            kernels = len(kernel_bodies(ptx))
            if bad:
                failures += 1
                detail = "; ".join(f"{kernel} reads {', '.join(regs[:6])}" for kernel, regs in list(bad.items())[:3])
                print(f"FAIL {name}: {len(bad)} of {kernels} kernels read unwritten registers: {detail}")
            else:
                print(f"ok   {name}: {kernels} kernels")
    print(f"PTX registers: {len(sources) - failures}/{len(sources)} translation units read only written registers")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""tools/check_ptx_registers.py: a kernel that reads a register nothing writes is reported (the form
nvcc gives undefined values, as in the AWQ column-tile miscompile of 2026-12-01), and our kernels
read only registers they write."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
from check_ptx_registers import undefined_registers  # noqa: E402
from check_volta_legality import missing_toolchain  # noqa: E402

CLEAN = """
.visible .entry clean(
	.param .u64 clean_param_0
)
{
	.reg .pred 	%p<2>;
	.reg .b32 	%r<8>;
	.reg .b64 	%rd<3>;
	ld.param.u64 	%rd1, [clean_param_0];
	mov.u32 	%r1, %tid.x;
	setp.lt.u32 	%p1, %r1, 32;
	@%p1 bra 	$L__BB0_2;
	ld.global.v4.u32 	{%r2, %r3, %r4, %r5}, [%rd1];
	// begin inline asm
	lop3.b32 %r6, %r2, %r3, %r4, 0xea;
	// end inline asm
	{.reg .f16 low,high;
	mov.b32 {low,high}, %r6;
	mov.b32 %r7, {low,low};}
	st.global.u32 	[%rd1], %r7;
$L__BB0_2:
	ret;
}
"""


def test_a_kernel_that_writes_what_it_reads_is_clean():
    assert undefined_registers(CLEAN) == {}


def test_a_register_read_before_any_write_is_reported():
    broken = CLEAN.replace("lop3.b32 %r6, %r2, %r3, %r4, 0xea;", "lop3.b32 %r6, %r9, %r3, %r4, 0xea;")
    assert undefined_registers(broken) == {"clean": ["%r9"]}


def test_stores_and_guards_are_reads_not_writes():
    stored = CLEAN.replace("st.global.u32 	[%rd1], %r7;", "st.global.u32 	[%rd2], %r7;")
    guarded = CLEAN.replace("@%p1 bra", "@%p0 bra")
    assert undefined_registers(stored) == {"clean": ["%rd2"]}
    assert undefined_registers(guarded) == {"clean": ["%p0"]}


def test_multiple_destinations_tabs_comments_and_one_line_asm_blocks():
    extra = """
	setp.lt.u32 	%p2|%p3, %r1, 7;
	shfl.sync.bfly.b32	%r8|%p4, %r7, 1, 31, -1;  // reads %r99 in a comment only
	{ .reg .b32 t; mov.b32 t, %r8; add.s32 %r9, %r8, 1; }
	bar.red.popc.u32 	%r10, 0, %p2;
	st.global.u32 	[%rd1], %r9;
	st.global.u32 	[%rd1], %r10;
"""
    body = CLEAN.replace("$L__BB0_2:", extra + "$L__BB0_2:")
    assert undefined_registers(body) == {}
    assert undefined_registers(body.replace("add.s32 %r9, %r8, 1", "add.s32 %r9, %r11, 1")) == {"clean": ["%r11"]}


def test_a_function_after_the_kernel_is_not_part_of_it():
    helper = "\n.func helper(\n)\n{\n\tmov.u32 \t%r1, %r2;\n\tret;\n}\n"
    assert undefined_registers(CLEAN + helper) == {}


@pytest.mark.skipif(missing_toolchain() is not None, reason=str(missing_toolchain()))
def test_our_kernels_read_only_registers_they_write():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "check_ptx_registers.py")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "awq_gemm_sm75.cu" in result.stdout and "prefill_sm70.cu" in result.stdout

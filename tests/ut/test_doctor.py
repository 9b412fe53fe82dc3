"""`vllm-sm7x doctor` on a machine without a GPU, and the checks' verdicts on faked machines."""
import json
import subprocess
import sys

import pytest

from vllm_sm7x import doctor
from vllm_sm7x.activation import Gpu
from vllm_sm7x.doctor import Check, Context

V100 = Gpu(0, "Tesla V100-SXM2-32GB", (7, 0))
T4 = Gpu(0, "Tesla T4", (7, 5))


def test_doctor_without_gpu_says_so_and_exits_nonzero(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, even where the tests run on one
    result = subprocess.run([sys.executable, "-m", "vllm_sm7x.entrypoints.cli", "doctor", "--json"],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ready"] is False
    assert checks["gpus"]["status"] == "fail" and "no NVIDIA GPU visible" in checks["gpus"]["detail"]
    assert checks["kernels"]["status"] == "info"
    assert checks["plugin"]["status"] == "fail"
    assert checks["vllm_sm7x._C"]["status"] == "ok", checks["vllm_sm7x._C"]


def test_doctor_table_lists_fixes_and_verdict(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    result = subprocess.run([sys.executable, "-m", "vllm_sm7x.entrypoints.cli", "doctor"], capture_output=True,
                            text=True)
    assert result.returncode == 1
    assert "To fix:" in result.stdout and result.stdout.rstrip().endswith("NOT READY")


class FakeTorch:
    __version__ = "2.11.0+cu130"

    class version:
        cuda = "13.0"

    class _C:
        @staticmethod
        def _cuda_getArchFlags():
            return "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120"


def test_torch_without_sm70_on_a_v100_names_the_cu126_build(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    check = doctor.check_torch(Context(gpus=[V100]))
    assert check.status == "fail"
    assert "has no sm_70 kernels" in check.fix and "download.pytorch.org/whl/cu126" in check.fix


def test_torch_cu130_is_fine_on_turing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", FakeTorch)
    assert doctor.check_torch(Context(gpus=[T4])).status == "ok"


def test_extension_built_without_sm70_fails_on_a_v100(monkeypatch):
    monkeypatch.setattr(doctor, "_load_build_info",
                        lambda module, op: {"cuda_archs": "75-real,90", "paths": ["sm70", "sm75"]})
    check = doctor.check_sm7x_extension(Context(gpus=[V100]))
    assert check.status == "fail" and "7.0" in check.fix and "CUDA 12.6/12.8" in check.fix
    assert doctor.check_sm7x_extension(Context(gpus=[T4])).status == "ok"


def test_a_check_that_breaks_is_reported_not_raised(monkeypatch):
    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "CHECKS", [broken])
    monkeypatch.setattr(doctor, "visible_gpus", lambda: [T4])
    [check] = doctor.run_checks()
    assert check.status == "fail" and "boom" in check.detail


@pytest.mark.parametrize("statuses, ready", [(["ok", "info", "warn"], True), (["ok", "fail"], False)])
def test_ready_means_no_failed_check(statuses, ready):
    assert doctor.is_ready([Check(str(i), s, "") for i, s in enumerate(statuses)]) is ready


def test_switched_paths_are_reported_as_set(monkeypatch):
    monkeypatch.setenv("VLLM_SM7X_GDN_PREFILL", "0")
    monkeypatch.setenv("VLLM_SM7X_GDN_CONV_PREFILL", "1")
    monkeypatch.setenv("VLLM_SM7X_GDN_DECODE", "0")
    monkeypatch.setenv("VLLM_SM7X_PROFILE", "on")
    check = doctor.check_switches(Context(gpus=[]))
    assert check.status == "info"
    assert check.data == {"VLLM_SM7X_GDN_DECODE": "off", "VLLM_SM7X_GDN_PREFILL": "off",
                          "VLLM_SM7X_GDN_CONV_PREFILL": "on", "VLLM_SM7X_PROFILE": "on"}
    assert "GDN prefill on our kernels off (VLLM_SM7X_GDN_PREFILL)" in check.detail
    assert "GDN prefill's conv1d on our kernel (opt-in) on (VLLM_SM7X_GDN_CONV_PREFILL)" in check.detail


@pytest.mark.parametrize("name, value", [("VLLM_SM7X_PROFILE", "yes"), ("VLLM_SM7X_GDN_DECODE", "maybe")])
def test_a_switch_the_server_would_refuse_fails_the_doctor(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    check = doctor.check_switches(Context(gpus=[]))
    assert check.status == "fail" and f"{name}={value!r}" in check.detail


def test_gdn_kernels_and_the_profile_are_on_by_default_and_the_conv_kernel_is_opt_in(monkeypatch):
    for name in ("VLLM_SM7X_GDN_DECODE", "VLLM_SM7X_GDN_PREFILL", "VLLM_SM7X_GDN_CONV_PREFILL", "VLLM_SM7X_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    check = doctor.check_switches(Context(gpus=[]))
    assert check.data == {"VLLM_SM7X_GDN_DECODE": "on", "VLLM_SM7X_GDN_PREFILL": "on",
                          "VLLM_SM7X_GDN_CONV_PREFILL": "off", "VLLM_SM7X_PROFILE": "auto"}

"""The build's arch policy (setup_support/cuda_archs.py), shared by both wheels."""
import pytest

from setup_support import cuda_archs
from setup_support.cuda_archs import (BuildConfigError, check_torch_matches, cmake_architectures, find_cuda_home,
                                      parse_arch_list, parse_nvcc_version, select_archs)


@pytest.mark.parametrize("cuda, archs", [((12, 6), [70, 75]), ((12, 8), [70, 75]), ((13, 0), [75])])
def test_default_archs_follow_the_toolkit(cuda, archs):
    assert select_archs(None, cuda) == archs


def test_torch_cuda_arch_list_wins():
    assert select_archs("7.5;9.0", (13, 0)) == [75, 90]
    assert select_archs("7.0 7.5+PTX", (12, 8)) == [70, 75]


def test_arch_specific_suffixes_build_the_plain_arch():
    # CUDA images preset e.g. TORCH_CUDA_ARCH_LIST=9.0a; the wheels use no arch-specific features.
    assert parse_arch_list("7.5;9.0a;10.0f") == [75, 90, 100]


def test_cuda13_refuses_sm70_with_the_fix():
    with pytest.raises(BuildConfigError, match="CUDA 13.0 cannot compile for sm_70.*CUDA 12.6/12.8"):
        select_archs("7.0;7.5", (13, 0))


@pytest.mark.parametrize("bad", ["sm_70", "7", "seven"])
def test_unreadable_arch_list_is_named(bad):
    with pytest.raises(BuildConfigError, match=repr(bad)):
        parse_arch_list(bad)


def test_arch_list_without_sm7x_is_refused():
    with pytest.raises(BuildConfigError, match="no arch >= 7.0"):
        select_archs("6.1", (12, 8))


def test_old_toolkit_is_refused():
    with pytest.raises(BuildConfigError, match="too old"):
        select_archs(None, (11, 8))


def test_highest_arch_carries_ptx():
    assert cmake_architectures([70, 75]) == "70-real;75"
    assert cmake_architectures([75, 90]) == "75-real;90"
    assert cmake_architectures([75]) == "75"


def test_nvcc_version_parsing():
    text = "Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler.36424714_0"
    assert parse_nvcc_version(text) == (13, 0)


def test_torch_and_toolkit_majors_must_match():
    check_torch_matches("12.6", (12, 8))
    with pytest.raises(BuildConfigError, match="torch was built with CUDA 13.0 but nvcc is 12.8"):
        check_torch_matches("13.0", (12, 8))
    with pytest.raises(BuildConfigError, match="CPU-only"):
        check_torch_matches(None, (12, 8))


def test_missing_nvcc_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(cuda_archs.shutil, "which", lambda name: None)
    with pytest.raises(BuildConfigError, match="no CUDA compiler \\(nvcc\\) found.*CUDA_HOME"):
        find_cuda_home(default_home=tmp_path)


def test_cuda_home_without_nvcc_is_named(monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    with pytest.raises(BuildConfigError, match="has no bin/nvcc"):
        find_cuda_home()

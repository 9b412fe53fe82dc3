"""vllm-sm7x: builds vllm_sm7x._C with CMake (see setup_support/ for the arch policy)."""
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from setup_support.cmake_build import CMakeBuild, CMakeExtension  # noqa: E402

setup(ext_modules=[CMakeExtension("vllm_sm7x._C", ROOT)], cmdclass={"build_ext": CMakeBuild})

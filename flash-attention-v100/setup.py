"""flash-attn-v100: builds flash_attn_v100._C with CMake. Builds from the vllm-sm7x checkout, whose
setup_support/ (arch policy) and csrc/core/ (arch tags, mma wrappers) it shares."""
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
from setup_support.cmake_build import CMakeBuild, CMakeExtension  # noqa: E402

setup(ext_modules=[CMakeExtension("flash_attn_v100._C", ROOT)], cmdclass={"build_ext": CMakeBuild})

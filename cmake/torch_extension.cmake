# Builds a Python extension module against the torch of ${Python_EXECUTABLE}'s environment.
# Shared by vllm-sm7x and flash-attention-v100. Torch's own CMake package is not used: it drags in
# cuDNN/NVTX discovery and rewrites CUDA flags; the few paths and flags we need are asked of torch.
#
# SM7X_CUDA_ARCHS comes from setup_support/cuda_archs.py, e.g. "70-real;75" or "75-real;90".

find_package(Python REQUIRED COMPONENTS Interpreter Development.Module)
find_package(CUDAToolkit REQUIRED)

if(NOT SM7X_CUDA_ARCHS)
  message(FATAL_ERROR "SM7X_CUDA_ARCHS is not set: build through setup.py (pip install --no-build-isolation -e .)")
endif()

execute_process(
  COMMAND ${Python_EXECUTABLE} -c
    "import os, torch; r = os.path.dirname(torch.__file__); print(r + '/include;' + r + '/include/torch/csrc/api/include', end='|'); print(r + '/lib', end='|'); print(int(torch._C._GLIBCXX_USE_CXX11_ABI), end='')"
  OUTPUT_VARIABLE _torch_info RESULT_VARIABLE _torch_rc)
if(NOT _torch_rc EQUAL 0)
  message(FATAL_ERROR "cannot import torch with ${Python_EXECUTABLE}")
endif()
string(REPLACE "|" ";" _torch_info "${_torch_info}")
list(GET _torch_info 0 _inc0)
list(GET _torch_info 1 _inc1)
list(GET _torch_info 2 TORCH_LIBRARY_DIR)
list(GET _torch_info 3 TORCH_CXX11_ABI)
set(TORCH_INCLUDE_DIRS ${_inc0} ${_inc1})

set(SM7X_TORCH_LIBS)
foreach(lib c10 c10_cuda torch torch_cpu torch_cuda)
  find_library(_lib_${lib} ${lib} PATHS ${TORCH_LIBRARY_DIR} NO_DEFAULT_PATH REQUIRED)
  list(APPEND SM7X_TORCH_LIBS ${_lib_${lib}})
endforeach()

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)

# Keeps from SM7X_CUDA_ARCHS the archs >= min_arch; the highest kept one also embeds PTX.
function(sm7x_archs_from out_var min_arch)
  set(kept)
  foreach(a ${SM7X_CUDA_ARCHS})
    string(REGEX MATCH "^[0-9]+" num "${a}")
    if(num GREATER_EQUAL min_arch)
      list(APPEND kept "${num}-real")
    endif()
  endforeach()
  if(kept)
    list(POP_BACK kept last)
    string(REPLACE "-real" "" last "${last}")
    list(APPEND kept "${last}")
  endif()
  set(${out_var} "${kept}" PARENT_SCOPE)
endfunction()

function(_sm7x_common_flags target)
  target_include_directories(${target} PRIVATE ${TORCH_INCLUDE_DIRS})
  target_compile_definitions(${target} PRIVATE _GLIBCXX_USE_CXX11_ABI=${TORCH_CXX11_ABI})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo -Xptxas=-warn-spills>)
endfunction()

# sm7x_cuda_objects(<name> MIN_ARCH <70|75> SOURCES ...): kernels of one arch path, compiled only for
# the archs that can run them (lmdeploy-style per-arch libraries). Sets <name>_ENABLED in the caller.
function(sm7x_cuda_objects name)
  cmake_parse_arguments(ARG "" "MIN_ARCH" "SOURCES;INCLUDES" ${ARGN})
  sm7x_archs_from(archs ${ARG_MIN_ARCH})
  if(NOT archs)
    message(STATUS "${name}: no arch >= ${ARG_MIN_ARCH} in '${SM7X_CUDA_ARCHS}', path not built")
    set(${name}_ENABLED OFF PARENT_SCOPE)
    return()
  endif()
  add_library(${name} OBJECT ${ARG_SOURCES})
  target_include_directories(${name} PRIVATE ${ARG_INCLUDES})
  _sm7x_common_flags(${name})
  set_target_properties(${name} PROPERTIES CUDA_ARCHITECTURES "${archs}" CUDA_RUNTIME_LIBRARY Shared)
  message(STATUS "${name}: CUDA_ARCHITECTURES ${archs}")
  set(${name}_ENABLED ON PARENT_SCOPE)
endfunction()

# sm7x_torch_extension(<target> SOURCES ... OBJECTS ... INCLUDES ...): the Python module <target>.
function(sm7x_torch_extension target)
  cmake_parse_arguments(ARG "" "" "SOURCES;OBJECTS;INCLUDES;DEFINITIONS" ${ARGN})
  Python_add_library(${target} MODULE WITH_SOABI ${ARG_SOURCES})
  foreach(obj ${ARG_OBJECTS})
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:${obj}>)
  endforeach()
  target_include_directories(${target} PRIVATE ${ARG_INCLUDES})
  string(REPLACE ";" "," archs_str "${SM7X_CUDA_ARCHS}")
  target_compile_definitions(${target} PRIVATE ${ARG_DEFINITIONS}
    TORCH_EXTENSION_NAME=${target} TORCH_API_INCLUDE_EXTENSION_H
    SM7X_CUDA_ARCHS_STR="${archs_str}")
  _sm7x_common_flags(${target})
  sm7x_archs_from(all_archs 0)
  # The shared CUDA runtime, the one torch loads: one runtime (and one error state) per process.
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${all_archs}" CUDA_RUNTIME_LIBRARY Shared)
  target_link_libraries(${target} PRIVATE ${SM7X_TORCH_LIBS} CUDA::cudart)
endfunction()

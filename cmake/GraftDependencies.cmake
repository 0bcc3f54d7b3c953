# Every dependency is found with find_package. LibTorch is the one inside the PyTorch wheel of the
# python3 on PATH (or of -DPython3_EXECUTABLE=...): CMake asks torch.utils.cmake_prefix_path, so a
# CUDA build in a virtual environment works the same way as the CPU wheel.

find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module)

if(NOT GRAFT_TORCH_PREFIX)
  execute_process(
    COMMAND "${Python3_EXECUTABLE}" -c "import torch, os; print(torch.utils.cmake_prefix_path + ';' + os.path.dirname(torch.__file__))"
    OUTPUT_VARIABLE _graft_torch_paths OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _graft_torch_rc)
  if(NOT _graft_torch_rc EQUAL 0)
    message(FATAL_ERROR "graft: `${Python3_EXECUTABLE} -c 'import torch'` failed. Install PyTorch 2.11 or newer "
                        "into that Python (here: python3 -m pip install torch==2.13.0) or pass -DPython3_EXECUTABLE.")
  endif()
  list(GET _graft_torch_paths 0 GRAFT_TORCH_PREFIX)
  list(GET _graft_torch_paths 1 GRAFT_TORCH_DIR)
  set(GRAFT_TORCH_PREFIX "${GRAFT_TORCH_PREFIX}" CACHE PATH "torch.utils.cmake_prefix_path")
  set(GRAFT_TORCH_DIR "${GRAFT_TORCH_DIR}" CACHE PATH "the torch package directory")
endif()
list(APPEND CMAKE_PREFIX_PATH "${GRAFT_TORCH_PREFIX}")
find_package(Torch REQUIRED)
if(Torch_VERSION VERSION_LESS 2.11)
  message(FATAL_ERROR "graft needs LibTorch 2.11 or newer; found ${Torch_VERSION}")
endif()

# Torch's CMake config puts its flags (the C++ ABI define) on the `torch` target and also in
# TORCH_CXX_FLAGS; torch-free libraries must be built with the same ABI to link with it.
string(APPEND CMAKE_CXX_FLAGS " ${TORCH_CXX_FLAGS}")

find_package(nlohmann_json 3.10 REQUIRED)
find_package(CLI11 REQUIRED)
find_package(Eigen3 3.3 REQUIRED NO_MODULE)
if(GRAFT_BUILD_TESTS)
  find_package(GTest REQUIRED)
endif()

# pybind11 exactly as torch ships it (its headers under torch/include), linked with
# libtorch_python, as torch.utils.cpp_extension does: torch's tensor casters then work.
find_library(GRAFT_TORCH_PYTHON_LIBRARY torch_python PATHS "${GRAFT_TORCH_DIR}/lib" NO_DEFAULT_PATH)

# Configuring without a Python that has torch fails, unless FL_ALLOW_NO_PYTHON=ON says so.
# cmake -DSRC=<source dir> -DBIN=<scratch dir> -P configure_needs_python.cmake
file(REMOVE_RECURSE ${BIN})
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${BIN}/refused -DFL_TORCH_PYTHON=/bin/false
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  file(REMOVE_RECURSE ${BIN})
  message(FATAL_ERROR "configuring with FL_TORCH_PYTHON=/bin/false succeeded: the tests "
                      "against Python references would be skipped and the run pass")
endif()
if(NOT err MATCHES "cannot import torch" OR NOT err MATCHES "FL_ALLOW_NO_PYTHON=ON")
  file(REMOVE_RECURSE ${BIN})
  message(FATAL_ERROR "the configure error does not name the cause and the opt-out:\n${err}")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SRC} -B ${BIN}/allowed -DFL_TORCH_PYTHON=/bin/false
  -DFL_ALLOW_NO_PYTHON=ON RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
file(REMOVE_RECURSE ${BIN})
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring with FL_ALLOW_NO_PYTHON=ON failed:\n${err}")
endif()

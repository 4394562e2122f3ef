# Runs the orch program with up to six arguments and checks its exit code and,
# optionally, a piece of its standard output.
#   cmake -DORCH=<program> [-DARG1=..] [-DARG2=..] -DEXPECT_RC=<n> [-DEXPECT_OUTPUT=<text>] -P cli_check.cmake
set(args)
foreach(a ARG1 ARG2 ARG3 ARG4 ARG5 ARG6)
  if(DEFINED ${a})
    list(APPEND args "${${a}}")
  endif()
endforeach()
execute_process(COMMAND "${ORCH}" ${args}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT "${rc}" STREQUAL "${EXPECT_RC}")
  message(FATAL_ERROR "orch ${args}: exit ${rc}, expected ${EXPECT_RC}\nstdout:\n${out}\nstderr:\n${err}")
endif()
if(DEFINED EXPECT_OUTPUT)
  string(FIND "${out}" "${EXPECT_OUTPUT}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "orch ${args}: stdout lacks '${EXPECT_OUTPUT}'\nstdout:\n${out}\nstderr:\n${err}")
  endif()
endif()

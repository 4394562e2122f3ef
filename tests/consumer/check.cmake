# Installs the orch build tree into a scratch prefix, then configures, builds
# and runs the consumer project against it. Run with cmake -P.
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
function(run)
  execute_process(COMMAND ${ARGV} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGV}")
  endif()
endfunction()
run(${CMAKE_COMMAND} --install ${ORCH_BUILD_DIR} --prefix ${prefix})
run(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${WORK_DIR}/build
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)
run(${WORK_DIR}/build/consumer)
run(${WORK_DIR}/build/consumer_core)
# orch::core pulls in none of the optional components' libraries.
execute_process(COMMAND ldd ${WORK_DIR}/build/consumer_core OUTPUT_VARIABLE linked RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ldd consumer_core failed (${rc})")
endif()
foreach(library mosquitto hiredis sqlite SQLiteCpp httplib libpq gvc cgraph liborch_sqlite liborch_http_workers
                liborch_async_workers liborch_postgres liborch_graphviz)
  string(FIND "${linked}" "${library}" at)
  if(NOT at EQUAL -1)
    message(FATAL_ERROR "a program linking only orch::core links ${library}:\n${linked}")
  endif()
endforeach()
message(STATUS "consumer_core links only orch::core:\n${linked}")

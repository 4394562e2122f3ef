# How each Debian package is found. Every target here is used PRIVATE by the
# library, so hosts linking orch::orch only need Threads (see orchConfig.cmake.in).
find_package(Threads REQUIRED)

# fmt 9.1: config package, shared library.
find_package(fmt 9 REQUIRED CONFIG)

# RapidJSON 1.1: the config package only sets RAPIDJSON_INCLUDE_DIRS.
find_package(RapidJSON 1.1 REQUIRED CONFIG)
if(NOT TARGET orch_rapidjson)
  add_library(orch_rapidjson INTERFACE)
  target_include_directories(orch_rapidjson SYSTEM INTERFACE ${RAPIDJSON_INCLUDE_DIRS})
  target_compile_definitions(orch_rapidjson INTERFACE RAPIDJSON_HAS_STDSTRING=1)
endif()

# Standalone Asio 1.22: header only, no CMake or pkg-config file.
find_path(ASIO_INCLUDE_DIR asio.hpp REQUIRED)
if(NOT TARGET orch_asio)
  add_library(orch_asio INTERFACE)
  target_include_directories(orch_asio SYSTEM INTERFACE ${ASIO_INCLUDE_DIR})
  # ASIO_DISABLE_STD_ALIGNED_ALLOC: Asio picks its allocation function by
  # which standard headers came first, so two files could disagree (an ASan
  # alloc-dealloc mismatch); pin one choice for every file.
  target_compile_definitions(orch_asio INTERFACE ASIO_STANDALONE ASIO_NO_DEPRECATED ASIO_DISABLE_STD_ALIGNED_ALLOC)
  target_link_libraries(orch_asio INTERFACE Threads::Threads)
endif()

# The optional components' libraries are looked for only when they are built.
find_package(PkgConfig REQUIRED)

# SQLiteCpp 3.2: config package; target is the un-namespaced static `SQLiteCpp`.
if(ORCH_WITH_SQLITE)
  find_package(SQLiteCpp 3 REQUIRED CONFIG)
endif()

# libpq 15 (Debian's libpq-dev; 14+ for pipeline mode): found through
# pkg-config, and only when orch::postgres is built.
if(ORCH_WITH_POSTGRES)
  pkg_check_modules(LIBPQ REQUIRED IMPORTED_TARGET GLOBAL libpq>=14)
endif()

# cpp-httplib 0.11.4 is shipped compiled; its ABI defines (OpenSSL/zlib/brotli)
# must come from pkg-config or the binary crashes at run time. The server and
# the tests' fake workers use it too.
if(ORCH_WITH_HTTP_WORKERS OR ORCH_BUILD_SERVER OR ORCH_BUILD_TESTS)
  pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET GLOBAL cpp-httplib>=0.11)
endif()

# libmosquitto 2.0 (the mqtt worker protocol) and hiredis 0.14 (redis_stream)
# have only pkg-config files.
if(ORCH_WITH_ASYNC_WORKERS OR ORCH_BUILD_TESTS)
  pkg_check_modules(MOSQUITTO REQUIRED IMPORTED_TARGET GLOBAL libmosquitto>=2.0)
  pkg_check_modules(HIREDIS REQUIRED IMPORTED_TARGET GLOBAL hiredis>=0.14)
endif()

# Graphviz 2.42+ (libgvc, libcgraph; Debian libgraphviz-dev): pkg-config files.
if(ORCH_WITH_GRAPHVIZ)
  pkg_check_modules(GRAPHVIZ REQUIRED IMPORTED_TARGET GLOBAL libgvc libcgraph)
endif()

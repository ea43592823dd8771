# canopy_component(NAME DEPS ...): one static library per folder under src/ (public headers at the
# top of the folder, internals in detail/ and subfolders). Dependencies must stay acyclic.
function(canopy_component name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  add_library(canopy_${name} STATIC ${srcs})
  target_include_directories(canopy_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(canopy_${name} PUBLIC ${ARG_DEPS})
endfunction()

# canopy_agent_variant(NAME DEPS ...): the same sources as canopy_NAME, built as canopy_NAME_agent
# for the statically linked agent: fmt and spdlog header-only (Debian ships them as shared
# libraries only), and DEPS given as plain library names (-lssl, -lsqlite3...) so that `-static`
# picks the archives. Only the agent's components get a variant: header-only spdlog costs ~4 s per
# translation unit.
function(canopy_agent_variant name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  if(NOT TARGET canopy_agent_logging)
    add_library(canopy_agent_logging INTERFACE)
    target_compile_definitions(canopy_agent_logging INTERFACE FMT_HEADER_ONLY=1 SPDLOG_FMT_EXTERNAL)
  endif()
  get_target_property(srcs canopy_${name} SOURCES)
  add_library(canopy_${name}_agent STATIC ${srcs})
  target_include_directories(canopy_${name}_agent PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(canopy_${name}_agent PUBLIC canopy_agent_logging ${ARG_DEPS})
endfunction()

# canopy_test(FILE DEPS ... PROPERTIES ...): one GoogleTest binary per test file, linked with DEPS
# only (tests/CMakeLists.txt picks them per folder). The suffix picks the ctest label:
# *_test.cpp -> unit, *_itest.cpp -> integration, tests/e2e/* -> e2e. PROPERTIES go to every test
# of the file (e.g. RESOURCE_LOCK for suites that share host-global state). Long labels get a
# higher COST so a parallel ctest starts them first.
function(canopy_test file)
  cmake_parse_arguments(ARG "" "" "DEPS;PROPERTIES" ${ARGN})
  get_filename_component(stem ${file} NAME_WE)
  get_filename_component(dir ${file} DIRECTORY)
  get_filename_component(comp ${dir} NAME)
  set(target ${comp}_${stem})
  if(file MATCHES "_itest\\.cpp$")
    set(label integration)
    set(cost 10)
  elseif(dir MATCHES "e2e")
    set(label e2e)
    set(cost 100)
  else()
    set(label unit)
    set(cost 1)
  endif()
  add_executable(${target} ${file})
  target_link_libraries(${target} PRIVATE ${ARG_DEPS} GTest::gtest_main GTest::gmock)
  gtest_discover_tests(${target} DISCOVERY_TIMEOUT 60
                       PROPERTIES LABELS ${label} COST ${cost} ${ARG_PROPERTIES})
endfunction()

# canopy_embed(TARGET SYMBOL FILE): compiles FILE's text into TARGET as
# `extern const char SYMBOL[]` (so daemons need no source tree at run time).
function(canopy_embed target symbol file)
  file(READ ${file} content)
  set(out ${CMAKE_BINARY_DIR}/generated/${symbol}.cpp)
  file(CONFIGURE OUTPUT ${out}
       CONTENT "extern const char ${symbol}[];\nconst char ${symbol}[] = R\"canopy_embed(@content@)canopy_embed\";\n"
       @ONLY)
  set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  target_sources(${target} PRIVATE ${out})
endfunction()

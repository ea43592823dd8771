# canopy_component(NAME DEPS ...): one static library per folder under src/ (public headers at the
# top of the folder, internals in detail/ and subfolders). Dependencies must stay acyclic.
function(canopy_component name)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  add_library(canopy_${name} STATIC ${srcs})
  target_include_directories(canopy_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(canopy_${name} PUBLIC ${ARG_DEPS})
endfunction()

# canopy_test(FILE DEPS ...): one GoogleTest binary per test file. The suffix picks the ctest label:
# *_test.cpp -> unit, *_itest.cpp -> integration, tests/e2e/* -> e2e.
function(canopy_test file)
  cmake_parse_arguments(ARG "" "" "DEPS" ${ARGN})
  get_filename_component(stem ${file} NAME_WE)
  get_filename_component(dir ${file} DIRECTORY)
  get_filename_component(comp ${dir} NAME)
  set(target ${comp}_${stem})
  if(file MATCHES "_itest\\.cpp$")
    set(label integration)
  elseif(dir MATCHES "e2e")
    set(label e2e)
  else()
    set(label unit)
  endif()
  add_executable(${target} ${file})
  target_link_libraries(${target} PRIVATE canopy_test_support ${ARG_DEPS} GTest::gtest_main GTest::gmock)
  target_compile_definitions(${target} PRIVATE
    CANOPY_BIN_DIR="${CMAKE_BINARY_DIR}/bin" CANOPY_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(${target} PROPERTIES LABELS ${label} DISCOVERY_TIMEOUT 60)
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

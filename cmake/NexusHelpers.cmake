# Helper functions shared by every folder's CMakeLists.txt.

# Warnings are errors on our own code only (never on system headers).
# -Wmissing-field-initializers is off because g++ 12 also fires it on designated initializers
# that rely on default member initializers (our Options structs are used exactly that way).
set(NEXUS_WARNINGS -Wall -Wextra -Werror -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  # g++ 12 reports false -Wrestrict positives inside libstdc++'s string concatenation at -O3
  # (GCC bug 105329, fixed in 13).
  list(APPEND NEXUS_WARNINGS -Wno-restrict)
endif()

function(nexus_setup_sanitizers)
  if(NEXUS_SANITIZE)
    set(flags -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    add_compile_options(${flags})
    add_link_options(${flags})
  endif()
  if(NEXUS_FUZZ)
    # Coverage for libFuzzer in every object; fuzz targets link the fuzzer itself.
    add_compile_options(-fsanitize=fuzzer-no-link)
  endif()
endfunction()

# nexus_add_library(name SOURCES ... DEPS ...)
# A static library for one folder; its headers are included as "<folder>/<file>.h"
# relative to src/.
function(nexus_add_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(${name} PRIVATE ${NEXUS_WARNINGS})
  target_link_libraries(${name} PUBLIC ${ARG_DEPS})
endfunction()

# nexus_add_test(name SOURCES ... DEPS ... LABELS ... [TIMEOUT s])
# A GoogleTest binary registered with ctest under the given labels (default: unit).
function(nexus_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  add_executable(${name} ${ARG_SOURCES})
  target_compile_options(${name} PRIVATE ${NEXUS_WARNINGS})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT})
endfunction()

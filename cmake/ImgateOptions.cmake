# Build-wide switches: sanitizers, fuzzing, warnings.
set(IMGATE_SANITIZE "" CACHE STRING "Sanitizers to build with: '', 'address;undefined' or 'thread'")
option(IMGATE_FUZZ "Build libFuzzer targets (needs clang)" OFF)
option(IMGATE_WERROR "Treat warnings as errors" OFF)

add_compile_options(-Wall -Wextra -Wno-unused-parameter)
if(IMGATE_WERROR)
  add_compile_options(-Werror)
endif()

if(IMGATE_SANITIZE)
  set(_san "")
  foreach(s IN LISTS IMGATE_SANITIZE)
    list(APPEND _san "-fsanitize=${s}")
  endforeach()
  add_compile_options(${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(${_san})
endif()

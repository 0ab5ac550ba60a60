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
  if("undefined" IN_LIST IMGATE_SANITIZE)
    # UBSan's vptr check probes memory through a pipe(2); in a process that is deliberately out of
    # file descriptors (the EMFILE fault test) the probe fails and every virtual call through a
    # Boost.System category is reported as "invalid vptr". Every other UBSan check stays on.
    list(APPEND _san "-fno-sanitize=vptr")
  endif()
  add_compile_options(${_san} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(${_san})
endif()

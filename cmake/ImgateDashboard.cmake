# Embeds src/dispatcher/dashboard.html into the dispatcher at build time: the page stays an
# ordinary HTML file for editing and previewing, and the daemon still ships as one binary.
set(_imgate_dash_html ${PROJECT_SOURCE_DIR}/src/dispatcher/dashboard.html)
set(_imgate_dash_cpp ${PROJECT_BINARY_DIR}/generated/dispatcher/dashboard_html.cpp)

if(TARGET imgate_dispatcher AND EXISTS ${_imgate_dash_html})
  file(READ ${_imgate_dash_html} IMGATE_DASHBOARD_HTML)
  # The page is pasted into a raw string literal; its delimiter must not occur in the page.
  string(FIND "${IMGATE_DASHBOARD_HTML}" ")imgate_dashboard\"" _imgate_dash_clash)
  if(NOT _imgate_dash_clash EQUAL -1)
    message(FATAL_ERROR
      "${_imgate_dash_html} contains the raw-string delimiter ')imgate_dashboard\"'")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/dashboard_html.cpp.in ${_imgate_dash_cpp} @ONLY)
  # file(READ) is not tracked by CMake: re-run the configure step when the page changes.
  set_property(DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
    ${_imgate_dash_html})
  target_sources(imgate_dispatcher PRIVATE ${_imgate_dash_cpp})
endif()

# Install layout (binaries are installed by src/CMakeLists.txt to bin/):
#   <prefix>/lib/systemd/system/     imgate-dispatcher.service, imgate-gateway@.service
#   <prefix>/lib/sysusers.d/         imgate.conf (the imgate system user)
#   /etc/imgate/                     fleet.yaml, dispatcher.yaml, gateway.yaml (absolute: configs
#                                    live in /etc whatever the prefix, like every Debian daemon)
#   <prefix>/share/doc/imgate/       README.md, every guide of docs/, the alert rules and their
#                                    promtool tests, the Grafana dashboard
# `cmake --install` never overwrites a config file that already exists (an operator's edits
# win); in the .deb the same files are dpkg conffiles, so upgrades ask before replacing them.
set(IMGATE_INSTALL_CONFDIR /etc/imgate CACHE PATH "Absolute directory for the configuration files")
set(IMGATE_INSTALL_UNITDIR lib/systemd/system CACHE STRING
  "systemd system unit directory (relative: under the install prefix)")

set(_imgate_units
  ${PROJECT_SOURCE_DIR}/config/systemd/imgate-dispatcher.service
  ${PROJECT_SOURCE_DIR}/config/systemd/imgate-gateway@.service)
install(FILES ${_imgate_units} DESTINATION ${IMGATE_INSTALL_UNITDIR} PERMISSIONS
  OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
install(FILES ${PROJECT_SOURCE_DIR}/config/systemd/imgate.sysusers
  DESTINATION lib/sysusers.d RENAME imgate.conf)

set(_imgate_configs fleet.yaml dispatcher.yaml gateway.yaml)
set(IMGATE_DEB_CONFFILES ${PROJECT_BINARY_DIR}/cpack/conffiles)
set(_conffiles "")
foreach(cfg IN LISTS _imgate_configs)
  string(APPEND _conffiles "${IMGATE_INSTALL_CONFDIR}/${cfg}\n")
  set(_src ${PROJECT_SOURCE_DIR}/config/etc/${cfg})
  # DESTDIR (set by CPack's staging install) is honoured for absolute destinations.
  install(CODE "
    set(_dst \"\$ENV{DESTDIR}${IMGATE_INSTALL_CONFDIR}/${cfg}\")
    if(EXISTS \"\${_dst}\")
      message(STATUS \"Keeping existing: \${_dst}\")
    else()
      # file(INSTALL) prefixes DESTDIR to an absolute DESTINATION itself.
      file(INSTALL \"${_src}\" DESTINATION \"${IMGATE_INSTALL_CONFDIR}\"
           PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
    endif()")
endforeach()
file(WRITE ${IMGATE_DEB_CONFFILES} "${_conffiles}")

# Every guide the README and operations.md point to, the alert rules with their promtool tests and
# the dashboard. Listed (not globbed) and required: a missing file fails the configure instead of
# silently shipping without it (OpsPackage checks the .deb against the README's list).
set(_imgate_docs "")
foreach(doc operations.md configuration.md architecture.md protocol.md security.md admin-api.md
            benchmarks.md client.md events.md prometheus-alerts.yml prometheus-alerts.test.yml
            grafana-dashboard.json)
  if(NOT EXISTS ${PROJECT_SOURCE_DIR}/docs/${doc})
    message(FATAL_ERROR "docs/${doc} is missing: it is installed to share/doc/imgate")
  endif()
  list(APPEND _imgate_docs ${PROJECT_SOURCE_DIR}/docs/${doc})
endforeach()
install(FILES ${_imgate_docs} ${PROJECT_SOURCE_DIR}/README.md DESTINATION share/doc/imgate)
# The example consumer events.md points to (examples/events-consumer.sh), runnable.
install(PROGRAMS ${PROJECT_SOURCE_DIR}/docs/examples/events-consumer.sh
        DESTINATION share/doc/imgate/examples)

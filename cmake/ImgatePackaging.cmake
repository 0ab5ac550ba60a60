# Operations: the embedded dashboard, install rules for units/configs/docs, and the .deb (CPack).
# Included last by the top-level CMakeLists.txt (include(ImgatePackaging OPTIONAL)).
include(ImgateDashboard)
include(ImgateInstall)

set(CPACK_PACKAGE_NAME imgate)
set(CPACK_PACKAGE_VENDOR "imgate")
set(CPACK_PACKAGE_CONTACT "imgate operators <ops@imgate.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
  "IM access layer: get-tcp-ip dispatcher and long-connection gateways")
set(CPACK_PACKAGE_DESCRIPTION
  "imgate-dispatcher answers GET /get-tcp-ip with a weighted pick among the gateways whose\n\
health and load it pulls; imgate-gateway holds the clients' long-lived TCP connections and\n\
forwards messages between gateways. Ships hardened systemd units, example configuration in\n\
/etc/imgate and the imgate client/tool.")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://imgate.invalid/")
set(CPACK_RESOURCE_FILE_README ${PROJECT_SOURCE_DIR}/README.md)
set(CPACK_STRIP_FILES ON)

# The .deb always installs to /usr, whatever CMAKE_INSTALL_PREFIX the build tree was configured
# with; configs go to /etc/imgate (absolute install destinations, see ImgateInstall.cmake).
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Shared-library dependencies (libssl3, libyaml-cpp, libspdlog, libsystemd0, ...) are computed by
# dpkg-shlibdeps from the binaries; the maintainer scripts need only essential packages
# (passwd for useradd), systemd-sysusers is used when present.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd, curl")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${IMGATE_DEB_CONFFILES}
  ${PROJECT_SOURCE_DIR}/config/debian/postinst
  ${PROJECT_SOURCE_DIR}/config/debian/prerm
  ${PROJECT_SOURCE_DIR}/config/debian/postrm)
set(CPACK_GENERATOR DEB)
include(CPack)

# The Debian package (cpack -G DEB in the build directory): the orch program,
# the library's headers and CMake package files, and `orch serve` as a
# hardened systemd service running as its own system user (packaging/).
#
# The service files are install component "service", left out of a plain
# `cmake --install` (a from-source install does not write /etc or create
# units); the package holds every component.
set(ORCH_PACKAGING_DIR ${PROJECT_SOURCE_DIR}/packaging)
install(FILES ${ORCH_PACKAGING_DIR}/systemd/orch.service
  DESTINATION lib/systemd/system COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${ORCH_PACKAGING_DIR}/config.json
  DESTINATION /etc/orch COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${ORCH_PACKAGING_DIR}/default
  DESTINATION /etc/default RENAME orch COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/LICENSE
  DESTINATION share/doc/orch COMPONENT service EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/docs/openapi.json
  DESTINATION share/doc/orch COMPONENT service EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME orch)
set(CPACK_PACKAGE_VENDOR "orch")
set(CPACK_PACKAGE_CONTACT "orch maintainers <orch@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "graph-based workflow orchestration engine for AI agents")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
# The program without its debug information (the static libraries keep theirs).
set(CPACK_STRIP_FILES ON)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
set(CPACK_COMPONENTS_ALL Unspecified service)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# useradd and getent (passwd, libc-bin) are essential; systemd is not required
# (the program runs anywhere; the unit is there for systemd hosts).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${ORCH_PACKAGING_DIR}/debian/postinst ${ORCH_PACKAGING_DIR}/debian/prerm
  ${ORCH_PACKAGING_DIR}/debian/postrm ${ORCH_PACKAGING_DIR}/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)

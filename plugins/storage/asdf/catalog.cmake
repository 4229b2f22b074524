# catalog.cmake -- the session catalog (catalog.h) as a static library,
# dcbus-asdf-catalog, linked by the asdf plugin and by the dcbus CLI
# (`dcbus catalog`).  Included from cli/CMakeLists.txt and from this
# folder's CMakeLists.txt; the first include defines the target.
include_guard(GLOBAL)
pkg_check_modules(SQLITE3 REQUIRED IMPORTED_TARGET sqlite3)
set(DCBUS_ASDF_CATALOG_DIR ${CMAKE_CURRENT_LIST_DIR})
add_library(dcbus-asdf-catalog STATIC
  ${CMAKE_CURRENT_LIST_DIR}/catalog.c
  ${CMAKE_CURRENT_LIST_DIR}/catalog_header.c
  ${CMAKE_CURRENT_LIST_DIR}/catalog_walk.c)
set_target_properties(dcbus-asdf-catalog PROPERTIES
  POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
target_include_directories(dcbus-asdf-catalog PUBLIC ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(dcbus-asdf-catalog PUBLIC PkgConfig::YAML PkgConfig::SQLITE3)

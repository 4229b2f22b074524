# Writes OUTPUT, a C file holding every migration file under MIGRATIONS_DIR
# (<profile>/NNN_name.sql) as a byte array.  Run at build time by
# CMakeLists.txt whenever a migration file changes.
file(GLOB files RELATIVE ${MIGRATIONS_DIR} ${MIGRATIONS_DIR}/*/*.sql)
list(SORT files)
set(arrays "")
set(entries "")
set(n 0)
foreach(rel ${files})
  if(NOT rel MATCHES "^([a-z]+)/([0-9][0-9][0-9])_([a-z0-9_]+)\\.sql$")
    message(FATAL_ERROR "migration ${rel}: expected <profile>/NNN_name.sql")
  endif()
  set(profile ${CMAKE_MATCH_1})
  set(version ${CMAKE_MATCH_2})
  set(name ${CMAKE_MATCH_3})
  file(READ ${MIGRATIONS_DIR}/${rel} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND arrays "static const char m${n}[] = {${bytes}0x00};\n")
  string(APPEND entries "    {\"${profile}\", \"${version}\", \"${name}\", m${n}},\n")
  math(EXPR n "${n} + 1")
endforeach()
file(WRITE ${OUTPUT}.tmp
"/* Generated from plugins/storage/postgres/migrations by embed_migrations.cmake. */
#include \"pgmigrations.h\"

${arrays}
const dcb_pg_migration_file_t dcb_pg_migration_files[] = {
${entries}};
const size_t dcb_pg_migration_file_count = ${n};
")
configure_file(${OUTPUT}.tmp ${OUTPUT} COPYONLY) # rewrites only on change
file(REMOVE ${OUTPUT}.tmp)

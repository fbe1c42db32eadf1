# Writes OUT (a .cc file) holding every migrations/<service>/NNNN_name.sql of
# DIR as eventstream::Migration values, returned by FUNC().
# Run with: cmake -DDIR=... -DOUT=... -DFUNC=... -P embed_migrations.cmake
file(GLOB files "${DIR}/*.sql")
list(SORT files)
set(body "")
foreach(f ${files})
  get_filename_component(stem ${f} NAME_WE)
  string(REGEX MATCH "^([0-9]+)_(.*)$" _ ${stem})
  if(NOT CMAKE_MATCH_1)
    message(FATAL_ERROR "migration ${f}: name must be NNNN_name.sql")
  endif()
  math(EXPR version "${CMAKE_MATCH_1}")
  file(READ ${f} sql)
  string(APPEND body "      {${version}, \"${CMAKE_MATCH_2}\", R\"es_sql(${sql})es_sql\"},\n")
endforeach()
file(WRITE ${OUT}.tmp
"// Generated from ${DIR} by cmake/embed_migrations.cmake. Do not edit.
#include \"libsync/base/migrate.h\"

namespace eventstream {

const std::vector<Migration>& ${FUNC}() {
  static const auto* migrations = new std::vector<Migration>{
${body}  };
  return *migrations;
}

}  // namespace eventstream
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)

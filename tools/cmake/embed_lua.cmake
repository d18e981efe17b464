# Writes OUTPUT: a C file holding each Lua helper in LIBS (a comma-separated list
# of name=path) as a NUL-terminated array named jn_lua_lib_<name>.
set(body "/* Generated from connectors/lib at build time. Do not edit. */\n")
string(REPLACE "," ";" LIBS "${LIBS}")
foreach(entry ${LIBS})
  string(REPLACE "=" ";" parts "${entry}")
  list(GET parts 0 name)
  list(GET parts 1 path)
  file(READ "${path}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND body "const char jn_lua_lib_${name}[] = {${hex}0x00};\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "${body}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)

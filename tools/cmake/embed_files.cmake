# Writes OUTPUT: a C file holding each file of FILES (a comma-separated list of
# name=path) as a NUL-terminated array named <PREFIX><name>.
set(body "/* Generated at build time from the files named below. Do not edit. */\n")
string(REPLACE "," ";" FILES "${FILES}")
foreach(entry ${FILES})
  string(REPLACE "=" ";" parts "${entry}")
  list(GET parts 0 name)
  list(GET parts 1 path)
  file(READ "${path}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND body "const char ${PREFIX}${name}[] = {${hex}0x00};\n")
endforeach()
file(WRITE "${OUTPUT}.tmp" "${body}")
file(COPY_FILE "${OUTPUT}.tmp" "${OUTPUT}" ONLY_IF_DIFFERENT)

/* Pure-Lua helpers from connectors/lib, embedded into the binary at build time
 * so the sandbox never reads them from disk. */
#ifndef JUNCTION_LUA_LIBS_H
#define JUNCTION_LUA_LIBS_H

extern const char jn_lua_lib_ctx[];
extern const char jn_lua_lib_paginate[];

#endif

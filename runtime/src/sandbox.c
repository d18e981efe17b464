#include "sandbox.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>

#include "junction/clock.h"

/* Instructions between two budget checks. A check reads the thread's CPU
 * clock (a system call, about half a microsecond); at this interval that is
 * under 1% of interpreter time and a runaway loop is stopped within ~100 us
 * of its budget. CPU time rather than wall time: waiting for the disk or for
 * another process on the same core is not the connector's doing. */
#define SANDBOX_HOOK_INTERVAL 16384

struct jn_sandbox {
    lua_State *L;
    size_t used;
    size_t peak;
    size_t limit; /* 0 while the state is being set up */
    int cap_suspended;
    int mem_exhausted;
    uint64_t cpu_limit_ns;
    uint64_t cpu_used_ns;
    uint64_t slice_deadline_ns; /* when the current resume runs out of CPU budget */
    uint64_t wall_deadline_ns;
    const char *stop_reason;
    int env_ref;
    size_t idle_live; /* heap after the last jn_sandbox_idle collection */
};

/* The policy, as data. Globals copied from the base library into the
 * sandbox's environment; everything else (load*, dofile, require, module,
 * getfenv/setfenv, collectgarbage, newproxy, rawset/rawget, gcinfo, print,
 * io, os, debug, ffi, jit, package) is simply never copied. rawset and rawget
 * would bypass the read-only proxies, so they stay out. */
static const char *const sandbox_globals[] = {
    "assert",   "error", "ipairs", "next",     "pairs",        "pcall",        "select", "tonumber",
    "tostring", "type",  "unpack", "rawequal", "getmetatable", "setmetatable", NULL};

typedef struct {
    const char *name;
    const char *const *fields; /* NULL: every field */
} sandbox_lib_t;

static const char *const string_fields[] = {"byte",    "char", "find",  "format", "gmatch",
                                            "gsub",    "len",  "lower", "match",  "rep",
                                            "reverse", "sub",  "upper", NULL}; /* no dump */
static const char *const os_fields[] = {"time", "clock", "date", "difftime", NULL};

static const luaL_Reg sandbox_openers[] = {
    {"", luaopen_base},
    {LUA_STRLIBNAME, luaopen_string},
    {LUA_TABLIBNAME, luaopen_table},
    {LUA_MATHLIBNAME, luaopen_math},
    {LUA_BITLIBNAME, luaopen_bit},
    {LUA_OSLIBNAME, luaopen_os},
    {NULL, NULL},
};

static const sandbox_lib_t sandbox_libs[] = {
    {"string", string_fields}, {"table", NULL}, {"math", NULL},
    {"coroutine", NULL},       {"bit", NULL},   {"os", os_fields},
};

/* ---- small objects --------------------------------------------------------
 * Most of a Lua heap is objects of at most 256 bytes (strings, tables,
 * closures, upvalues). They come from 4 KiB pages in 16-byte size classes,
 * with no per-object header, shared by all the states of a thread (as malloc
 * shares its heap: a slot one job freed serves the next allocation of any
 * job, so thousands of half-empty per-job pages never pile up). Thousands of
 * states thus do not interleave their small objects in malloc's heap (which
 * made every medium-sized malloc slow) and do not pay malloc's per-object
 * overhead. Larger blocks (table parts, long strings, stacks) come from
 * malloc. LuaJIT passes every block's exact size on realloc and free, which is
 * how a block's kind and class are known; the page header is found by
 * aligning the address down. An empty page goes back to the pool, for any
 * class; beyond SLAB_POOL_HOT free pages they are given back to the system
 * with MADV_DONTNEED (their address range stays in the pool). Isolation does
 * not rest on addresses: it did not with malloc either. */

#define SLAB_PAGE_SIZE 4096u
#define SLAB_HEADER 32u /* sizeof(slab_page_t), rounded up: slots stay 16-byte aligned */
#define SLAB_MAX 256u
#define SLAB_CLASSES (SLAB_MAX / 16)
#define SLAB_CHUNK_PAGES 64u       /* pages reserved from the system at once */
#define SLAB_POOL_HOT (16u * 1024) /* free pages kept resident (64 MiB) */

/* Sanitizer builds use malloc for every block, so that ASan sees each object. */
#if defined(__SANITIZE_ADDRESS__)
#define SANDBOX_SLAB 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANDBOX_SLAB 0
#endif
#endif
#ifndef SANDBOX_SLAB
#define SANDBOX_SLAB 1
#endif

typedef struct slab_page {
    struct slab_page *prev, *next; /* in its class's partial list, or the pool's hot list */
    void *free;                    /* freed slots */
    uint32_t bump;                 /* offset of the first never-used slot */
    uint16_t live;
    uint16_t cls;
} slab_page_t;

typedef char slab_header_fits[sizeof(slab_page_t) <= SLAB_HEADER ? 1 : -1];

static _Thread_local struct {
    slab_page_t *partial[SLAB_CLASSES]; /* pages with a free slot, per size class */
    slab_page_t *hot;                   /* resident free pages */
    size_t nhot;
    void **cold; /* free pages given back to the system */
    size_t ncold, cold_cap;
    char *fresh; /* never used pages of the last chunk */
    size_t nfresh;
} slab_pool;

static slab_page_t *slab_page_get(void)
{
    slab_page_t *pg;
    void *chunk;

    if ((pg = slab_pool.hot) != NULL) {
        slab_pool.hot = pg->next;
        slab_pool.nhot--;
        return pg;
    }
    if (slab_pool.ncold)
        return slab_pool.cold[--slab_pool.ncold];
    if (slab_pool.nfresh == 0) {
        chunk = mmap(NULL, (size_t)SLAB_CHUNK_PAGES * SLAB_PAGE_SIZE, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (chunk == MAP_FAILED)
            return NULL;
        slab_pool.fresh = chunk;
        slab_pool.nfresh = SLAB_CHUNK_PAGES;
    }
    pg = (slab_page_t *)slab_pool.fresh;
    slab_pool.fresh += SLAB_PAGE_SIZE;
    slab_pool.nfresh--;
    return pg;
}

static void slab_page_put(slab_page_t *pg)
{
    void **cold;

    if (slab_pool.nhot >= SLAB_POOL_HOT) {
        if (slab_pool.ncold == slab_pool.cold_cap) {
            size_t cap = slab_pool.cold_cap ? 2 * slab_pool.cold_cap : 1024;
            cold = realloc(slab_pool.cold, cap * sizeof(*cold));
            if (cold != NULL) {
                slab_pool.cold = cold;
                slab_pool.cold_cap = cap;
            }
        }
        if (slab_pool.ncold < slab_pool.cold_cap) {
            madvise(pg, SLAB_PAGE_SIZE, MADV_DONTNEED);
            slab_pool.cold[slab_pool.ncold++] = pg;
            return;
        }
    }
    pg->next = slab_pool.hot;
    slab_pool.hot = pg;
    slab_pool.nhot++;
}

static size_t slab_size(unsigned cls)
{
    return ((size_t)cls + 1) * 16;
}

static int slab_full(const slab_page_t *pg)
{
    return pg->free == NULL && pg->bump + slab_size(pg->cls) > SLAB_PAGE_SIZE;
}

static void slab_unlink(slab_page_t *pg)
{
    if (pg->prev)
        pg->prev->next = pg->next;
    else
        slab_pool.partial[pg->cls] = pg->next;
    if (pg->next)
        pg->next->prev = pg->prev;
    pg->prev = pg->next = NULL;
}

static void slab_link(slab_page_t *pg)
{
    pg->prev = NULL;
    pg->next = slab_pool.partial[pg->cls];
    if (pg->next)
        pg->next->prev = pg;
    slab_pool.partial[pg->cls] = pg;
}

/* 1 <= n <= SLAB_MAX */
static void *slab_alloc(size_t n)
{
    unsigned cls = (unsigned)((n - 1) / 16);
    slab_page_t *pg = slab_pool.partial[cls];
    void *p;

    if (pg == NULL) {
        pg = slab_page_get();
        if (pg == NULL)
            return NULL;
        pg->free = NULL;
        pg->bump = SLAB_HEADER;
        pg->live = 0;
        pg->cls = (uint16_t)cls;
        slab_link(pg);
    }
    if (pg->free != NULL) {
        p = pg->free;
        pg->free = *(void **)p;
    } else {
        p = (char *)pg + pg->bump;
        pg->bump += (uint32_t)slab_size(cls);
    }
    pg->live++;
    if (slab_full(pg))
        slab_unlink(pg);
    return p;
}

static void slab_free(void *p)
{
    slab_page_t *pg = (slab_page_t *)((uintptr_t)p & ~(uintptr_t)(SLAB_PAGE_SIZE - 1));
    int was_full = slab_full(pg);

    *(void **)p = pg->free;
    pg->free = p;
    if (--pg->live == 0) {
        if (!was_full)
            slab_unlink(pg);
        slab_page_put(pg);
    } else if (was_full) {
        slab_link(pg);
    }
}

/* realloc over both kinds: osize and nsize are exact (0 osize: new block) */
static void *sandbox_realloc(void *ptr, size_t osize, size_t nsize)
{
    void *p;

    if (!SANDBOX_SLAB)
        return realloc(ptr, nsize);
    if (ptr == NULL)
        return nsize <= SLAB_MAX ? slab_alloc(nsize) : malloc(nsize);
    if (osize > SLAB_MAX && nsize > SLAB_MAX)
        return realloc(ptr, nsize);
    if (osize <= SLAB_MAX && nsize <= SLAB_MAX && (osize - 1) / 16 == (nsize - 1) / 16)
        return ptr;
    p = nsize <= SLAB_MAX ? slab_alloc(nsize) : malloc(nsize);
    if (p == NULL)
        return NULL;
    memcpy(p, ptr, osize < nsize ? osize : nsize);
    if (osize <= SLAB_MAX)
        slab_free(ptr);
    else
        free(ptr);
    return p;
}

static void sandbox_free(void *ptr, size_t osize)
{
    if (!SANDBOX_SLAB || osize > SLAB_MAX)
        free(ptr);
    else if (ptr != NULL)
        slab_free(ptr);
}

static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    jn_sandbox_t *sb = ud;
    void *p;

    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        sandbox_free(ptr, osize);
        sb->used -= osize;
        return NULL;
    }
    if (nsize > osize && sb->limit && !sb->cap_suspended &&
        sb->used + (nsize - osize) > sb->limit) {
        sb->mem_exhausted = 1;
        return NULL;
    }
    p = sandbox_realloc(ptr, osize, nsize);
    if (p == NULL)
        return NULL;
    sb->used = sb->used - osize + nsize;
    if (sb->used > sb->peak)
        sb->peak = sb->used;
    return p;
}

static void sandbox_hook(lua_State *L, lua_Debug *ar)
{
    void *ud;
    jn_sandbox_t *sb;
    uint64_t now;

    (void)ar;
    lua_getallocf(L, &ud);
    sb = ud;
    if (sb->stop_reason == NULL) {
        now = jn_thread_cpu_ns();
        if (sb->slice_deadline_ns && now >= sb->slice_deadline_ns)
            sb->stop_reason = "CPU budget exceeded";
        else if (sb->wall_deadline_ns && jn_mono_ns() >= sb->wall_deadline_ns)
            sb->stop_reason = "wall-clock timeout exceeded";
        else
            return;
        /* From now on every instruction raises, so that a script catching
         * the error with pcall cannot carry on. */
        lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "%s", sb->stop_reason);
}

static int sandbox_readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table (field '%s')",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

void jn_sandbox_readonly(lua_State *L)
{
    /* stack: t */
    lua_newtable(L);          /* stack: t proxy */
    lua_createtable(L, 0, 3); /* stack: t proxy mt */
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, sandbox_readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2); /* stack: t proxy */
    lua_replace(L, -2);      /* stack: proxy */
}

/* stack: env -> env (with a filtered, read-only copy of library `lib`) */
static void sandbox_copy_lib(lua_State *L, const sandbox_lib_t *lib)
{
    const char *const *f;

    lua_getglobal(L, lib->name); /* stack: env orig */
    lua_newtable(L);             /* stack: env orig copy */
    if (lib->fields == NULL) {
        lua_pushnil(L);
        while (lua_next(L, -3) != 0) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    } else {
        for (f = lib->fields; *f; f++) {
            lua_getfield(L, -2, *f);
            lua_setfield(L, -2, *f);
        }
    }
    if (strcmp(lib->name, "string") == 0) {
        /* Strings index the filtered copy (no dump); getmetatable("") gives false. */
        lua_pushliteral(L, "");
        lua_getmetatable(L, -1); /* stack: env orig copy "" smt */
        lua_pushvalue(L, -3);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 2); /* stack: env orig copy */
    }
    jn_sandbox_readonly(L); /* stack: env orig proxy */
    lua_setfield(L, -3, lib->name);
    lua_pop(L, 1); /* stack: env */
}

/* connector { ... }: the declaration every connector file starts with. It
 * returns the metadata table itself, so the connector's functions are added
 * to the same table; the loader validates the fields once the file returns. */
static int sandbox_connector(lua_State *L)
{
    if (lua_type(L, 1) != LUA_TTABLE)
        return luaL_error(L,
                          "connector: expected the metadata table, as in "
                          "connector { provider_type = \"github\", ... }, got %s",
                          luaL_typename(L, 1));
    lua_settop(L, 1);
    return 1;
}

/* xpcall with the handler run after the stack unwound, as an ordinary call.
 * LuaJIT's own xpcall calls the handler again for an error raised inside the
 * handler; once the CPU budget is spent every instruction raises, so a
 * handler would be re-entered forever and the job never stopped. Without the
 * debug library a handler cannot inspect the failing frame anyway. */
static const char sandbox_xpcall[] =
    "local pcall, select, type, error = pcall, select, type, error\n"
    "local function finish(handler, ok, ...)\n"
    "  if ok then return true, ... end\n"
    "  return false, handler((...))\n"
    "end\n"
    "return function(f, handler, ...)\n"
    "  if type(handler) ~= 'function' then error('bad argument #2 to xpcall', 2) end\n"
    "  return finish(handler, pcall(f, ...))\n"
    "end\n";

static int sandbox_setup(lua_State *L)
{
    jn_sandbox_t *sb = lua_touserdata(L, 1);
    const char *const *g;
    const luaL_Reg *lib;
    size_t i;

    /* Only the libraries the policy copies from (luaopen_base also opens
     * coroutine): package, io, debug, jit and ffi never exist in the state,
     * and each state is some 7 KiB smaller. */
    for (lib = sandbox_openers; lib->func; lib++) {
        lua_pushcfunction(L, lib->func);
        lua_pushstring(L, lib->name);
        lua_call(L, 1, 0);
    }
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    lua_newtable(L); /* stack: sb env */
    for (g = sandbox_globals; *g; g++) {
        lua_getglobal(L, *g);
        lua_setfield(L, -2, *g);
    }
    lua_pushcfunction(L, sandbox_connector);
    lua_setfield(L, -2, "connector");
    lua_pushliteral(L, LUA_VERSION);
    lua_setfield(L, -2, "_VERSION");
    for (i = 0; i < sizeof(sandbox_libs) / sizeof(sandbox_libs[0]); i++)
        sandbox_copy_lib(L, &sandbox_libs[i]);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    if (luaL_loadbuffer(L, sandbox_xpcall, sizeof(sandbox_xpcall) - 1, "=xpcall") != 0)
        return lua_error(L);
    lua_pushvalue(L, -2);
    lua_setfenv(L, -2);
    lua_call(L, 0, 1);
    lua_setfield(L, -2, "xpcall");
    sb->env_ref = luaL_ref(L, LUA_REGISTRYINDEX); /* stack: sb */
    return 0;
}

jn_sandbox_t *jn_sandbox_create(const jn_sandbox_limits_t *limits, char *err, size_t errlen)
{
    jn_sandbox_t *sb = calloc(1, sizeof(*sb));

    if (sb == NULL)
        goto fail;
    sb->L = lua_newstate(sandbox_alloc, sb);
    if (sb->L == NULL)
        goto fail;
    if (lua_cpcall(sb->L, sandbox_setup, sb) != 0) {
        snprintf(err, errlen, "sandbox setup failed: %s", lua_tostring(sb->L, -1));
        lua_close(sb->L);
        free(sb);
        return NULL;
    }
    lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT, SANDBOX_HOOK_INTERVAL);
    sb->cpu_limit_ns = limits->cpu_ns;
    sb->limit = sb->used + limits->memory_bytes;
    return sb;
fail:
    snprintf(err, errlen, "out of memory creating a sandbox");
    free(sb);
    return NULL;
}

void jn_sandbox_destroy(jn_sandbox_t *sb)
{
    if (sb == NULL)
        return;
    sb->cap_suspended = 1;
    lua_close(sb->L);
    free(sb);
}

lua_State *jn_sandbox_state(jn_sandbox_t *sb)
{
    return sb->L;
}

jn_sandbox_t *jn_sandbox_from_state(lua_State *L)
{
    void *ud;

    lua_getallocf(L, &ud);
    return ud;
}

void jn_sandbox_push_env(jn_sandbox_t *sb, lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, sb->env_ref);
}

int jn_sandbox_load(jn_sandbox_t *sb, lua_State *L, const char *chunkname, const char *src,
                    size_t len, char *err, size_t errlen)
{
    int rc;

    if (len > 0 && src[0] == LUA_SIGNATURE[0]) {
        snprintf(err, errlen, "%s: precompiled bytecode is refused; ship Lua source text",
                 chunkname);
        return -1;
    }
    rc = luaL_loadbufferx(L, src, len, chunkname, "t");
    if (rc != 0) {
        snprintf(err, errlen, "%s", jn_sandbox_error_string(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    jn_sandbox_push_env(sb, L);
    lua_setfenv(L, -2);
    return 0;
}

static void sandbox_slice_begin(jn_sandbox_t *sb, uint64_t *start)
{
    *start = jn_thread_cpu_ns();
    sb->mem_exhausted = 0;
    if (sb->cpu_limit_ns == 0)
        sb->slice_deadline_ns = 0;
    else if (sb->cpu_used_ns >= sb->cpu_limit_ns)
        sb->slice_deadline_ns = *start; /* already spent: stop at the first check */
    else
        sb->slice_deadline_ns = *start + (sb->cpu_limit_ns - sb->cpu_used_ns);
}

static void sandbox_slice_end(jn_sandbox_t *sb, uint64_t start)
{
    sb->cpu_used_ns += jn_thread_cpu_ns() - start;
}

int jn_sandbox_resume(jn_sandbox_t *sb, lua_State *co, int nargs)
{
    uint64_t start;
    int rc;

    sandbox_slice_begin(sb, &start);
    rc = lua_resume(co, nargs);
    sandbox_slice_end(sb, start);
    return rc;
}

int jn_sandbox_pcall(jn_sandbox_t *sb, lua_State *L, int nargs, int nresults)
{
    uint64_t start;
    int rc;

    sandbox_slice_begin(sb, &start);
    rc = lua_pcall(L, nargs, nresults, 0);
    sandbox_slice_end(sb, start);
    return rc;
}

void jn_sandbox_set_deadline(jn_sandbox_t *sb, uint64_t mono_deadline_ns)
{
    sb->wall_deadline_ns = mono_deadline_ns;
}

const char *jn_sandbox_stop_reason(const jn_sandbox_t *sb)
{
    return sb->stop_reason;
}

void jn_sandbox_cap_suspend(jn_sandbox_t *sb)
{
    sb->cap_suspended++;
}

void jn_sandbox_cap_resume(jn_sandbox_t *sb)
{
    sb->cap_suspended--;
}

size_t jn_sandbox_memory_used(const jn_sandbox_t *sb)
{
    return sb->used;
}

size_t jn_sandbox_memory_remaining(const jn_sandbox_t *sb)
{
    return sb->used >= sb->limit ? 0 : sb->limit - sb->used;
}

size_t jn_sandbox_memory_peak(const jn_sandbox_t *sb)
{
    return sb->peak;
}

uint64_t jn_sandbox_cpu_used_ns(const jn_sandbox_t *sb)
{
    return sb->cpu_used_ns;
}

int jn_sandbox_memory_exhausted(const jn_sandbox_t *sb)
{
    return sb->mem_exhausted;
}

const char *jn_sandbox_error_string(lua_State *L, int idx)
{
    const char *msg;

    switch (lua_type(L, idx)) {
    case LUA_TSTRING:
        return lua_tostring(L, idx);
    case LUA_TNUMBER:
        return lua_tostring(L, idx); /* converts the slot in place */
    case LUA_TTABLE:
        /* Never call __tostring: it is connector code running outside any budget. */
        lua_pushliteral(L, "message");
        lua_rawget(L, idx < 0 ? idx - 1 : idx);
        if (lua_type(L, -1) == LUA_TSTRING) {
            msg = lua_tostring(L, -1);
            lua_pop(L, 1); /* the table still references the string */
            return msg;
        }
        lua_pop(L, 1);
        return "(error object is a table without a string 'message' field)";
    case LUA_TNIL:
        return "(error object is nil)";
    default:
        return lua_typename(L, lua_type(L, idx));
    }
}

/* Collect when the heap grew by this much (and by half) since the last
 * collection at a wait: below that a collection costs more than it returns. */
#define SANDBOX_IDLE_GC_MIN_GROWTH (16 * 1024)

void jn_sandbox_idle(jn_sandbox_t *sb)
{
    size_t growth = sb->idle_live / 2;

    if (growth < SANDBOX_IDLE_GC_MIN_GROWTH)
        growth = SANDBOX_IDLE_GC_MIN_GROWTH;
    if (sb->used < sb->idle_live + growth)
        return;
    lua_gc(sb->L, LUA_GCCOLLECT, 0);
    sb->idle_live = sb->used;
}

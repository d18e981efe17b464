/* The sandbox: one LuaJIT state per running job.
 *
 * A state is created with an allocator that enforces a memory cap, the JIT
 * compiler off (so the instruction-count hook that enforces the CPU budget
 * also fires inside loops that would otherwise run as compiled traces), and a
 * fresh global environment holding only the allowed functions. Library tables
 * and the string metatable are reachable only through read-only proxies.
 * Chunks are loaded from text only; bytecode is refused.
 */
#ifndef JUNCTION_SANDBOX_H
#define JUNCTION_SANDBOX_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

typedef struct {
    size_t memory_bytes; /* cap on the state's heap, on top of its baseline */
    uint64_t cpu_ns;     /* CPU the state's Lua code may use in all (0: no cap) */
} jn_sandbox_limits_t;

typedef struct jn_sandbox jn_sandbox_t;

jn_sandbox_t *jn_sandbox_create(const jn_sandbox_limits_t *limits, char *err, size_t errlen);
void jn_sandbox_destroy(jn_sandbox_t *sb);
lua_State *jn_sandbox_state(jn_sandbox_t *sb);
/* The sandbox a state belongs to (any thread of it). */
jn_sandbox_t *jn_sandbox_from_state(lua_State *L);

/* Compile `src` as a text chunk and push it as a function whose environment is
 * the sandbox's global table. On failure pushes nothing, returns -1, err set. */
int jn_sandbox_load(jn_sandbox_t *sb, lua_State *L, const char *chunkname, const char *src,
                    size_t len, char *err, size_t errlen);
/* Push the sandbox's global table. */
void jn_sandbox_push_env(jn_sandbox_t *sb, lua_State *L);
/* Wrap the table on top of the stack in a read-only proxy (replaces it). */
void jn_sandbox_readonly(lua_State *L);

/* Resume `co` with `nargs` arguments under the CPU budget and the wall-clock
 * deadline. Returns lua_resume's status. */
int jn_sandbox_resume(jn_sandbox_t *sb, lua_State *co, int nargs);
/* lua_pcall under the budget. */
int jn_sandbox_pcall(jn_sandbox_t *sb, lua_State *L, int nargs, int nresults);

/* Absolute monotonic deadline (jn_mono_ns) after which running code is
 * stopped; 0 for none. */
void jn_sandbox_set_deadline(jn_sandbox_t *sb, uint64_t mono_deadline_ns);
/* Why the last resume or pcall was stopped: NULL, or a fixed message. */
const char *jn_sandbox_stop_reason(const jn_sandbox_t *sb);

/* While C code pushes values outside a protected call an allocation failure
 * would abort the process, so the cap is lifted for that moment; the next
 * allocation by Lua code over the cap fails as usual. */
void jn_sandbox_cap_suspend(jn_sandbox_t *sb);
void jn_sandbox_cap_resume(jn_sandbox_t *sb);

/* The job is about to wait (HTTP, sleep). Its state's garbage would stay
 * until the job allocates again, which may be long: thousands of waiting jobs
 * would each hold the last page they decoded. Runs a full collection when the
 * heap grew markedly since the last one. Call from inside the job's Lua code
 * (a ctx primitive), so the work counts against its CPU budget. */
void jn_sandbox_idle(jn_sandbox_t *sb);

size_t jn_sandbox_memory_used(const jn_sandbox_t *sb);
/* Bytes the state may still allocate before the cap refuses. */
size_t jn_sandbox_memory_remaining(const jn_sandbox_t *sb);
size_t jn_sandbox_memory_peak(const jn_sandbox_t *sb);
uint64_t jn_sandbox_cpu_used_ns(const jn_sandbox_t *sb);
/* 1 when the last failure was the memory cap. */
int jn_sandbox_memory_exhausted(const jn_sandbox_t *sb);

/* Describe the error value on top of L (without calling any metamethod). */
const char *jn_sandbox_error_string(lua_State *L, int idx);

#endif

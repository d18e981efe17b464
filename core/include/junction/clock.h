/* Time helpers. */
#ifndef JUNCTION_CLOCK_H
#define JUNCTION_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, milliseconds since the Unix epoch. */
int64_t jn_now_ms(void);
/* Monotonic clock in nanoseconds. */
uint64_t jn_mono_ns(void);
/* CPU time of the calling thread in nanoseconds. */
uint64_t jn_thread_cpu_ns(void);
/* RFC 3339 UTC with milliseconds: "2026-11-25T16:55:09.123Z"; buf >= 25 bytes. */
const char *jn_format_rfc3339(int64_t ms, char *buf, size_t len);

#endif

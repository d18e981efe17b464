#include "junction/clock.h"

#include <stdio.h>
#include <time.h>

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;

    /* These clocks cannot fail on Linux for a valid id; keep 0 as a safe value. */
    if (clock_gettime(id, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t jn_now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t jn_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t jn_thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

const char *jn_format_rfc3339(int64_t ms, char *buf, size_t len)
{
    /* Floor division so that times before the epoch keep a positive millisecond part. */
    int64_t sec = ms / 1000, frac = ms % 1000;
    struct tm tm;
    time_t t;

    if (buf == NULL || len == 0)
        return buf;
    if (frac < 0) {
        frac += 1000;
        sec -= 1;
    }
    t = (time_t)sec;
    if (gmtime_r(&t, &tm) == NULL) {
        buf[0] = '\0';
        return buf;
    }
    snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)frac);
    return buf;
}

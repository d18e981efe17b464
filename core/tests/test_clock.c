#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <time.h>

#include "junction/clock.h"

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static void test_rfc3339_fixed_values(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(jn_format_rfc3339(0, buf, sizeof(buf)), "1970-01-01T00:00:00.000Z");
    assert_string_equal(jn_format_rfc3339(1795625709123LL, buf, sizeof(buf)),
                        "2026-11-25T16:55:09.123Z");
    assert_string_equal(jn_format_rfc3339(951868799999LL, buf, sizeof(buf)),
                        "2000-02-29T23:59:59.999Z");
    assert_string_equal(jn_format_rfc3339(253402300799999LL, buf, sizeof(buf)),
                        "9999-12-31T23:59:59.999Z");
    assert_string_equal(jn_format_rfc3339(7, buf, sizeof(buf)), "1970-01-01T00:00:00.007Z");
}

static void test_rfc3339_before_epoch(void **state)
{
    char buf[32];

    (void)state;
    assert_string_equal(jn_format_rfc3339(-1, buf, sizeof(buf)), "1969-12-31T23:59:59.999Z");
    assert_string_equal(jn_format_rfc3339(-1000, buf, sizeof(buf)), "1969-12-31T23:59:59.000Z");
}

static void test_rfc3339_exact_buffer(void **state)
{
    char buf[25];

    (void)state;
    memset(buf, 'x', sizeof(buf));
    jn_format_rfc3339(1795625709123LL, buf, sizeof(buf));
    assert_int_equal(strlen(buf), 24);
    assert_string_equal(buf, "2026-11-25T16:55:09.123Z");
}

static void test_now_matches_time(void **state)
{
    int attempt, ok = 0;

    (void)state;
    /* time() reads a coarse clock and the wall clock may be stepped between
     * two reads (NTP on a virtual machine): a few attempts tell a real
     * mismatch from a step that happened to fall between the reads. */
    for (attempt = 0; attempt < 5 && !ok; attempt++) {
        int64_t before = (int64_t)time(NULL) * 1000, now = jn_now_ms();
        int64_t after = (int64_t)time(NULL) * 1000 + 1000;

        ok = now >= before && now <= after;
    }
    assert_true(ok);
}

static void test_mono_is_monotonic(void **state)
{
    uint64_t prev = jn_mono_ns(), cur, start;
    int i;

    (void)state;
    for (i = 0; i < 100000; i++) {
        cur = jn_mono_ns();
        assert_true(cur >= prev);
        prev = cur;
    }
    start = jn_mono_ns();
    sleep_ms(20);
    assert_true(jn_mono_ns() - start >= 20000000u);
}

static void test_thread_cpu_counts_work_not_sleep(void **state)
{
    volatile uint64_t sink = 0;
    uint64_t start = jn_thread_cpu_ns(), mid, end;

    (void)state;
    while (jn_thread_cpu_ns() - start < 20000000u)
        sink += 1;
    mid = jn_thread_cpu_ns();
    assert_true(mid - start >= 20000000u);
    sleep_ms(100);
    end = jn_thread_cpu_ns();
    assert_true(end >= mid);
    assert_true(end - mid < 50000000u);
    (void)sink;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc3339_fixed_values),
        cmocka_unit_test(test_rfc3339_before_epoch),
        cmocka_unit_test(test_rfc3339_exact_buffer),
        cmocka_unit_test(test_now_matches_time),
        cmocka_unit_test(test_mono_is_monotonic),
        cmocka_unit_test(test_thread_cpu_counts_work_not_sleep),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

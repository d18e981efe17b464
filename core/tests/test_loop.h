/* Runs a test fixture's libuv loop until a condition holds (included, like
 * test_tmpdir.h; needs <cmocka.h> and <uv.h>). The fixture `f` has
 * `uv_loop_t loop`, `uv_timer_t ticker` and `int ticks`; the file defines
 * `on_tick` (counting f->ticks), TICK_MS and WATCHDOG_MS. The ticks only
 * guard against a hang: nothing is timed. */
#ifndef JUNCTION_TEST_LOOP_H
#define JUNCTION_TEST_LOOP_H

#define RUN_UNTIL(f, cond)                                                                         \
    do {                                                                                           \
        (f)->ticks = 0;                                                                            \
        uv_timer_start(&(f)->ticker, on_tick, TICK_MS, TICK_MS);                                   \
        while (!(cond) && (f)->ticks < WATCHDOG_MS / TICK_MS)                                      \
            uv_run(&(f)->loop, UV_RUN_ONCE);                                                       \
        uv_timer_stop(&(f)->ticker);                                                               \
        assert_true(cond);                                                                         \
    } while (0)

#endif

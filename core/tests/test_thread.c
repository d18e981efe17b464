/* jn_thread_background (core/src/thread.c): the calling thread, and only it,
 * becomes a SCHED_BATCH thread with its nice value unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "junction/thread.h"

typedef struct {
    int rc, policy, nice_before, nice_after;
} seen_t;

static void *worker(void *arg)
{
    seen_t *s = arg;
    pid_t tid = (pid_t)syscall(SYS_gettid);

    s->nice_before = getpriority(PRIO_PROCESS, (id_t)tid);
    s->rc = jn_thread_background();
    s->policy = sched_getscheduler(0);
    s->nice_after = getpriority(PRIO_PROCESS, (id_t)tid);
    return NULL;
}

static void test_background_thread(void **state)
{
    pthread_t t;
    seen_t s = {0};

    (void)state;
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
    assert_int_equal(pthread_create(&t, NULL, worker, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(s.rc, 0);
    assert_int_equal(s.policy, SCHED_BATCH);
    assert_int_equal(s.nice_after, s.nice_before);
    /* the other threads keep theirs */
    assert_int_equal(sched_getscheduler(0), SCHED_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background_thread),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

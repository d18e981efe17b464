/* Background threads (junction/thread.h). */
#include "junction/thread.h"

#include <sched.h>

int jn_thread_background(void)
{
#ifdef SCHED_BATCH
    struct sched_param p = {0};

    /* pid 0: the calling thread (Linux schedules threads one by one) */
    return sched_setscheduler(0, SCHED_BATCH, &p);
#else
    return 0;
#endif
}

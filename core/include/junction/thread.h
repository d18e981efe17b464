/* Threads of the process that do background work. */
#ifndef JUNCTION_THREAD_H
#define JUNCTION_THREAD_H

/* Marks the calling thread as a throughput worker for the scheduler
 * (Linux's SCHED_BATCH, same nice value; no privilege needed): when it is
 * woken, it does not preempt the thread that is running, it waits for its
 * turn. For the webhook intake, the store's checkpointer and the metrics
 * sampler, which the event loop wakes: woken as ordinary threads they
 * preempted the loop on its own core, in the middle of reading requests or
 * writing answers (docs/adr/ADR-007). 0, or -1 with errno when the system
 * refuses (callers go on as ordinary threads). */
int jn_thread_background(void);

#endif

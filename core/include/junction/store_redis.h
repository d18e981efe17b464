/* The cluster store: a process's own store (SQLite) with what the processes
 * of a cluster share moved to Redis. Attached to a store, it routes these
 * operations to Redis and leaves every other one (and whatever the store
 * gains later) to the store itself:
 *
 *   job records       begin/commit aside, job_put, job_get, job_each: a hash per
 *                     record, so that `junction jobs list|show|cancel` on any
 *                     node sees every node's runs;
 *   checkpoints       checkpoint_get, checkpoint_set;
 *   evidence          evidence_put and checkpoint_set inside a transaction are
 *                     buffered and written by commit as ONE script: XADD of
 *                     every item to the stream evidence.raw (the item's fields,
 *                     its stable id among them) and SET of the checkpoint, so
 *                     the cursor is never stored without the evidence it covers;
 *                     evidence_count, evidence_each, evidence_export and
 *                     run_evidence_count read the stream back;
 *   change detection  job_changes_compute compares the run's checksums (kept
 *                     per run by the commit script) with the integration's
 *                     inventory (its last complete run), as the SQLite store
 *                     does with its evidence table; job_changes_each lists;
 *   integrations, organization keys, credentials, audit log, API tokens
 *                     store_redis_tenancy.c (see its header for the keys);
 *   connector versions and deploys
 *                     store_redis_connectors.c.
 *
 * Keys (after the prefix of the options):
 *   evidence.raw          stream of evidence items, for the downstream service
 *   jn:evrun:{run id}     set of the item ids a run has added (dedup): an item a
 *                         retried or taken-over attempt emits again is not added
 *                         twice; expires dedup_ttl_ms after the run's last write
 *   jn:evsum:{run id}     hash "<resource type>\n<resource id>" -> checksum of the
 *                         run's items; expires with the dedup set
 *   jn:inv:{integration}, jn:invbase:{integration}
 *                         the checksums of the integration's last complete run,
 *                         and its id (change detection's baseline)
 *   jn:changes:{job id}   sorted set "<change>\n<type>\n<id>", and :counts
 *                         (expire after the retention)
 *   jn:checkpoint:{integration}  the integration's cursor (JSON text)
 *   jn:record:{job id}    hash: the job record (expires after the retention)
 *   jn:records, jn:records:{integration}  sorted sets of record ids by creation
 *
 * A record that only says "queued, never started" never replaces a record
 * that exists: in the cluster the enqueuer writes it after the job became
 * visible to the workers, one of which may already have moved it on.
 *
 * Writes to Redis are not part of the local store's transaction (only the
 * evidence and checkpoints are buffered until commit): a rollback does not
 * undo them. The store keeps its single-thread contract; the attached
 * connection is used from the same thread.
 */
#ifndef JUNCTION_STORE_REDIS_H
#define JUNCTION_STORE_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include "junction/redis_block.h"
#include "junction/store.h"

typedef struct {
    const char *prefix;   /* prepended to every key; NULL: none */
    int64_t retention_ms; /* job records; 0: 7 days */
    int64_t dedup_ttl_ms; /* a run's dedup set after its last write; 0: 1 day */
    jn_redis_block_opts_t conn;
} jn_store_redis_opts_t;

/* Connects to `url` and attaches to `store` (which must not be in a
 * transaction). Closing the store detaches and closes the connection. 0, or
 * -1 with a precise message and the store unchanged. */
int jn_store_attach_redis(jn_store_t *store, const char *url, const jn_store_redis_opts_t *opts,
                          char *err, size_t errlen);
/* 1 when the store has Redis attached. */
int jn_store_is_redis(const jn_store_t *store);
/* 1 (why: the server and the last failure) while the attached connection is
 * down (from a failed call to the next reply); 0 when it answers or when no
 * Redis is attached. */
int jn_store_redis_down(jn_store_t *store, char *why, size_t len);
/* The channel a stored connector deploy or rollback is published on (the
 * message is its deploy id), with the store's prefix. 0, or -1 when Redis is
 * not attached or buf is too small. */
int jn_store_redis_deploy_channel(const jn_store_t *store, char *buf, size_t len);

#endif

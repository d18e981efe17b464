/* Cluster mode: what `junction run` and the integrations, jobs, evidence,
 * creds, keys, audit and tokens commands open when redis_url is set.
 *
 * Embedded (redis_url empty) everything is in the store of data_dir. In the
 * cluster the processes share Redis:
 *   - the job queue is the Redis Streams queue (queue_redis.h);
 *   - job records, checkpoints and evidence go to Redis through the store
 *     (store_redis.h): any node lists and cancels any node's jobs, a worker
 *     resumes from the cursor another one committed, and evidence goes to the
 *     stream evidence.raw for the downstream evidence service; change
 *     detection compares each run with a per-integration inventory there;
 *   - integrations, the vault's records (wrapped organization keys,
 *     credential ciphertexts), the hash-chained audit log and API tokens are
 *     in Redis too (store_redis_tenancy.c): an integration added through one
 *     node's CLI or API is scheduled by every scheduler (the refresh reads by
 *     a cluster-wide revision) and run by any worker, with a credential put on
 *     any node. integrations_file still works: every node imports it at start
 *     and an unchanged import writes nothing. Every node needs the same
 *     master key; Redis never holds a plaintext secret.
 * What stays in each node's store: the schema and the webhook intake's local
 * transaction; nothing a node needs from another.
 *
 * A Redis that hangs must not stall a node: every blocking call is bounded
 * (block_opts below), and after one fails the process's connections to that
 * Redis share a backoff during which calls fail at once (redis_block.h); the
 * API's /readyz reports the connection down meanwhile.
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "junction/queue_redis.h"
#include "junction/store_redis.h"

/* The queue's and the store's calls block the loop: they wait at most five
 * times redis_timeout_ms (the rate limiter's deadline; at least 250 ms), and
 * after one timed out the others fail at once until a prober thread sees
 * Redis answer again (redis_block.h), so that a Redis that hangs stalls a
 * process for one deadline, not for seconds. */
static void block_opts(const jn_config_t *cfg, jn_redis_block_opts_t *o)
{
    long ms = (long)jn_config_int(cfg, "redis_timeout_ms") * 5;

    if (ms < 250)
        ms = 250;
    o->connect_timeout_ms = ms;
    o->command_timeout_ms = ms;
}

int jn_cli_cluster_mode(const jn_config_t *cfg)
{
    const char *url = jn_config_str(cfg, "redis_url");

    return url != NULL && *url != '\0';
}

int jn_cli_cluster_store(jn_store_t *store, const jn_config_t *cfg)
{
    jn_store_redis_opts_t o = {0};
    char err[512];

    if (!jn_cli_cluster_mode(cfg))
        return 0;
    block_opts(cfg, &o.conn);
    if (jn_store_attach_redis(store, jn_config_str(cfg, "redis_url"), &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "junction: redis_url: %s\n", err);
        return -1;
    }
    return 1;
}

jn_queue_t *jn_cli_open_redis_queue(const jn_config_t *cfg, const jn_queue_opts_t *opts)
{
    jn_queue_redis_opts_t ro = {0};
    char err[512];
    jn_queue_t *q;

    block_opts(cfg, &ro.conn);
    q = jn_queue_open_redis(jn_config_str(cfg, "redis_url"), &ro, opts, err, sizeof(err));
    if (q == NULL)
        fprintf(stderr, "junction: redis_url: %s\n", err);
    return q;
}

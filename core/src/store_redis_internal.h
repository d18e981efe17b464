/* Internals of the cluster store (store_redis.c), shared by the files that
 * add operations to it: store_redis_tenancy.c (integrations, credentials,
 * organization keys, audit, API tokens) and store_redis_connectors.c
 * (connector versions and deploys). Not a public interface. */
#ifndef JUNCTION_STORE_REDIS_INTERNAL_H
#define JUNCTION_STORE_REDIS_INTERNAL_H

#include <hiredis/hiredis.h>

#include "junction/redis_block.h"
#include "junction/store.h"

#define EVIDENCE_FIELDS 11

typedef struct {
    jn_store_ops_t ops; /* first: the store's ops pointer leads back here */
    const jn_store_ops_t *orig;
    jn_redis_block_t *conn;
    char prefix[128];
    int64_t retention_ms;
    int64_t dedup_ttl_ms;
    int in_tx;
    /* Buffered by a transaction, written by its commit. */
    char **items; /* EVIDENCE_FIELDS strings per item */
    size_t nitems, capitems;
    char **cps; /* integration id, cursor: pairs */
    size_t ncps;
} jn_sr_cluster_t;

/* The cluster object of a store whose ops it replaced. */
static inline jn_sr_cluster_t *jn_sr(jn_store_t *s)
{
    return (jn_sr_cluster_t *)s->ops;
}

/* Sets the store's error to "what: why"; returns -1. */
int jn_sr_fail(jn_store_t *s, const char *what, const char *why);
/* One command on the cluster connection; NULL with the store's error set. */
redisReply *jn_sr_command(jn_store_t *s, const char *what, int argc, const char **argv);
/* A script (argv[0] is set to the key prefix); NULL with the store's error set. */
redisReply *jn_sr_script(jn_store_t *s, const char *what, jn_redis_block_script_t *sc, int argc,
                         const char **argv);
/* buf = prefix + a + b (b may be NULL). */
void jn_sr_key(jn_store_t *s, char *buf, size_t len, const char *a, const char *b);

/* Replace the operations each file moves to Redis. */
void jn_sr_tenancy_ops(jn_store_ops_t *ops);
void jn_sr_connector_ops(jn_store_ops_t *ops);

#endif

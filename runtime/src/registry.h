/* The connector registry: every loaded version of every connector, the live
 * version of each provider, pins, and the deploy history kept in the store.
 *
 * A deploy is validated before anything changes: the signature (production
 * mode: a trusted Ed25519 key, checked before the source is compiled), the
 * sandboxed load with the metadata and capability functions (connector.c),
 * and a version strictly higher than the live one (semver). Only then are the
 * source, its signature and a deploy row written to the store (one
 * transaction) and the live pointer swapped. The swap is a pointer change on
 * the loop thread: a job takes a reference to the live version when it
 * starts (jn_registry_acquire) and keeps it, so jobs in flight finish on the
 * version they started with and a replaced version is freed when its last
 * job ends.
 *
 * The store is the source of truth: a restart loads each provider's live
 * version from it (and verifies its signature again), a rollback reloads an
 * older source from it, and a process notices a deploy made by another (the
 * `junction connector deploy` CLI) by polling the highest deploy id. In a
 * cluster the store's versions and deploys are in Redis (store_redis.h),
 * which announces every stored deploy; `junction run` calls jn_registry_sync
 * on the announcement, the poll staying as the fallback. Listeners hear of
 * every version that goes live: the worker pools and the HTTP API.
 *
 * Everything runs on one thread (the loop's).
 */
#ifndef JUNCTION_REGISTRY_H
#define JUNCTION_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "connector.h"
#include "connector_sig.h"
#include "junction/store.h"

typedef struct jn_registry jn_registry_t;

typedef enum { JN_CONNECTOR_DEVELOPMENT = 0, JN_CONNECTOR_PRODUCTION } jn_connector_mode_t;

typedef struct {
    /* Deploy history and sources; NULL keeps everything in memory (no
     * rollback, no pins of older versions, nothing survives a restart). */
    jn_store_t *store;
    /* production: only connectors signed with a trusted key load, and the
     * connectors directory is read at start only. */
    jn_connector_mode_t mode;
    /* Borrowed; NULL: none. In development mode a signature is checked when
     * keys are configured and the connector has one. */
    const jn_trusted_keys_t *keys;
    uv_loop_t *loop; /* for jn_registry_watch and jn_registry_poll; may be NULL */
} jn_registry_opts_t;

/* A version that went live. */
typedef struct {
    const char *provider;
    const char *version;
    const char *previous_version; /* NULL: the provider had none */
    const char *source_sha256;
    const char *key_id; /* NULL: unsigned */
    const char *action; /* "deploy", "rollback" or "load" (read from the store) */
    const char *actor;
    int64_t deploy_id;   /* the store's deploy row; 0 without a store */
    int64_t deployed_ms; /* when the row was written (wall clock) */
    int local;           /* 1: made by this process; 0: read from the store */
} jn_registry_event_t;

typedef void (*jn_registry_listener_fn)(void *ud, const jn_registry_event_t *ev);

enum {
    /* The live version may be deployed again with other source text
     * (development mode: a save without a version bump). */
    JN_DEPLOY_SAME_VERSION = 1 << 0,
    /* Validate only: nothing is written, nothing goes live. */
    JN_DEPLOY_DRY_RUN = 1 << 1,
    /* Start-up scan of the connectors directory: a source that was deployed
     * before (and since replaced or rolled back) is not deployed again, and
     * a version that is not newer is skipped with a warning. */
    JN_DEPLOY_STARTUP = 1 << 2
};

typedef struct {
    const char *name; /* file name or label: in messages, and the chunk name of its jobs */
    const char *source;
    size_t source_len;
    const char *signature; /* the detached signature document; NULL: unsigned */
    size_t signature_len;
    const char *actor; /* who deploys: "cli:<user>", "api:<token>", "connectors_dir", ... */
    unsigned flags;    /* JN_DEPLOY_* */
    /* The provider the caller means (an API route's {provider}); the source
     * must declare it. NULL: whichever it declares. */
    const char *provider;
} jn_deploy_request_t;

typedef struct {
    char provider[72];
    char version[72];
    char previous[72]; /* "" when the provider had no live version */
    char sha256[65];
    char key_id[JN_CONNSIG_KEY_ID_LEN + 1]; /* "" when unsigned */
    int64_t deploy_id;
    int unchanged;      /* 1: this exact source is live already (or skipped at start-up) */
    double validate_ms; /* signature check, sandboxed load and metadata checks */
    double total_ms;    /* the whole call, store write and swap included */
} jn_deploy_result_t;

/* One row of a provider's history. */
typedef struct {
    int64_t deploy_id;
    const char *provider;
    const char *version;
    const char *source_sha256;
    const char *action; /* "deploy", "rollback", "resign" */
    const char *actor;
    const char *key_id; /* NULL: unsigned */
    int64_t deployed_ms;
    int live; /* the provider's newest row */
} jn_registry_history_t;

typedef int (*jn_registry_history_fn)(void *ud, const jn_registry_history_t *h);

jn_registry_t *jn_registry_create(const jn_registry_opts_t *opts, char *err, size_t errlen);
/* Stops watching and polling (closes the loop handles). Run the loop
 * afterwards, then destroy. */
void jn_registry_close(jn_registry_t *r);
/* Releases the registry's references; jobs keep theirs. */
void jn_registry_destroy(jn_registry_t *r);
jn_connector_mode_t jn_registry_mode(const jn_registry_t *r);
int jn_connector_mode_parse(const char *text, jn_connector_mode_t *mode);

/* Called for every version that goes live, after the swap. */
int jn_registry_add_listener(jn_registry_t *r, jn_registry_listener_fn fn, void *ud);
/* Forgets a listener added with the same fn and ud (one that goes away
 * before the registry). */
void jn_registry_remove_listener(jn_registry_t *r, jn_registry_listener_fn fn, void *ud);

/* ---- deploys ---- */

/* Validates and deploys source text (the HTTP API's entry point). 0 with
 * *out filled (out->unchanged when this source is live already), or -1 with
 * every reason, one per line, in err: nothing changed. */
int jn_registry_deploy(jn_registry_t *r, const jn_deploy_request_t *req, jn_deploy_result_t *out,
                       char *err, size_t errlen);
/* Reads path and, when it exists, path.sig, and deploys them. */
int jn_registry_deploy_file(jn_registry_t *r, const char *path, const char *actor, unsigned flags,
                            jn_deploy_result_t *out, char *err, size_t errlen);
/* Makes a previously deployed version live again: `version`, or (NULL) the
 * highest version below the live one. Its source comes from the store and is
 * verified again as at a deploy. */
int jn_registry_rollback(jn_registry_t *r, const char *provider, const char *version,
                         const char *actor, jn_deploy_result_t *out, char *err, size_t errlen);
/* The provider's deploy rows, newest first, at most limit (0: all). 1 when
 * the provider was never deployed. */
int jn_registry_history(jn_registry_t *r, const char *provider, int64_t limit,
                        jn_registry_history_fn fn, void *ud, char *err, size_t errlen);

/* ---- jobs ---- */

/* A reference to the version a job runs: the live one, or the pinned
 * version (loaded from the store the first time). Release it with
 * jn_connector_unref when the job has ended. NULL with the reason. */
jn_connector_t *jn_registry_acquire(jn_registry_t *r, const char *provider, const char *pin,
                                    char *err, size_t errlen);
/* The live version (borrowed: valid until the next swap), NULL when none. */
const jn_connector_t *jn_registry_live(const jn_registry_t *r, const char *provider);
size_t jn_registry_provider_count(const jn_registry_t *r);
/* The i-th provider with a live version (0 <= i < count), in deploy order. */
const char *jn_registry_provider(const jn_registry_t *r, size_t i);
/* Connector versions the registry itself holds (live and pinned ones); the
 * versions jobs still hold after a swap are counted by jn_connector_alive. */
size_t jn_registry_versions_held(const jn_registry_t *r);

/* ---- the store and the connectors directory ---- */

/* Makes the store's live version of each provider live here, when it is not
 * already: at start, and whenever the highest deploy id moved (a deploy by
 * another process). A version that cannot be loaded is logged and the
 * current one stays. Returns the number of versions that went live. */
int jn_registry_sync(jn_registry_t *r);
/* Makes the version of deploy row `deploy_id` live (the entry point for a
 * deploy announced by another node). 0, or -1 with the reason. */
int jn_registry_apply_deploy(jn_registry_t *r, int64_t deploy_id, char *err, size_t errlen);
/* Deploys the files of dir (*.lua, with FILE.sig) that are new or newer than
 * the live versions (JN_DEPLOY_STARTUP). Refusals are logged with the file
 * and the reason. Returns the number deployed. */
int jn_registry_scan_dir(jn_registry_t *r, const char *dir, const char *actor);
/* Development mode: redeploys a file of dir when it is saved (uv_fs_event,
 * debounced). 0, or -1 with the reason. */
int jn_registry_watch(jn_registry_t *r, const char *dir, char *err, size_t errlen);
/* Calls jn_registry_sync every interval_ms. */
int jn_registry_poll(jn_registry_t *r, uint64_t interval_ms, char *err, size_t errlen);

#endif

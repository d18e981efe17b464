/* A loaded connector version: its source text and validated metadata.
 *
 * Loading compiles the file in a throw-away sandbox, runs its main chunk
 * (which only declares), and checks the returned table against the connector
 * contract: every problem is reported with file, field and the expected form.
 * Jobs then create their own sandboxes from the source kept here.
 */
#ifndef JUNCTION_CONNECTOR_H
#define JUNCTION_CONNECTOR_H

#include <stddef.h>

enum {
    JN_FN_TEST_CONNECTION = 1 << 0,
    JN_FN_COLLECT_EVIDENCE = 1 << 1,
    JN_FN_HANDLE_WEBHOOK = 1 << 2,
    JN_FN_EXECUTE_ACTION = 1 << 3,
    JN_FN_STREAM = 1 << 4
};

typedef struct {
    char **items;
    size_t count;
} jn_strlist_t;

typedef struct {
    double requests_per_second; /* 0: not set */
    double requests_per_minute;
    double requests_per_hour;
    double burst_size;
    double request_weight;
} jn_rate_limits_t;

typedef struct jn_connector {
    char *path;      /* as given */
    char *chunkname; /* "@path" */
    char *source;
    size_t source_len;
    char *provider_type;
    char *display_name;
    char *description;
    char *version;
    char *documentation_url;
    char *webhook_scheme; /* NULL when no webhook */
    jn_strlist_t auth_types;
    jn_strlist_t capabilities;
    jn_strlist_t required_scopes;
    jn_strlist_t webhook_events;
    jn_strlist_t egress;
    jn_rate_limits_t rate_limits;
    unsigned functions;  /* JN_FN_* present */
    char *metadata_json; /* canonical JSON of the declared metadata */
    int refcount;
} jn_connector_t;

/* Load and validate. On failure returns NULL and writes every problem, one per
 * line, into a malloc'ed *errors (free it). */
jn_connector_t *jn_connector_load_file(const char *path, char **errors);
jn_connector_t *jn_connector_load_source(const char *name, const char *src, size_t len,
                                         char **errors);
jn_connector_t *jn_connector_ref(jn_connector_t *c);
void jn_connector_unref(jn_connector_t *c);

int jn_strlist_contains(const jn_strlist_t *l, const char *s);
/* 1 when `host` matches an entry ("api.github.com" or "*.example.com"). */
int jn_connector_egress_allows(const jn_connector_t *c, const char *host);

/* Called with a file's bytes before anything is compiled (the signature
 * check of the connector registry). Return 0 to go on, or -1 with the reason
 * in err: the load fails with "<name>: <reason>" and nothing is compiled. */
typedef int (*jn_connector_check_fn)(void *ud, const char *name, const char *src, size_t len,
                                     char *err, size_t errlen);

/* jn_connector_load_source with a check first (check may be NULL). */
jn_connector_t *jn_connector_load_checked(const char *name, const char *src, size_t len,
                                          jn_connector_check_fn check, void *ud, char **errors);

/* Reads a connector (or signature) file of at most the connector size limit
 * (1 MiB): malloc'ed, NUL-terminated, length in *len; NULL with the reason in
 * err. */
char *jn_connector_read_file(const char *path, size_t *len, char *err, size_t errlen);

/* Connector objects alive in the process (loaded and not yet released): a
 * replaced version counts until its last job has ended. */
long jn_connector_alive(void);

/* Semantic version precedence (semver.org 2.0.0): <0, 0 or >0 as a sorts
 * before, with or after b. Build metadata ("+...") is ignored; a pre-release
 * sorts before its release. Both must be valid connector versions. */
int jn_semver_compare(const char *a, const char *b);

/* A bare script run as a job's function (no metadata table): used by specs and
 * tools that exercise the Lua API directly. egress may be NULL. */
jn_connector_t *jn_connector_new_script(const char *name, const char *src, size_t len,
                                        const char *const *egress, size_t negress);
#endif

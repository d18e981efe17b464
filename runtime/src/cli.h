/* Subcommands of the `junction` binary. Each returns the process exit code:
 * 0 success, 1 the work failed, 2 bad usage or invalid input. */
#ifndef JUNCTION_CLI_H
#define JUNCTION_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "junction/auth.h"
#include "junction/config.h"
#include "junction/keyprovider.h"
#include "junction/queue.h"
#include "junction/scheduler.h"
#include "junction/store.h"
#include "junction/vault.h"
#include "registry.h"

int jn_cli_run(int argc, char **argv);
int jn_cli_collect(int argc, char **argv);
int jn_cli_connector(int argc, char **argv);
int jn_cli_spec(int argc, char **argv);
int jn_cli_script(int argc, char **argv);
int jn_cli_creds(int argc, char **argv);        /* creds put|list|rotate|rm */
int jn_cli_keys(int argc, char **argv);         /* keys rotate */
int jn_cli_audit(int argc, char **argv);        /* audit verify */
int jn_cli_integrations(int argc, char **argv); /* integrations add|list|show|... */
int jn_cli_jobs(int argc, char **argv);         /* jobs list|show|cancel|stats */
int jn_cli_evidence(int argc, char **argv);     /* evidence export */
int jn_cli_health(int argc, char **argv);       /* health [--org ID] [--provider P] [--json] */

/* ---- options (cli_common.c) ---- */

/* A command's options as data: one table of jn_cli_opt_t (ended by an entry
 * whose name is NULL) describes what jn_cli_opts_parse accepts, where each
 * value goes in the command's args struct and what jn_cli_opts_usage prints.
 * Parsing follows GNU getopt_long, which the commands used before: options
 * and operands may be mixed, `--name=value` and `--name value`, a unique
 * prefix of a long name, `--` ends the options; its messages are kept word
 * for word, since scripts and people know them. */
typedef enum {
    JN_CLI_OPT_STRING, /* const char *: the value; the last one given wins */
    JN_CLI_OPT_FLAG,   /* int: set to 1; a value (--flag=x) is an error */
    JN_CLI_OPT_LIST,   /* const char *[max] at offset, its int count at count_offset */
    JN_CLI_OPT_INT,    /* int64_t: a whole number from min to max */
    JN_CLI_OPT_HELP,   /* no field: parsing stops and returns JN_CLI_OPTS_HELP */
} jn_cli_opt_kind_t;

typedef struct {
    const char *name; /* long name without the dashes */
    char letter;      /* short option (-x VALUE, -xVALUE), or 0 */
    jn_cli_opt_kind_t kind;
    size_t offset;       /* offsetof the field in the args struct */
    size_t count_offset; /* JN_CLI_OPT_LIST: offsetof its int count */
    int64_t min, max;    /* JN_CLI_OPT_INT: the range; JN_CLI_OPT_LIST: max entries */
    const char *arg;     /* the value in usage (FILE, JSON); NULL for a flag */
    const char *help;    /* usage text ('\n' continues it); NULL: not listed */
} jn_cli_opt_t;

/* Table entries without usage text (the commands' usage is written by hand). */
#define JN_CLI_STR(T, name, field)                                                                 \
    {                                                                                              \
        (name), 0, JN_CLI_OPT_STRING, offsetof(T, field), 0, 0, 0, NULL, NULL                      \
    }
#define JN_CLI_FLAG(T, name, field)                                                                \
    {                                                                                              \
        (name), 0, JN_CLI_OPT_FLAG, offsetof(T, field), 0, 0, 0, NULL, NULL                        \
    }
#define JN_CLI_LIST(T, name, field, count, max)                                                    \
    {                                                                                              \
        (name), 0, JN_CLI_OPT_LIST, offsetof(T, field), offsetof(T, count), 0, (max), NULL, NULL   \
    }
#define JN_CLI_INT(T, name, field, lo, hi)                                                         \
    {                                                                                              \
        (name), 0, JN_CLI_OPT_INT, offsetof(T, field), 0, (lo), (hi), NULL, NULL                   \
    }
#define JN_CLI_HELP                                                                                \
    {                                                                                              \
        "help", 0, JN_CLI_OPT_HELP, 0, 0, 0, 0, NULL, NULL                                         \
    }
#define JN_CLI_END                                                                                 \
    {                                                                                              \
        NULL, 0, JN_CLI_OPT_STRING, 0, 0, 0, 0, NULL, NULL                                         \
    }

/* jn_cli_opts_parse results besides the index of the first operand. */
#define JN_CLI_OPTS_USAGE (-1)   /* unknown option, missing or unwanted value */
#define JN_CLI_OPTS_INVALID (-2) /* a value out of range, too many of a list */
#define JN_CLI_OPTS_HELP (-3)    /* a JN_CLI_OPT_HELP option was given */

/* Parses the options in argv[1..argc) into args (argv[0], the command's
 * name, starts the usage messages as getopt_long's did). Operands keep their
 * order and are moved behind the options: returns the index of the first
 * one (argc when there is none), or a JN_CLI_OPTS_* code with the message in
 * err (print it with jn_cli_opts_print_error). Fields of options not given
 * keep what args held. */
int jn_cli_opts_parse(const jn_cli_opt_t *opts, int argc, char **argv, void *args, char *err,
                      size_t errlen);
/* Prints a jn_cli_opts_parse error on stderr: a usage error as getopt_long
 * worded it, an invalid value as "junction: ...". */
void jn_cli_opts_print_error(int rc, const char *err);
/* The list-and-show commands' arguments: jn_cli_opts_parse, at most one
 * operand (into *operand, left alone when none), and the --format value the
 * parse left in *format (a field of args) checked to be table or json
 * (*json: 1 for json). 0; 1 after --help; -1 for a usage error, -2 for an
 * invalid value, after printing the error. */
int jn_cli_parse_show_args(const jn_cli_opt_t *opts, int argc, char **argv, void *args,
                           const char **operand, const char *const *format, int *json);
/* Prints one line per option that has help: "  --name ARG", padded to
 * `width` columns, a space and the help; continuation lines are indented to
 * the same column. */
void jn_cli_opts_usage(FILE *out, const jn_cli_opt_t *opts, int width);

/* Shared by subcommands: the config from --config FILE (or JUNCTION_CONFIG)
 * plus the environment. Returns NULL after printing the error. */
jn_config_t *jn_cli_load_config(const char *path);
/* Read a credential from a file or an environment variable and register it
 * with the redactor. Returns a malloc'ed "Name: value" header line or NULL. */
char *jn_cli_auth_header(const char *token_file, const char *token_env, const char *scheme);
/* Create the directory and its parents (mode 0700). */
int jn_mkdir_p(const char *path);
/* The store <dir>/junction.db (the directory is created). NULL after printing
 * the error. */
jn_store_t *jn_cli_open_store(const char *dir);
/* The vault on `store` with the key provider the environment configures
 * (JUNCTION_MASTER_KEY_FILE or JUNCTION_MASTER_KEY); opts may be NULL (no
 * cache). NULL after printing the error; *kp receives the provider to destroy
 * after the vault. */
jn_vault_t *jn_cli_open_vault(jn_store_t *store, const jn_vault_opts_t *opts,
                              jn_keyprovider_t **kp);
/* Decrypts version `version` (0: current) of a credential for `requester` and
 * parses it for injection (jn_auth_parse with the credential's auth type).
 * Returns 0, or a JN_VAULT_* code / JN_VAULT_EINVAL for an unusable document
 * with the reason (never a secret) in err. */
int jn_cli_credential_auth(jn_vault_t *v, const char *org, const char *credential_id,
                           int64_t version, const char *requester, jn_auth_t **out,
                           int64_t *version_out, char *err, size_t errlen);
/* An oauth2 provider rotated the credential's refresh token: stores the new
 * document as a new version and promotes it (actor "token-refresh"), so that
 * the next start uses it. Failures are logged (without secrets); -1. */
int jn_cli_store_rotated(jn_vault_t *v, const char *org, const char *credential_id,
                         const char *new_document_json);

/* ---- BYOC OAuth clients (cli_creds.c) ---- */

/* The reserved organization whose oauth_client credentials are the platform's
 * default clients, one per provider. */
#define JN_CLI_PLATFORM_ORG "_platform"
#define JN_CLI_ID_MAX 128
/* The oauth_client credential for `provider` that serves `org`: its own, else
 * the platform default. 1 with *client_org (org or JN_CLI_PLATFORM_ORG) and
 * client_id; 0 when there is none; or a JN_VAULT_* code with err (also when
 * an organization has more than one for the provider). */
int jn_cli_oauth_client_of(jn_vault_t *v, const char *org, const char *provider,
                           const char **client_org, char client_id[JN_CLI_ID_MAX + 1], char *err,
                           size_t errlen);
/* When `a` (credential_id of org, for provider) names no OAuth client
 * (jn_auth_wants_client), reads that oauth_client for `requester` (an audited
 * access in the client's organization), binds it to `a` and appends
 * "oauth_client.use" to the audit log of org. 0 (also when `a` needs no
 * client), or a JN_VAULT_* code with a precise err (no client: ENOTFOUND). */
int jn_cli_bind_oauth_client(jn_vault_t *v, const char *org, const char *provider,
                             const char *credential_id, const char *requester, jn_auth_t *a,
                             char *err, size_t errlen);

/* The connector registry the config describes (connector_mode,
 * connector_trusted_keys) on `store`; loop may be NULL (no watch, no poll).
 * *keys receives the trusted keys to free after the registry. NULL with the
 * reason in err (cli_connector.c). */
jn_registry_t *jn_cli_open_registry(const jn_config_t *cfg, jn_store_t *store, uv_loop_t *loop,
                                    jn_trusted_keys_t **keys, char *err, size_t errlen);

/* ---- integrations, runs and jobs (cli_integrations.c) ---- */

/* What the integrations, jobs and evidence commands open: the config, the
 * store in data_dir (or data_dir_override) and the queue (embedded, or in
 * cluster mode the Redis queue with Redis attached to the store). */
typedef struct {
    jn_config_t *cfg;
    jn_store_t *store;
    jn_queue_t *queue;
} jn_cli_env_t;

/* 0, or the exit code after printing the reason. */
int jn_cli_env_open(jn_cli_env_t *e, const char *config_file, const char *data_dir_override);
void jn_cli_env_close(jn_cli_env_t *e);
/* The queue with the queue_* settings of cfg: embedded on `store`, or the
 * Redis queue when redis_url is set; consumer names this process as the
 * holder of leases. NULL after printing the error. */
jn_queue_t *jn_cli_open_queue(jn_store_t *store, const jn_config_t *cfg, const char *consumer);
/* Enqueues a collection run of `it` and writes its job record (queued) in one
 * store transaction. slot_ms > 0: a scheduled slot, enqueued at most once
 * (its slot id is the idempotency key) and absorbed by a run of the
 * integration still waiting in the queue (out->coalesced 1); 0: a manual
 * run. Either is absorbed by the integration's running stream
 * (out->coalesced JN_CLI_STREAM_ABSORBED, out->id the stream's job; a slot is
 * marked done). trigger: "schedule", "catch-up" or "manual". 0, or -1 with
 * the reason in err. */
#define JN_CLI_STREAM_ABSORBED 2
int jn_cli_enqueue_run(jn_store_t *store, jn_queue_t *q, const jn_integration_t *it,
                       const char *trigger, int64_t slot_ms, jn_priority_t priority,
                       int max_attempts, jn_queue_enqueued_t *out, char *err, size_t errlen);
/* ---- cluster mode (cli_cluster.c) ---- */

/* 1 when redis_url is set: the queue, job records, checkpoints and evidence
 * are shared through Redis. */
int jn_cli_cluster_mode(const jn_config_t *cfg);
/* In cluster mode attaches Redis to the store (store_redis.h) and returns 1;
 * 0 when embedded; -1 after printing the error. */
int jn_cli_cluster_store(jn_store_t *store, const jn_config_t *cfg);
/* The Redis Streams queue of redis_url (queue_redis.h). NULL after printing
 * the error. */
jn_queue_t *jn_cli_open_redis_queue(const jn_config_t *cfg, const jn_queue_opts_t *opts);

/* Checks an integration or organization id: 1 to 128 of [A-Za-z0-9._:-]. */
int jn_cli_check_id(const char *what, const char *id, char *err, size_t errlen);
/* The canonical schedule text of `schedule` (NULL: every run_interval_s
 * seconds) into buf and the jitter of `jitter` (NULL: none) in ms. */
int jn_cli_schedule(const jn_config_t *cfg, const char *schedule, const char *jitter, char *buf,
                    size_t len, int64_t *jitter_ms, char *err, size_t errlen);
/* Parses the schedule and jitter an integration stores. */
int jn_cli_integration_schedule(const jn_integration_t *it, jn_schedule_t *out, char *err,
                                size_t errlen);

#endif

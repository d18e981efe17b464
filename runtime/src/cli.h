/* Subcommands of the `junction` binary. Each returns the process exit code:
 * 0 success, 1 the work failed, 2 bad usage or invalid input. */
#ifndef JUNCTION_CLI_H
#define JUNCTION_CLI_H

#include <stdint.h>

#include "junction/auth.h"
#include "junction/config.h"
#include "junction/keyprovider.h"
#include "junction/store.h"
#include "junction/vault.h"

int jn_cli_run(int argc, char **argv);
int jn_cli_collect(int argc, char **argv);
int jn_cli_connector(int argc, char **argv);
int jn_cli_spec(int argc, char **argv);
int jn_cli_script(int argc, char **argv);
int jn_cli_creds(int argc, char **argv); /* creds put|list|rotate|rm */
int jn_cli_keys(int argc, char **argv);  /* keys rotate */
int jn_cli_audit(int argc, char **argv); /* audit verify */

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

#endif

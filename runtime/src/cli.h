/* Subcommands of the `junction` binary. Each returns the process exit code:
 * 0 success, 1 the work failed, 2 bad usage or invalid input. */
#ifndef JUNCTION_CLI_H
#define JUNCTION_CLI_H

#include "junction/config.h"

int jn_cli_run(int argc, char **argv);
int jn_cli_collect(int argc, char **argv);
int jn_cli_connector(int argc, char **argv);
int jn_cli_spec(int argc, char **argv);
int jn_cli_script(int argc, char **argv);

/* Shared by subcommands: the config from --config FILE (or JUNCTION_CONFIG)
 * plus the environment. Returns NULL after printing the error. */
jn_config_t *jn_cli_load_config(const char *path);
/* Read a credential from a file or an environment variable and register it
 * with the redactor. Returns a malloc'ed "Name: value" header line or NULL. */
char *jn_cli_auth_header(const char *token_file, const char *token_env, const char *scheme);
/* Create the directory and its parents (mode 0700). */
int jn_mkdir_p(const char *path);

#endif

/* junction: the integration runtime's single binary. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "api.h"
#include "cli.h"
#include "junction/log.h"
#include "junction/redact.h"

static void usage(FILE *out)
{
    fputs("usage: junction <command> [options]\n"
          "\n"
          "commands:\n"
          "  run [--config FILE] [--roles R,...] run the runtime (embedded default: no config "
          "needed)\n"
          "  integrations add|list|show|disable|enable|rm|sync\n"
          "                                      manage the integrations in the store\n"
          "  jobs list|show|cancel|stats         job records and the job queue\n"
          "  evidence export [options]           stored evidence as JSON lines\n"
          "  health [--org ID] [--json]          integration health, from the running API\n"
          "  collect FILE [options]              run one collect_evidence, print items as JSON "
          "lines\n"
          "  connector validate FILE...          check connectors against the contract\n"
          "  connector new|test|deploy|rollback|history|keygen|sign\n"
          "                                      the authoring kit, hot deploys and signing\n"
          "  creds put|list|rotate|rm [options]  manage the credentials in the vault\n"
          "  tokens create|list|revoke           organization tokens of the HTTP API\n"
          "  keys rotate [--org ORG]             re-wrap data keys under the current master key\n"
          "                                      (or, with --org, rotate that org's data key)\n"
          "  audit verify [--anchor SEQ:HASH]    verify the hash chain of the audit log\n"
          "  spec [busted options] [PATH...]     run Lua specs inside Junction's own runtime\n"
          "  script FILE [ARGS...]               run a trusted Lua file with junction.testing "
          "(tools)\n"
          "  version                             print the version\n"
          "\n"
          "`junction <command> --help` describes a command's options.\n",
          out);
}

/* Thousands of concurrent jobs hold sockets: take the whole file limit. */
static void raise_fd_limit(void)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();
    jn_log_set_redactor(jn_redact_log_hook, jn_redactor_global());
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "run") == 0)
        return jn_cli_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "integrations") == 0)
        return jn_cli_integrations(argc - 1, argv + 1);
    if (strcmp(argv[1], "jobs") == 0)
        return jn_cli_jobs(argc - 1, argv + 1);
    if (strcmp(argv[1], "evidence") == 0)
        return jn_cli_evidence(argc - 1, argv + 1);
    if (strcmp(argv[1], "health") == 0)
        return jn_cli_health(argc - 1, argv + 1);
    if (strcmp(argv[1], "collect") == 0)
        return jn_cli_collect(argc - 1, argv + 1);
    if (strcmp(argv[1], "connector") == 0)
        return jn_cli_connector(argc - 1, argv + 1);
    if (strcmp(argv[1], "tokens") == 0)
        return jn_cli_tokens(argc - 1, argv + 1);
    if (strcmp(argv[1], "creds") == 0)
        return jn_cli_creds(argc - 1, argv + 1);
    if (strcmp(argv[1], "keys") == 0)
        return jn_cli_keys(argc - 1, argv + 1);
    if (strcmp(argv[1], "audit") == 0)
        return jn_cli_audit(argc - 1, argv + 1);
    if (strcmp(argv[1], "spec") == 0)
        return jn_cli_spec(argc - 1, argv + 1);
    if (strcmp(argv[1], "script") == 0)
        return jn_cli_script(argc - 1, argv + 1);
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("junction %s\n", JUNCTION_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "junction: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "junction/config.h"

typedef struct {
    char dir[256];
    char path[300];
    char err[1024];
    jn_config_t *cfg;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    const char *tmp = getenv("TMPDIR");

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/jn-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/junction.conf", f->dir);
    f->cfg = jn_config_create();
    assert_non_null(f->cfg);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;

    jn_config_destroy(f->cfg);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    return 0;
}

static void write_conf(fixture_t *f, const char *text)
{
    FILE *fp = fopen(f->path, "w");

    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Loads `text` as the config file and expects it to fail with exactly
 * "<path>:<expect>". */
static void expect_file_error(fixture_t *f, const char *text, const char *expect)
{
    char full[1024];

    write_conf(f, text);
    assert_int_equal(jn_config_load_file(f->cfg, f->path, f->err, sizeof(f->err)), -1);
    snprintf(full, sizeof(full), "%s:%s", f->path, expect);
    assert_string_equal(f->err, full);
}

static void load_ok(fixture_t *f, const char *text)
{
    write_conf(f, text);
    if (jn_config_load_file(f->cfg, f->path, f->err, sizeof(f->err)) != 0)
        fail_msg("load failed: %s", f->err);
}

static void origin_is(fixture_t *f, const char *key, int line)
{
    char expect[400];

    snprintf(expect, sizeof(expect), "%s:%d", f->path, line);
    assert_string_equal(jn_config_origin(f->cfg, key), expect);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    fixture_t *f = *state;
    jn_config_t *cfg = f->cfg;
    size_t n = 99, i;

    assert_string_equal(jn_config_str(cfg, "data_dir"), "data");
    assert_string_equal(jn_config_str(cfg, "connectors_dir"), "connectors");
    assert_string_equal(jn_config_str(cfg, "listen"), "127.0.0.1:8080");
    assert_string_equal(jn_config_str(cfg, "log_level"), "info");
    assert_non_null(jn_config_list(cfg, "allow_hosts", &n));
    assert_int_equal(n, 0);
    assert_string_equal(jn_config_str(cfg, "integrations_file"), "");
    assert_int_equal(jn_config_int(cfg, "job_memory_limit_mb"), 64);
    assert_int_equal(jn_config_int(cfg, "job_cpu_limit_ms"), 10000);
    assert_int_equal(jn_config_int(cfg, "job_timeout_s"), 3600);
    assert_int_equal(jn_config_int(cfg, "max_concurrent_jobs"), 10000);
    assert_int_equal(jn_config_int(cfg, "http_connect_timeout_ms"), 10000);
    assert_int_equal(jn_config_int(cfg, "http_timeout_ms"), 60000);
    assert_int_equal(jn_config_int(cfg, "http_max_response_bytes"), 33554432);
    assert_int_equal(jn_config_int(cfg, "http_max_redirects"), 5);
    assert_int_equal(jn_config_int(cfg, "run_interval_s"), 3600);
    assert_int_equal(jn_config_int(cfg, "metrics_sample_sync_ms"), 20);
    assert_int_equal(jn_config_int(cfg, "metrics_sample_max_age_ms"), 5000);

    for (i = 0; jn_config_key_at(i) != NULL; i++)
        assert_string_equal(jn_config_origin(cfg, jn_config_key_at(i)), "default");
    assert_int_equal(i, 62);
    assert_string_equal(jn_config_key_at(0), "data_dir");
    assert_null(jn_config_key_at(62));
    for (i = 0; jn_config_key_at(i) != NULL; i++)
        assert_true(strlen(jn_config_doc(jn_config_key_at(i))) > 0);
}

/* ---- file ---- */

static void test_file_parse(void **state)
{
    fixture_t *f = *state;
    const char *const *hosts;
    size_t n = 0;

    load_ok(f, "# Junction configuration\n"
               "\n"
               "   # an indented comment\n"
               "listen = 0.0.0.0:9090\n"
               "data_dir=\"/var/lib/junction data\"  \n"
               "allow_hosts =  sim.local:8443 , 10.0.0.5,localhost ,\n"
               "log_level = WARN\n"
               "http_max_response_bytes = 64k\n"
               "job_memory_limit_mb = \"128\"\n"
               "integrations_file = \"say \\\"hi\\\" \\\\ # not a comment\"\n"
               "connectors_dir = conn#1\r\n");
    assert_string_equal(jn_config_str(f->cfg, "listen"), "0.0.0.0:9090");
    origin_is(f, "listen", 4);
    assert_string_equal(jn_config_str(f->cfg, "data_dir"), "/var/lib/junction data");
    origin_is(f, "data_dir", 5);
    hosts = jn_config_list(f->cfg, "allow_hosts", &n);
    assert_int_equal(n, 3);
    assert_string_equal(hosts[0], "sim.local:8443");
    assert_string_equal(hosts[1], "10.0.0.5");
    assert_string_equal(hosts[2], "localhost");
    assert_null(hosts[3]);
    assert_string_equal(jn_config_str(f->cfg, "log_level"), "warn");
    assert_int_equal(jn_config_int(f->cfg, "http_max_response_bytes"), 65536);
    assert_int_equal(jn_config_int(f->cfg, "job_memory_limit_mb"), 128);
    assert_string_equal(jn_config_str(f->cfg, "integrations_file"),
                        "say \"hi\" \\ # not a comment");
    assert_string_equal(jn_config_str(f->cfg, "connectors_dir"), "conn#1");
    assert_string_equal(jn_config_origin(f->cfg, "job_timeout_s"), "default");
}

static void test_file_sizes(void **state)
{
    fixture_t *f = *state;

    load_ok(f, "http_max_response_bytes = 3m\n");
    assert_int_equal(jn_config_int(f->cfg, "http_max_response_bytes"), 3LL * 1024 * 1024);
    load_ok(f, "http_max_response_bytes = 2G\n");
    assert_int_equal(jn_config_int(f->cfg, "http_max_response_bytes"), 2LL * 1024 * 1024 * 1024);
    load_ok(f, "http_max_response_bytes = 1000\n");
    assert_int_equal(jn_config_int(f->cfg, "http_max_response_bytes"), 1000);
}

static void test_ratios(void **state)
{
    fixture_t *f = *state;
    char err[256];

    assert_true(jn_config_ratio(f->cfg, "health_warning_error_rate") == 0.10);
    load_ok(f, "health_critical_error_rate = 0.25\n");
    assert_true(jn_config_ratio(f->cfg, "health_critical_error_rate") == 0.25);
    assert_int_equal(jn_config_set(f->cfg, "health_recovery_margin", "1.5", err, sizeof(err)), -1);
    assert_string_equal(err, "'health_recovery_margin' must be a number between 0 and 1 (e.g. "
                             "0.25), got '1.5'");
    assert_int_equal(jn_config_set(f->cfg, "health_recovery_margin", "nan", err, sizeof(err)), -1);
    assert_int_equal(jn_config_set(f->cfg, "health_recovery_margin", "0.1x", err, sizeof(err)), -1);
    assert_int_equal(jn_config_set(f->cfg, "health_recovery_margin", "0", err, sizeof(err)), 0);
    assert_true(jn_config_ratio(f->cfg, "health_recovery_margin") == 0);
}

static void test_file_empty_list_and_quoted_empty(void **state)
{
    fixture_t *f = *state;
    size_t n = 99;

    assert_int_equal(jn_config_set(f->cfg, "allow_hosts", "a,b", f->err, sizeof(f->err)), 0);
    /* set outranks the file, so use a fresh config for the file case */
    jn_config_destroy(f->cfg);
    f->cfg = jn_config_create();
    load_ok(f, "allow_hosts = \"\"\nintegrations_file =\n");
    jn_config_list(f->cfg, "allow_hosts", &n);
    assert_int_equal(n, 0);
    assert_string_equal(jn_config_str(f->cfg, "integrations_file"), "");
    origin_is(f, "integrations_file", 2);
}

static void test_error_unknown_key_suggestion(void **state)
{
    expect_file_error(*state, "# c\n\nlsiten = 1.2.3.4:80\n",
                      "3: unknown key 'lsiten' (did you mean 'listen'?)");
    expect_file_error(*state, "job_memroy_limit_mb = 1\n",
                      "1: unknown key 'job_memroy_limit_mb' (did you mean 'job_memory_limit_mb'?)");
    expect_file_error(*state, "data-dir = x\n",
                      "1: unknown key 'data-dir' (did you mean 'data_dir'?)");
}

static void test_error_unknown_key_list(void **state)
{
    fixture_t *f = *state;

    write_conf(f, "listen = a:1\nfrobnicate = yes\n");
    assert_int_equal(jn_config_load_file(f->cfg, f->path, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, ":2: unknown key 'frobnicate' (known keys: data_dir, "
                                   "connectors_dir, listen, log_level, allow_hosts,"));
    assert_non_null(strstr(f->err, "run_interval_s, roles, workers,"));
    assert_non_null(strstr(f->err, "queue_retry_base_s, catch_up_window_s, "));
    assert_int_equal(strncmp(f->err, f->path, strlen(f->path)), 0);
}

static void test_error_bad_int(void **state)
{
    expect_file_error(*state, "listen = a:1\njob_memory_limit_mb = abc\n",
                      "2: 'job_memory_limit_mb' must be an integer between 1 and 4096, got 'abc'");
    expect_file_error(*state, "job_memory_limit_mb = 5000\n",
                      "1: 'job_memory_limit_mb' must be an integer between 1 and 4096, got '5000'");
    expect_file_error(*state, "job_memory_limit_mb = 0\n",
                      "1: 'job_memory_limit_mb' must be an integer between 1 and 4096, got '0'");
    expect_file_error(*state, "job_memory_limit_mb = 12mb\n",
                      "1: 'job_memory_limit_mb' must be an integer between 1 and 4096, got '12mb'");
    expect_file_error(*state, "http_max_redirects = 99999999999999999999999\n",
                      "1: 'http_max_redirects' must be an integer between 0 and 20, "
                      "got '99999999999999999999999'");
    expect_file_error(*state, "job_timeout_s =\n",
                      "1: 'job_timeout_s' must be an integer between 1 and 604800, got ''");
}

static void test_error_bad_size(void **state)
{
    expect_file_error(*state, "http_max_response_bytes = 12x\n",
                      "1: 'http_max_response_bytes' must be a size in bytes (optional k, m or g "
                      "suffix) between 1 and 4294967296, got '12x'");
    expect_file_error(*state, "http_max_response_bytes = 5g\n",
                      "1: 'http_max_response_bytes' must be a size in bytes (optional k, m or g "
                      "suffix) between 1 and 4294967296, got '5g'");
    expect_file_error(*state, "http_max_response_bytes = 9999999999999g\n",
                      "1: 'http_max_response_bytes' must be a size in bytes (optional k, m or g "
                      "suffix) between 1 and 4294967296, got '9999999999999g'");
}

static void test_error_bad_enum(void **state)
{
    expect_file_error(*state, "log_level = verbose\n",
                      "1: 'log_level' must be one of debug/info/warn/error/off, got 'verbose'");
}

static void test_error_syntax(void **state)
{
    expect_file_error(*state, "listen\n", "1: expected 'key = value', got 'listen'");
    expect_file_error(*state, "\n = 5\n", "2: missing key before '='");
    expect_file_error(*state, "listen = \"0.0.0.0:80\n",
                      "1: unterminated quoted value for 'listen'");
    expect_file_error(*state, "listen = \"0.0.0.0:80\" extra\n",
                      "1: unexpected text after the closing quote of 'listen': 'extra'");
    expect_file_error(*state, "listen = a:1\n# x\nlisten = b:2\n",
                      "3: 'listen' is already set on line 1");
    expect_file_error(*state, "data_dir = \"\"\n", "1: 'data_dir' must not be empty");
}

static void test_error_is_atomic(void **state)
{
    fixture_t *f = *state;

    write_conf(f, "listen = 0.0.0.0:1\njob_timeout_s = never\n");
    assert_int_equal(jn_config_load_file(f->cfg, f->path, f->err, sizeof(f->err)), -1);
    assert_string_equal(jn_config_str(f->cfg, "listen"), "127.0.0.1:8080");
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "default");
}

static void test_error_missing_file(void **state)
{
    fixture_t *f = *state;
    char path[400], expect[600];

    snprintf(path, sizeof(path), "%s/nope.conf", f->dir);
    assert_int_equal(jn_config_load_file(f->cfg, path, f->err, sizeof(f->err)), -1);
    snprintf(expect, sizeof(expect), "cannot read config file '%s': No such file or directory",
             path);
    assert_string_equal(f->err, expect);
}

/* ---- environment ---- */

static void test_env_overrides_file(void **state)
{
    fixture_t *f = *state;
    char *env[] = {"PATH=/bin",
                   "JUNCTION_LISTEN=0.0.0.0:7000",
                   "JUNCTION_ALLOW_HOSTS= a , b ",
                   "JUNCTION_LOG_LEVEL=\"debug\"",
                   "JUNCTION_HTTP_MAX_RESPONSE_BYTES=1m",
                   "NOT_JUNCTION_X=1",
                   NULL};
    const char *const *hosts;
    size_t n = 0;

    load_ok(f, "listen = 0.0.0.0:6000\njob_timeout_s = 60\n");
    assert_int_equal(jn_config_load_env(f->cfg, env, f->err, sizeof(f->err)), 0);
    assert_string_equal(jn_config_str(f->cfg, "listen"), "0.0.0.0:7000");
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "env");
    assert_int_equal(jn_config_int(f->cfg, "job_timeout_s"), 60);
    origin_is(f, "job_timeout_s", 2);
    hosts = jn_config_list(f->cfg, "allow_hosts", &n);
    assert_int_equal(n, 2);
    assert_string_equal(hosts[0], "a");
    assert_string_equal(hosts[1], "b");
    assert_string_equal(jn_config_str(f->cfg, "log_level"), "debug");
    assert_int_equal(jn_config_int(f->cfg, "http_max_response_bytes"), 1048576);

    /* The file loaded after the environment does not take precedence over it. */
    load_ok(f, "listen = 0.0.0.0:6001\n");
    assert_string_equal(jn_config_str(f->cfg, "listen"), "0.0.0.0:7000");
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "env");

    /* An explicit set beats both, and the environment does not undo it. */
    assert_int_equal(jn_config_set(f->cfg, "listen", "[::1]:1", f->err, sizeof(f->err)), 0);
    assert_int_equal(jn_config_load_env(f->cfg, env, f->err, sizeof(f->err)), 0);
    assert_string_equal(jn_config_str(f->cfg, "listen"), "[::1]:1");
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "set");
}

static void test_env_ignores_other_features(void **state)
{
    fixture_t *f = *state;
    char *env[] = {"JUNCTION_MASTER_KEY=00ff", "JUNCTION_MASTER_KEY_FILE=/run/secrets/key",
                   "JUNCTION_CONFIG=/etc/junction.conf", NULL};

    assert_int_equal(jn_config_load_env(f->cfg, env, f->err, sizeof(f->err)), 0);
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "default");
}

static void test_env_unknown_variable(void **state)
{
    fixture_t *f = *state;
    char *typo[] = {"JUNCTION_LISTEN=0.0.0.0:1", "JUNCTION_LSITEN=0.0.0.0:2", NULL};
    char *lower[] = {"JUNCTION_listen=0.0.0.0:2", NULL};
    char *other[] = {"JUNCTION_FROBNICATE=1", NULL};
    char *prefix_only[] = {"JUNCTION_=1", NULL};

    assert_int_equal(jn_config_load_env(f->cfg, typo, f->err, sizeof(f->err)), -1);
    assert_string_equal(
        f->err, "unknown environment variable JUNCTION_LSITEN (did you mean JUNCTION_LISTEN?)");
    /* Nothing of a failed load is applied. */
    assert_string_equal(jn_config_origin(f->cfg, "listen"), "default");

    assert_int_equal(jn_config_load_env(f->cfg, lower, f->err, sizeof(f->err)), -1);
    assert_string_equal(
        f->err, "unknown environment variable JUNCTION_listen (did you mean JUNCTION_LISTEN?)");

    assert_int_equal(jn_config_load_env(f->cfg, other, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "unknown environment variable JUNCTION_FROBNICATE (not a config "
                                   "key; known keys: data_dir, connectors_dir,"));

    assert_int_equal(jn_config_load_env(f->cfg, prefix_only, f->err, sizeof(f->err)), -1);
    assert_non_null(strstr(f->err, "unknown environment variable JUNCTION_ ("));
}

static void test_env_bad_value(void **state)
{
    fixture_t *f = *state;
    char *env[] = {"JUNCTION_JOB_TIMEOUT_S=0", NULL};

    assert_int_equal(jn_config_load_env(f->cfg, env, f->err, sizeof(f->err)), -1);
    assert_string_equal(f->err, "environment variable JUNCTION_JOB_TIMEOUT_S: 'job_timeout_s' "
                                "must be an integer between 1 and 604800, got '0'");
}

static void test_env_process_environment(void **state)
{
    fixture_t *f = *state;

    assert_int_equal(setenv("JUNCTION_HTTP_MAX_REDIRECTS", "7", 1), 0);
    assert_int_equal(jn_config_load_env(f->cfg, NULL, f->err, sizeof(f->err)), 0);
    unsetenv("JUNCTION_HTTP_MAX_REDIRECTS");
    assert_int_equal(jn_config_int(f->cfg, "http_max_redirects"), 7);
    assert_string_equal(jn_config_origin(f->cfg, "http_max_redirects"), "env");
}

/* ---- set, origins ---- */

static void test_set(void **state)
{
    fixture_t *f = *state;
    const char *const *hosts;
    size_t n = 0;

    assert_int_equal(jn_config_set(f->cfg, "allow_hosts", "x,y", f->err, sizeof(f->err)), 0);
    hosts = jn_config_list(f->cfg, "allow_hosts", &n);
    assert_int_equal(n, 2);
    assert_string_equal(hosts[1], "y");
    assert_string_equal(jn_config_origin(f->cfg, "allow_hosts"), "set");

    assert_int_equal(jn_config_set(f->cfg, "lisen", "x", f->err, sizeof(f->err)), -1);
    assert_string_equal(f->err, "unknown key 'lisen' (did you mean 'listen'?)");
    assert_int_equal(jn_config_set(f->cfg, "job_cpu_limit_ms", "5", f->err, sizeof(f->err)), -1);
    assert_string_equal(f->err,
                        "'job_cpu_limit_ms' must be an integer between 10 and 3600000, got '5'");
    assert_int_equal(jn_config_int(f->cfg, "job_cpu_limit_ms"), 10000);
    assert_string_equal(jn_config_origin(f->cfg, "job_cpu_limit_ms"), "default");
}

static void test_origins(void **state)
{
    fixture_t *f = *state;
    char *env[] = {"JUNCTION_JOB_TIMEOUT_S=10", NULL};

    load_ok(f, "# header\nlisten = a:1\n\nlog_level = error\n");
    assert_int_equal(jn_config_load_env(f->cfg, env, f->err, sizeof(f->err)), 0);
    assert_int_equal(jn_config_set(f->cfg, "run_interval_s", "60", f->err, sizeof(f->err)), 0);
    origin_is(f, "listen", 2);
    origin_is(f, "log_level", 4);
    assert_string_equal(jn_config_origin(f->cfg, "job_timeout_s"), "env");
    assert_string_equal(jn_config_origin(f->cfg, "run_interval_s"), "set");
    assert_string_equal(jn_config_origin(f->cfg, "data_dir"), "default");
}

/* ---- programming errors abort ---- */

typedef enum { CALL_INT_ON_STRING, CALL_STR_UNKNOWN, CALL_LIST_ON_INT } bad_call_t;

static void expect_abort(jn_config_t *cfg, bad_call_t call, const char *message)
{
    char out[512] = "";
    int fds[2], status = 0;
    ssize_t n;
    pid_t pid;

    assert_int_equal(pipe(fds), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        size_t count;

        dup2(fds[1], STDERR_FILENO);
        if (call == CALL_INT_ON_STRING)
            jn_config_int(cfg, "listen");
        else if (call == CALL_STR_UNKNOWN)
            jn_config_str(cfg, "no_such_key");
        else
            jn_config_list(cfg, "job_timeout_s", &count);
        _exit(0);
    }
    close(fds[1]);
    n = read(fds[0], out, sizeof(out) - 1);
    close(fds[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_true(n > 0);
    assert_non_null(strstr(out, message));
}

static void test_getters_abort_on_misuse(void **state)
{
    fixture_t *f = *state;

    expect_abort(f->cfg, CALL_INT_ON_STRING,
                 "jn_config_int: config key 'listen' is of type string");
    expect_abort(f->cfg, CALL_STR_UNKNOWN, "jn_config_str: unknown config key 'no_such_key'");
    expect_abort(f->cfg, CALL_LIST_ON_INT,
                 "jn_config_list: config key 'job_timeout_s' is of type int");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_file_parse),
        T(test_file_sizes),
        T(test_ratios),
        T(test_file_empty_list_and_quoted_empty),
        T(test_error_unknown_key_suggestion),
        T(test_error_unknown_key_list),
        T(test_error_bad_int),
        T(test_error_bad_size),
        T(test_error_bad_enum),
        T(test_error_syntax),
        T(test_error_is_atomic),
        T(test_error_missing_file),
        T(test_env_overrides_file),
        T(test_env_ignores_other_features),
        T(test_env_unknown_variable),
        T(test_env_bad_value),
        T(test_env_process_environment),
        T(test_set),
        T(test_origins),
        T(test_getters_abort_on_misuse),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

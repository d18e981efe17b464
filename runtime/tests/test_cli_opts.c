/* The table-driven option parser of the CLI commands (jn_cli_opts_parse):
 * the forms getopt_long accepted before, its messages word for word, and
 * what lands in the args struct. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli.h"

typedef struct {
    const char *config, *config_file, *data_dir;
    const char *allow[3];
    int nallow;
    int dry_run, verbose;
    int64_t limit;
} args_t;

static const jn_cli_opt_t opts[] = {
    {"config", 'c', JN_CLI_OPT_STRING, offsetof(args_t, config), 0, 0, 0, "FILE",
     "runtime config file"},
    {"config-file", 0, JN_CLI_OPT_STRING, offsetof(args_t, config_file), 0, 0, 0, "FILE", NULL},
    {"data-dir", 'd', JN_CLI_OPT_STRING, offsetof(args_t, data_dir), 0, 0, 0, "DIR",
     "the store's directory\n(overrides data_dir)"},
    {"allow-host", 0, JN_CLI_OPT_LIST, offsetof(args_t, allow), offsetof(args_t, nallow), 0, 3,
     "HOST", "reach HOST (repeatable)"},
    {"dry-run", 'n', JN_CLI_OPT_FLAG, offsetof(args_t, dry_run), 0, 0, 0, NULL, "change nothing"},
    {"verbose", 'v', JN_CLI_OPT_FLAG, offsetof(args_t, verbose), 0, 0, 0, NULL, NULL},
    {"limit", 0, JN_CLI_OPT_INT, offsetof(args_t, limit), 0, 0, 500, "N", "at most N"},
    JN_CLI_HELP,
    JN_CLI_END};

#define MAX_ARGS 16

typedef struct {
    char *argv[MAX_ARGS];
    int argc;
    args_t a;
    char err[256];
    int rc;
} run_t;

/* Parses the NULL-terminated words after the command name "list". */
static void parse(run_t *r, ...)
{
    va_list ap;
    char *w;

    memset(r, 0, sizeof(*r));
    r->a.limit = 50;
    r->argv[r->argc++] = "list";
    va_start(ap, r);
    while ((w = va_arg(ap, char *)) != NULL && r->argc < MAX_ARGS)
        r->argv[r->argc++] = w;
    va_end(ap);
    r->rc = jn_cli_opts_parse(opts, r->argc, r->argv, &r->a, r->err, sizeof(r->err));
}

static void test_both_value_forms(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--config", "a.conf", "--data-dir=/tmp/d", NULL);
    assert_int_equal(r.rc, 3 + 1);
    assert_string_equal(r.a.config, "a.conf");
    assert_string_equal(r.a.data_dir, "/tmp/d");
    assert_null(r.a.config_file);
    /* a value that looks like an option is still the value, as getopt_long took it */
    parse(&r, "--config", "--data-dir", NULL);
    assert_int_equal(r.rc, 3);
    assert_string_equal(r.a.config, "--data-dir");
    assert_null(r.a.data_dir);
    /* an empty value after '=' is a value */
    parse(&r, "--config=", NULL);
    assert_int_equal(r.rc, 2);
    assert_string_equal(r.a.config, "");
}

static void test_last_value_wins_and_defaults_stay(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--config", "one", "--config=two", NULL);
    assert_int_equal(r.rc, 4);
    assert_string_equal(r.a.config, "two");
    assert_int_equal(r.a.limit, 50);
    assert_int_equal(r.a.dry_run, 0);
}

static void test_operands_move_behind_options_in_order(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "first", "--dry-run", "second", "--config", "c", "third", NULL);
    assert_int_equal(r.rc, 4);
    assert_int_equal(r.a.dry_run, 1);
    assert_string_equal(r.a.config, "c");
    assert_string_equal(r.argv[0], "list");
    assert_string_equal(r.argv[1], "--dry-run");
    assert_string_equal(r.argv[2], "--config");
    assert_string_equal(r.argv[3], "c");
    assert_string_equal(r.argv[4], "first");
    assert_string_equal(r.argv[5], "second");
    assert_string_equal(r.argv[6], "third");
    /* a lone dash is an operand (stdin, by convention) */
    parse(&r, "-", NULL);
    assert_int_equal(r.rc, 1);
    assert_string_equal(r.argv[1], "-");
}

static void test_double_dash_ends_options(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "a", "--verbose", "--", "--dry-run", "-x", "b", NULL);
    assert_int_equal(r.rc, 3);
    assert_int_equal(r.a.verbose, 1);
    assert_int_equal(r.a.dry_run, 0);
    assert_string_equal(r.argv[1], "--verbose");
    assert_string_equal(r.argv[2], "--");
    assert_string_equal(r.argv[3], "a");
    assert_string_equal(r.argv[4], "--dry-run");
    assert_string_equal(r.argv[5], "-x");
    assert_string_equal(r.argv[6], "b");
    assert_int_equal(r.argc, 7);
}

static void test_unknown_option(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--bogus", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: unrecognized option '--bogus'");
    parse(&r, "id", "--bogus=1", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: unrecognized option '--bogus=1'");
    parse(&r, "-x", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: invalid option -- 'x'");
}

static void test_missing_value(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--dry-run", "--data-dir", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: option '--data-dir' requires an argument");
    /* the message names the option in full, also when abbreviated */
    parse(&r, "--data", NULL);
    assert_string_equal(r.err, "list: option '--data-dir' requires an argument");
    parse(&r, "-d", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: option requires an argument -- 'd'");
}

static void test_flag_given_a_value(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--dry-run=yes", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: option '--dry-run' doesn't allow an argument");
    assert_int_equal(r.a.dry_run, 0);
    parse(&r, "--help=1", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: option '--help' doesn't allow an argument");
}

static void test_prefixes(void **state)
{
    run_t r;

    (void)state;
    /* a unique prefix names the option */
    parse(&r, "--dry", "--lim", "7", NULL);
    assert_int_equal(r.rc, 4);
    assert_int_equal(r.a.dry_run, 1);
    assert_int_equal(r.a.limit, 7);
    /* an exact name wins over longer ones it is a prefix of */
    parse(&r, "--config", "x", NULL);
    assert_string_equal(r.a.config, "x");
    assert_null(r.a.config_file);
    /* a prefix of options that fill different fields is refused */
    parse(&r, "--conf=x", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_USAGE);
    assert_string_equal(r.err, "list: option '--conf=x' is ambiguous; possibilities: '--config'"
                               " '--config-file'");
    assert_null(r.a.config);
}

static void test_integer_range(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--limit", "0", NULL);
    assert_int_equal(r.rc, 3);
    assert_int_equal(r.a.limit, 0);
    parse(&r, "--limit=500", NULL);
    assert_int_equal(r.a.limit, 500);
    parse(&r, "--limit", "501", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_INVALID);
    assert_string_equal(r.err, "--limit must be a whole number from 0 to 500, got '501'");
    assert_int_equal(r.a.limit, 50);
    parse(&r, "--limit", "-1", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_INVALID);
    assert_string_equal(r.err, "--limit must be a whole number from 0 to 500, got '-1'");
    parse(&r, "--limit", "12abc", NULL);
    assert_string_equal(r.err, "--limit must be a whole number from 0 to 500, got '12abc'");
    parse(&r, "--limit=", NULL);
    assert_string_equal(r.err, "--limit must be a whole number from 0 to 500, got ''");
    parse(&r, "--limit", "99999999999999999999999", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_INVALID);
}

static void test_repeatable_list(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--allow-host", "a:1", "op", "--allow-host=b", NULL);
    assert_int_equal(r.rc, 4);
    assert_int_equal(r.a.nallow, 2);
    assert_string_equal(r.a.allow[0], "a:1");
    assert_string_equal(r.a.allow[1], "b");
    assert_string_equal(r.argv[4], "op");
    parse(&r, "--allow-host", "1", "--allow-host", "2", "--allow-host", "3", "--allow-host", "4",
          NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_INVALID);
    assert_string_equal(r.err, "at most 3 --allow-host");
    assert_int_equal(r.a.nallow, 3);
}

static void test_short_letters(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "-nv", "-cfile", "-d", "dir", NULL);
    assert_int_equal(r.rc, 5);
    assert_int_equal(r.a.dry_run, 1);
    assert_int_equal(r.a.verbose, 1);
    assert_string_equal(r.a.config, "file");
    assert_string_equal(r.a.data_dir, "dir");
}

static void test_help_stops_parsing(void **state)
{
    run_t r;

    (void)state;
    parse(&r, "--help", "--bogus", NULL);
    assert_int_equal(r.rc, JN_CLI_OPTS_HELP);
}

static void test_usage_from_the_table(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    (void)state;
    assert_non_null(f);
    jn_cli_opts_usage(f, opts, 18);
    fclose(f);
    assert_string_equal(text, "  --config FILE      runtime config file\n"
                              "  --data-dir DIR     the store's directory\n"
                              "                     (overrides data_dir)\n"
                              "  --allow-host HOST  reach HOST (repeatable)\n"
                              "  --dry-run          change nothing\n"
                              "  --limit N          at most N\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_value_forms),
        cmocka_unit_test(test_last_value_wins_and_defaults_stay),
        cmocka_unit_test(test_operands_move_behind_options_in_order),
        cmocka_unit_test(test_double_dash_ends_options),
        cmocka_unit_test(test_unknown_option),
        cmocka_unit_test(test_missing_value),
        cmocka_unit_test(test_flag_given_a_value),
        cmocka_unit_test(test_prefixes),
        cmocka_unit_test(test_integer_range),
        cmocka_unit_test(test_repeatable_list),
        cmocka_unit_test(test_short_letters),
        cmocka_unit_test(test_help_stops_parsing),
        cmocka_unit_test(test_usage_from_the_table),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

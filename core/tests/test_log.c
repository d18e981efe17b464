#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "junction/log.h"
#include "junction/redact.h"

/* ---- A strict JSON validator, independent of the logger's own ----------- */

static const char *js_value(const char *p, int depth);

static const char *js_ws(const char *p)
{
    return p + strspn(p, " \t\r\n");
}

/* Well-formed UTF-8 sequence length at p, or 0. */
static size_t js_utf8(const unsigned char *p)
{
    uint32_t c;
    size_t n;
    if (p[0] < 0x80)
        return 1;
    if (p[0] >= 0xC2 && p[0] <= 0xDF)
        n = 2, c = p[0] & 0x1F;
    else if (p[0] >= 0xE0 && p[0] <= 0xEF)
        n = 3, c = p[0] & 0x0F;
    else if (p[0] >= 0xF0 && p[0] <= 0xF4)
        n = 4, c = p[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        c = c << 6 | (p[i] & 0x3F);
    }
    if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
        (c >= 0xD800 && c <= 0xDFFF))
        return 0;
    return n;
}

static const char *js_string(const char *p)
{
    for (p++; *p != '"';) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20)
            return NULL;
        if (c == '\\') {
            p++;
            if (*p == 'u') {
                for (int i = 1; i <= 4; i++) {
                    if (!strchr("0123456789abcdefABCDEF", p[i]) || p[i] == '\0')
                        return NULL;
                }
                p += 5;
            } else if (*p != '\0' && strchr("\"\\/bfnrt", *p)) {
                p++;
            } else {
                return NULL;
            }
            continue;
        }
        size_t n = js_utf8((const unsigned char *)p);
        if (n == 0)
            return NULL;
        p += n;
    }
    return p + 1;
}

static const char *js_members(const char *p, char close, int depth)
{
    p = js_ws(p + 1);
    if (*p == close)
        return p + 1;
    for (;;) {
        if (close == '}') {
            if (*p != '"' || (p = js_string(p)) == NULL)
                return NULL;
            p = js_ws(p);
            if (*p++ != ':')
                return NULL;
        }
        if ((p = js_value(p, depth + 1)) == NULL)
            return NULL;
        p = js_ws(p);
        if (*p == close)
            return p + 1;
        if (*p++ != ',')
            return NULL;
        p = js_ws(p);
    }
}

static const char *js_value(const char *p, int depth)
{
    if (depth > 100)
        return NULL;
    p = js_ws(p);
    if (*p == '{' || *p == '[')
        return js_members(p, *p == '{' ? '}' : ']', depth);
    if (*p == '"')
        return js_string(p);
    static const char *const words[] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        if (strncmp(p, words[i], strlen(words[i])) == 0)
            return p + strlen(words[i]);
    }
    char *end;
    if (*p != '-' && (*p < '0' || *p > '9'))
        return NULL;
    strtod(p, &end);
    return end;
}

/* One line (without its '\n') must be exactly one JSON object. */
static int valid_json_object_line(const char *line)
{
    if (*line != '{')
        return 0;
    const char *end = js_value(line, 0);
    return end != NULL && *js_ws(end) == '\0';
}

/* ---- Capture ------------------------------------------------------------ */

struct capture {
    FILE *f;
    char *buf;
    size_t len;
};

static struct capture cap;

static int setup(void **state)
{
    (void)state;
    cap.buf = NULL;
    cap.len = 0;
    cap.f = open_memstream(&cap.buf, &cap.len);
    assert_non_null(cap.f);
    jn_log_set_stream(cap.f);
    jn_log_set_level(JN_LOG_DEBUG);
    jn_log_set_redactor(NULL, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    jn_log_set_stream(NULL);
    jn_log_set_level(JN_LOG_INFO);
    fclose(cap.f);
    free(cap.buf);
    return 0;
}

/* Everything logged so far; resets the capture. Caller frees. */
static char *take(void)
{
    fflush(cap.f);
    char *out = strndup(cap.buf, cap.len);
    assert_non_null(out);
    fclose(cap.f);
    free(cap.buf);
    cap.buf = NULL;
    cap.f = open_memstream(&cap.buf, &cap.len);
    assert_non_null(cap.f);
    jn_log_set_stream(cap.f);
    return out;
}

static int is_digit_at(const char *s, size_t i)
{
    return s[i] >= '0' && s[i] <= '9';
}

/* Checks the shape {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ","level":"<level>",<tail>
 * and that the line is valid JSON; `tail` must match the rest exactly. */
static void expect_line(const char *line, const char *level, const char *tail)
{
    static const char head[] = "{\"ts\":\"";
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    size_t len = strcspn(line, "\n");
    char *one = strndup(line, len);
    assert_non_null(one);
    if (!valid_json_object_line(one))
        fail_msg("not valid JSON: %s", one);
    assert_int_equal(strncmp(one, head, sizeof(head) - 1), 0);
    const char *ts = one + sizeof(head) - 1;
    for (size_t i = 0; i < sizeof(shape) - 1; i++) {
        if (shape[i] == 'd' ? !is_digit_at(ts, i) : ts[i] != shape[i])
            fail_msg("bad timestamp in %s", one);
    }
    size_t n = strlen(level) + strlen(tail) + 16;
    char *want = malloc(n);
    assert_non_null(want);
    snprintf(want, n, "\",\"level\":\"%s\",%s", level, tail);
    assert_string_equal(ts + sizeof(shape) - 1, want);
    free(want);
    free(one);
}

static void expect_only_line(const char *level, const char *tail)
{
    char *out = take();
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_ptr_equal(strchr(out, '\n'), out + len - 1);
    expect_line(out, level, tail);
    free(out);
}

/* ---- Tests -------------------------------------------------------------- */

static void test_basic_line(void **state)
{
    (void)state;
    jn_log_info("hello %d", 42);
    expect_only_line("info", "\"msg\":\"hello 42\"}");
    jn_log_error("%s", "");
    expect_only_line("error", "\"msg\":\"\"}");
    jn_log_fields(JN_LOG_WARN, NULL, NULL, 0);
    expect_only_line("warn", "\"msg\":\"\"}");
}

static void test_timestamp_is_now(void **state)
{
    (void)state;
    time_t before = time(NULL);
    jn_log_info("t");
    char *out = take();
    struct tm tm = {0};
    assert_non_null(strptime(out + 7, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t logged = timegm(&tm);
    assert_true(logged >= before - 1 && logged <= time(NULL) + 1);
    free(out);
}

static void test_escaping(void **state)
{
    (void)state;
    jn_log_info("q\"b\\s/\n\r\t\x01\x1f\x7f end");
    expect_only_line("info", "\"msg\":\"q\\\"b\\\\s/\\n\\r\\t\\u0001\\u001f\\u007f end\"}");
    jn_log_info("\b\f");
    expect_only_line("info", "\"msg\":\"\\u0008\\u000c\"}");
}

static void test_utf8(void **state)
{
    (void)state;
    /* Valid multi-byte text passes through as is. */
    jn_log_info("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
    expect_only_line("info", "\"msg\":\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\"}");

#define FFFD "\xEF\xBF\xBD"
    static const char *const bad[][2] = {
        {"a\xFF"
         "b",
         "a" FFFD "b"},
        {"\xC0\xAF", FFFD FFFD},                   /* overlong '/' */
        {"x\xE2\x82", "x" FFFD FFFD},              /* truncated */
        {"\xED\xA0\x80", FFFD FFFD FFFD},          /* surrogate */
        {"\xF4\x90\x80\x80", FFFD FFFD FFFD FFFD}, /* above U+10FFFF */
        {"\x80z", FFFD "z"},                       /* lone continuation */
        {"\xE2\x80\xA8", "\\u2028"},               /* line separator */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char tail[128];
        jn_log_info("%s", bad[i][0]);
        snprintf(tail, sizeof(tail), "\"msg\":\"%s\"}", bad[i][1]);
        expect_only_line("info", tail);
    }
    jn_log_field_t f = {"k\xFF", "v\xC3", 0};
    jn_log_fields(JN_LOG_INFO, "m", &f, 1);
    expect_only_line("info", "\"msg\":\"m\",\"k" FFFD "\":\"v" FFFD "\"}");
#undef FFFD
}

static void test_levels(void **state)
{
    (void)state;
    jn_log_set_level(JN_LOG_WARN);
    assert_int_equal(jn_log_get_level(), JN_LOG_WARN);
    jn_log_debug("d");
    jn_log_info("i");
    jn_log_warn("w");
    jn_log_error("e");
    char *out = take();
    const char *second = strchr(out, '\n') + 1;
    expect_line(out, "warn", "\"msg\":\"w\"}");
    expect_line(second, "error", "\"msg\":\"e\"}");
    assert_string_equal(strchr(second, '\n'), "\n");
    free(out);

    jn_log_set_level(JN_LOG_OFF);
    jn_log_error("e");
    jn_log_set_level(JN_LOG_DEBUG);
    jn_log_fields(JN_LOG_OFF, "never", NULL, 0);
    jn_log_fields((jn_log_level_t)42, "never", NULL, 0);
    out = take();
    assert_string_equal(out, "");
    free(out);

    jn_log_debug("d");
    expect_only_line("debug", "\"msg\":\"d\"}");
}

static void test_level_names(void **state)
{
    (void)state;
    static const char *const names[] = {"debug", "info", "warn", "error", "off"};
    for (int i = JN_LOG_DEBUG; i <= JN_LOG_OFF; i++) {
        assert_string_equal(jn_log_level_name((jn_log_level_t)i), names[i]);
        assert_int_equal(jn_log_level_parse(names[i]), i);
    }
    assert_int_equal(jn_log_level_parse("WARN"), JN_LOG_WARN);
    assert_int_equal(jn_log_level_parse("warning"), JN_LOG_WARN);
    assert_int_equal(jn_log_level_parse("verbose"), -1);
    assert_int_equal(jn_log_level_parse(""), -1);
    assert_int_equal(jn_log_level_parse(NULL), -1);
}

static void test_fields(void **state)
{
    (void)state;
    const jn_log_field_t f[] = {
        {"connector", "github", 0},
        {"count", "42", 1},
        {"ok", "true", 1},
        {"obj", "{ \"a\" : [1, 2.5e3, null],\n  \"b\": {} }", 1},
        {"we\"ird\nkey", "v\"al", 0},
        {"missing", NULL, 0},
        {NULL, "skipped", 0},
        {"broken", "{\"a\":", 1},
        {"newline_in_string", "\"a\nb\"", 1},
        {"trailing", "1 2", 1},
        {"num_as_string", "42", 0},
    };
    jn_log_fields(JN_LOG_INFO, "sync done", f, sizeof(f) / sizeof(f[0]));
    expect_only_line("info", "\"msg\":\"sync done\",\"connector\":\"github\",\"count\":42,"
                             "\"ok\":true,\"obj\":{\"a\":[1,2.5e3,null],\"b\":{}},"
                             "\"we\\\"ird\\nkey\":\"v\\\"al\",\"missing\":null,"
                             "\"broken\":\"{\\\"a\\\":\",\"newline_in_string\":\"\\\"a\\nb\\\"\","
                             "\"trailing\":\"1 2\",\"num_as_string\":\"42\"}");
}

static void test_raw_json_rejects(void **state)
{
    (void)state;
    static const char *const bad[] = {"",    " ",    "01",      "1.",       "-",       "+1",
                                      "tru", "[1,]", "{\"a\"}", "{a:1}",    "\"\\x\"", "\"\\u12\"",
                                      "[1",  "nul",  "1e",      "\"\xFF\"", "\"\t\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        jn_log_field_t f = {"r", bad[i], 1};
        jn_log_fields(JN_LOG_INFO, "m", &f, 1);
        char *out = take();
        const char *v = strstr(out, "\"r\":");
        assert_non_null(v);
        if (v[4] != '"')
            fail_msg("raw %s was not demoted to a string: %s", bad[i], out);
        *strchr(out, '\n') = '\0';
        assert_true(valid_json_object_line(out));
        free(out);
    }
    char deep[300];
    memset(deep, '[', 150);
    memset(deep + 150, ']', 150);
    deep[299] = '\0';
    jn_log_field_t f = {"deep", deep, 1};
    jn_log_fields(JN_LOG_INFO, "m", &f, 1);
    char *out = take();
    assert_non_null(strstr(out, "\"deep\":\"[[["));
    free(out);
}

#define CANARY "canary-7f3a9c2e51"

static void test_global_redactor(void **state)
{
    (void)state;
    jn_redactor_t *g = jn_redactor_global();
    const char *quoted = "pa\"ss\nword-canary";
    jn_redactor_add_secret(g, CANARY, strlen(CANARY));
    jn_redactor_add_secret(g, quoted, strlen(quoted));

    jn_log_info("connecting with %s to host", CANARY);
    jn_log_warn("bad utf8 \xFF%s\xFF", CANARY);
    jn_log_error("escaped form %s", quoted);
    const jn_log_field_t f[] = {
        {"value", "prefix-" CANARY "-suffix", 0},
        {"raw", "{\"nested\":\"" CANARY "\",\"n\":1}", 1},
        {CANARY, "as a key", 0},
        {"header", "Authorization: Bearer abc.def", 0},
        {"password", "hunter2", 0},
        {"Authorization", "Bearer abc", 1},
        {"url", "https://api.example.com/x?access_token=ya29.a0AfH6", 0},
    };
    jn_log_fields(JN_LOG_INFO, "fields " CANARY, f, sizeof(f) / sizeof(f[0]));

    char *out = take();
    assert_null(strstr(out, CANARY));
    assert_null(strstr(out, "pa\\\"ss\\nword-canary"));
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "abc.def"));
    assert_null(strstr(out, "ya29"));

    char *line = out, *next;
    const char *tails[] = {
        "\"msg\":\"connecting with [REDACTED] to host\"}",
        "\"msg\":\"bad utf8 \xEF\xBF\xBD[REDACTED]\xEF\xBF\xBD\"}",
        "\"msg\":\"escaped form [REDACTED]\"}",
        "\"msg\":\"fields [REDACTED]\",\"value\":\"prefix-[REDACTED]-suffix\","
        "\"raw\":{\"nested\":\"[REDACTED]\",\"n\":1},\"[REDACTED]\":\"as a key\","
        "\"header\":\"Authorization: Bearer [REDACTED]\",\"password\":\"[REDACTED]\","
        "\"Authorization\":\"[REDACTED]\","
        "\"url\":\"https://api.example.com/x?access_token=[REDACTED]\"}",
    };
    const char *levels[] = {"info", "warn", "error", "info"};
    for (size_t i = 0; i < 4; i++, line = next) {
        next = strchr(line, '\n');
        assert_non_null(next);
        *next++ = '\0';
        expect_line(line, levels[i], tails[i]);
    }
    assert_string_equal(line, "");
    free(out);

    jn_redactor_remove_secret(g, CANARY, strlen(CANARY));
    jn_redactor_remove_secret(g, quoted, strlen(quoted));
}

static int custom_calls;

static char *custom_redactor(void *ud, const char *in, size_t len)
{
    custom_calls++;
    const char *word = ud;
    const char *hit = strstr(in, word);
    if (hit == NULL || (size_t)(hit - in) >= len)
        return NULL;
    char *out = strdup(in);
    memset(out + (hit - in), '*', strlen(word));
    return out;
}

static void test_custom_redactor(void **state)
{
    (void)state;
    jn_log_set_redactor(custom_redactor, "plum");
    custom_calls = 0;
    jn_log_field_t f = {"fruit", "plum", 0};
    jn_log_fields(JN_LOG_INFO, "a plum", &f, 1);
    expect_only_line("info", "\"msg\":\"a ****\",\"fruit\":\"****\"}");
    assert_true(custom_calls >= 2);

    /* NULL restores the default (global) redactor rather than none. */
    jn_log_set_redactor(NULL, NULL);
    jn_log_info("token=abc plum");
    expect_only_line("info", "\"msg\":\"token=[REDACTED] plum\"}");
}

static void test_long_message(void **state)
{
    (void)state;
    char *big = malloc(10001);
    assert_non_null(big);
    memset(big, 'x', 10000);
    big[10000] = '\0';
    jn_log_info("<%s>", big);
    char *out = take();
    char *want = malloc(10100);
    snprintf(want, 10100, "\"msg\":\"<%s>\"}", big);
    *strchr(out, '\n') = '\0';
    expect_line(out, "info", want);
    free(want);
    free(out);
    free(big);
}

#define THREADS 4
#define LINES 500

static void *writer(void *arg)
{
    long id = (long)(intptr_t)arg;
    char value[64];
    for (int i = 0; i < LINES; i++) {
        snprintf(value, sizeof(value), "%ld-%d", id, i);
        jn_log_field_t f[] = {{"thread", value, 0}, {"i", "1", 1}};
        jn_log_fields(JN_LOG_INFO, "concurrent line with some padding \"quoted\"\n", f, 2);
    }
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    jn_log_set_stream(f);
    pthread_t tid[THREADS];
    for (long i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&tid[i], NULL, writer, (void *)(intptr_t)i), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(tid[i], NULL);
    jn_log_set_stream(cap.f);

    rewind(f);
    char line[512];
    int count = 0, per_thread[THREADS] = {0};
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        assert_int_equal(line[len - 1], '\n');
        line[len - 1] = '\0';
        if (!valid_json_object_line(line))
            fail_msg("interleaved or invalid line: %s", line);
        const char *t = strstr(line, "\"thread\":\"");
        assert_non_null(t);
        int id = t[10] - '0';
        assert_true(id >= 0 && id < THREADS);
        per_thread[id]++;
        count++;
    }
    fclose(f);
    assert_int_equal(count, THREADS * LINES);
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(per_thread[i], LINES);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_basic_line),      T(test_timestamp_is_now),
        T(test_escaping),        T(test_utf8),
        T(test_levels),          T(test_level_names),
        T(test_fields),          T(test_raw_json_rejects),
        T(test_global_redactor), T(test_custom_redactor),
        T(test_long_message),    T(test_threads_do_not_interleave),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The server's request parser under random and mutated input, in-process,
 * many thousands of times: it must never read or write out of bounds (the
 * ASan build checks), must agree with itself whatever way the input is
 * split, and must keep its promises on what it accepts. The same parser is
 * driven over real connections in test_http_server.c.
 */
#include "../src/http_server_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ITERATIONS 60000
#define FUZZ_MAX_INPUT 2048

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: reproducible from the seed printed on failure. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

static const char *const seeds[] = {
    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET http://t/a/b?c=d HTTP/1.1\r\nHost: t\r\nX-Request-Id: abc\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    "\r\n\r\nHEAD /x%20y HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
    "DELETE /v1/integrations/{id} HTTP/1.1\r\nHost: [::1]:80\r\nA: \t b \t\r\n\r\n",
};

static const char *const chunk_seeds[] = {
    "5\r\nhello\r\n0\r\n\r\n",
    "3;a=b;c=\"d\"\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nT: v\r\nU: w\r\n\r\n",
    "1 ;x\r\na\r\n0\r\n\r\n",
};

static size_t mutate(char *buf, size_t len, size_t cap)
{
    static const char tokens[] = "\r\n\0 :;,\t%/?#\x7f\x80\xff";
    int n = 1 + (int)(rnd() % 8);

    for (int m = 0; m < n; m++) {
        size_t pos = len ? (size_t)(rnd() % len) : 0;

        switch (rnd() % 6) {
        case 0:
            if (len)
                buf[pos] = (char)rnd();
            break;
        case 1:
            if (len) {
                memmove(buf + pos, buf + pos + 1, len - pos - 1);
                len--;
            }
            break;
        case 2:
            if (len < cap) {
                memmove(buf + pos + 1, buf + pos, len - pos);
                buf[pos] = tokens[rnd() % (sizeof tokens - 1)];
                len++;
            }
            break;
        case 3: {
            size_t span = (size_t)(rnd() % 64);

            if (span > len - pos)
                span = len - pos;
            if (len + span <= cap) {
                memmove(buf + pos + span, buf + pos, len - pos);
                len += span;
            }
            break;
        }
        case 4:
            len = pos;
            break;
        default:
            if (len)
                buf[pos] = tokens[rnd() % (sizeof tokens - 1)];
            break;
        }
    }
    return len;
}

/* Scans `in` fed in random pieces (as reads deliver it) and parses the head
 * when one is found. Returns the scan result. */
static int scan_and_parse(const char *in, size_t len, const hs_limits_t *lim)
{
    hs_scan_t st = {0};
    size_t head_len = 0, fed = 0;
    hs_fail_t fail = {0};
    int r = 0;

    while (fed < len) {
        size_t step = 1 + (size_t)(rnd() % 64);

        fed = fed + step > len ? len : fed + step;
        r = hs_scan_head(&st, in, fed, lim, &head_len, &fail);
        if (r != 0)
            break;
    }
    if (r < 0) {
        assert_true(fail.status == 400 || fail.status == 431);
        assert_non_null(fail.message);
    }
    if (r == 1) {
        /* The parser gets its own exact-size copy, so ASan sees any overrun. */
        char *copy = malloc(head_len + 1);
        hs_header_t *hdrs = malloc((st.lines + 1) * sizeof *hdrs);
        hs_head_t h;

        assert_true(head_len <= lim->max_header_bytes);
        memcpy(copy, in, head_len);
        copy[head_len] = '\0';
        if (hs_parse_head(copy, head_len, hdrs, st.lines, &h, &fail) == 0) {
            assert_true(h.path[0] == '/');
            assert_true(h.minor == 0 || h.minor == 1);
            /* Never both framings, never chunked in HTTP/1.0. */
            assert_false(h.chunked && h.content_length >= 0);
            assert_false(h.chunked && h.minor == 0);
            for (size_t i = 0; i < h.nheaders; i++) {
                assert_null(strpbrk(hdrs[i].value, "\r\n"));
                assert_true(hdrs[i].name[0] != '\0');
            }
        } else {
            assert_true(fail.status >= 400 && fail.status <= 505);
            assert_non_null(fail.code);
        }
        free(hdrs);
        free(copy);
    }
    return r;
}

static void test_head_parser_fuzz(void **state)
{
    hs_limits_t lim = {1024, 20};
    char buf[FUZZ_MAX_INPUT];
    int complete = 0, failed = 0;

    (void)state;
    rng_state = 0x9e3779b97f4a7c15ULL;
    for (int it = 0; it < ITERATIONS; it++) {
        const char *seed = seeds[rnd() % (sizeof seeds / sizeof seeds[0])];
        size_t len = strlen(seed);
        char *in;
        int r;

        memcpy(buf, seed, len);
        if (it % 10 == 0) {
            /* Pure noise now and then. */
            len = (size_t)(rnd() % 512);
            for (size_t i = 0; i < len; i++)
                buf[i] = (char)rnd();
        } else {
            len = mutate(buf, len, sizeof buf);
        }
        in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        r = scan_and_parse(in, len, &lim);
        complete += r == 1;
        failed += r < 0;
        free(in);
    }
    /* The mutations reach both sides of the parser. */
    assert_true(complete > ITERATIONS / 20);
    assert_true(failed > ITERATIONS / 20);
}

static void test_chunked_decoder_fuzz(void **state)
{
    hs_limits_t lim = {256, 8};
    char buf[FUZZ_MAX_INPUT];
    int done = 0;

    (void)state;
    rng_state = 0x243f6a8885a308d3ULL;
    for (int it = 0; it < ITERATIONS; it++) {
        const char *seed = chunk_seeds[rnd() % (sizeof chunk_seeds / sizeof chunk_seeds[0])];
        size_t len = strlen(seed), off = 0, total = 0;
        hs_chunked_t st;
        char *in;
        int r = HS_CHUNK_MORE;

        memcpy(buf, seed, len);
        if (it % 4)
            len = mutate(buf, len, sizeof buf);
        in = malloc(len ? len : 1);
        memcpy(in, buf, len);
        hs_chunked_init(&st, 64, &lim);
        while (off < len) {
            size_t piece = 1 + (size_t)(rnd() % 16), consumed = 0, dlen = 0;
            const char *data = NULL;
            hs_fail_t fail;

            if (piece > len - off)
                piece = len - off;
            r = hs_chunked_step(&st, in + off, piece, &consumed, &data, &dlen, &fail);
            assert_true(consumed <= piece);
            if (r == HS_CHUNK_DATA) {
                assert_true(data >= in + off && data + dlen <= in + off + consumed);
                total += dlen;
            }
            off += consumed;
            if (r == HS_CHUNK_FAIL) {
                assert_true(fail.status == 400 || fail.status == 413 || fail.status == 431);
                break;
            }
            if (r == HS_CHUNK_DONE)
                break;
        }
        /* The limit holds however the chunks are cut. */
        assert_true(total <= 64);
        done += r == HS_CHUNK_DONE;
        free(in);
    }
    assert_true(done > 0);
}

/* Splitting the input differently never changes the outcome. */
static void test_scan_is_split_independent(void **state)
{
    hs_limits_t lim = {4096, 50};
    char buf[FUZZ_MAX_INPUT];

    (void)state;
    rng_state = 0xb7e151628aed2a6bULL;
    for (int it = 0; it < 5000; it++) {
        const char *seed = seeds[rnd() % (sizeof seeds / sizeof seeds[0])];
        size_t len = mutate(memcpy(buf, seed, strlen(seed)), strlen(seed), sizeof buf);
        hs_scan_t a = {0}, b = {0};
        size_t la = 0, lb = 0;
        hs_fail_t fa, fb;
        int ra, rb = 0;

        ra = hs_scan_head(&a, buf, len, &lim, &la, &fa);
        for (size_t fed = 1; fed <= len; fed++) {
            rb = hs_scan_head(&b, buf, fed, &lim, &lb, &fb);
            if (rb != 0)
                break;
        }
        assert_int_equal(ra, rb);
        if (ra == 1)
            assert_int_equal(la, lb);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_parser_fuzz),
        cmocka_unit_test(test_chunked_decoder_fuzz),
        cmocka_unit_test(test_scan_is_split_independent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

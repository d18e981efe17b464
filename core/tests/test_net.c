#include "junction/net.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

static void to_sockaddr(const char *ip, struct sockaddr_storage *ss)
{
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof *ss);
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        return;
    }
    assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
    in6->sin6_family = AF_INET6;
}

static const struct {
    const char *ip;
    int is_public;
} addr_cases[] = {
    /* IPv4 public */
    {"8.8.8.8", 1},
    {"1.1.1.1", 1},
    {"93.184.216.34", 1},
    {"100.63.255.255", 1},
    {"100.128.0.0", 1},
    {"172.15.255.255", 1},
    {"172.32.0.0", 1},
    {"192.0.1.1", 1},
    {"192.169.0.1", 1},
    {"198.17.255.255", 1},
    {"198.20.0.0", 1},
    {"223.255.255.255", 1},
    /* IPv4 special */
    {"0.0.0.0", 0},
    {"0.1.2.3", 0},
    {"10.0.0.1", 0},
    {"10.255.255.255", 0},
    {"100.64.0.1", 0},
    {"100.127.255.255", 0},
    {"127.0.0.1", 0},
    {"127.255.255.254", 0},
    {"169.254.169.254", 0},
    {"172.16.0.1", 0},
    {"172.31.255.255", 0},
    {"192.0.0.1", 0},
    {"192.0.2.55", 0},
    {"192.88.99.1", 0},
    {"192.168.1.1", 0},
    {"198.18.0.1", 0},
    {"198.19.255.255", 0},
    {"198.51.100.7", 0},
    {"203.0.113.9", 0},
    {"224.0.0.1", 0},
    {"239.255.255.250", 0},
    {"240.0.0.1", 0},
    {"255.255.255.255", 0},
    /* IPv6 public */
    {"2606:4700:4700::1111", 1},
    {"2001:4860:4860::8888", 1},
    {"2a00:1450:4001:80b::200e", 1},
    {"2002:0808:0808::1", 1}, /* 6to4 of 8.8.8.8 */
    {"::ffff:8.8.8.8", 1},    /* mapped public */
    {"64:ff9b::808:808", 1},  /* NAT64 of 8.8.8.8 */
    {"3ffe:ffff::1", 1},      /* outside 3fff::/20 */
    /* IPv6 special */
    {"::", 0},
    {"::1", 0},
    {"::ffff:127.0.0.1", 0},
    {"::ffff:10.1.2.3", 0},
    {"::ffff:169.254.169.254", 0},
    {"::ffff:0.0.0.0", 0},
    {"::ffff:0:192.168.0.1", 0}, /* IPv4-translated */
    {"::127.0.0.1", 0},          /* IPv4-compatible */
    {"::10.0.0.1", 0},
    {"64:ff9b::10.0.0.1", 0}, /* NAT64 of private */
    {"64:ff9b::7f00:1", 0},
    {"64:ff9b:1::8.8.8.8", 0}, /* local-use NAT64 */
    {"2002:7f00:0001::1", 0},  /* 6to4 of 127.0.0.1 */
    {"2002:c0a8:0101::1", 0},  /* 6to4 of 192.168.1.1 */
    {"2002:a9fe:a9fe::", 0},   /* 6to4 of 169.254.169.254 */
    {"fc00::1", 0},
    {"fd12:3456:789a::1", 0},
    {"fe80::1", 0},
    {"febf:ffff::1", 0},
    {"fec0::1", 0}, /* site-local (deprecated) */
    {"ff02::1", 0},
    {"ff0e::1", 0},
    {"2001:db8::1", 0},
    {"2001:db8:ffff::1", 0},
    {"2001::1", 0},   /* Teredo */
    {"2001:2::1", 0}, /* benchmarking */
    {"3fff::1", 0},   /* documentation (RFC 9637) */
    {"100::1", 0},    /* discard-only */
    {"5f00::1", 0},
    {"4000::1", 0},
};

static void test_addr_classification(void **state)
{
    struct sockaddr_storage ss;

    (void)state;
    for (size_t i = 0; i < sizeof addr_cases / sizeof addr_cases[0]; i++) {
        to_sockaddr(addr_cases[i].ip, &ss);
        int got = jn_net_addr_is_public((struct sockaddr *)&ss);
        if (got != addr_cases[i].is_public)
            print_error("%s: expected %d, got %d\n", addr_cases[i].ip, addr_cases[i].is_public,
                        got);
        assert_int_equal(got, addr_cases[i].is_public);
    }
}

static void test_addr_other_families(void **state)
{
    struct sockaddr_un un;

    (void)state;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    assert_int_equal(jn_net_addr_is_public((struct sockaddr *)&un), 0);
    assert_int_equal(jn_net_addr_is_public(NULL), 0);
}

static void test_addr_str(void **state)
{
    struct sockaddr_storage ss;
    struct sockaddr_un un;
    char buf[64];

    (void)state;
    to_sockaddr("10.0.0.1", &ss);
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&ss, buf, sizeof buf), "10.0.0.1");
    to_sockaddr("::1", &ss);
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&ss, buf, sizeof buf), "::1");
    to_sockaddr("::ffff:192.168.0.1", &ss);
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&ss, buf, sizeof buf),
                        "::ffff:192.168.0.1");
    to_sockaddr("2001:DB8:0:0::1", &ss);
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&ss, buf, sizeof buf), "2001:db8::1");
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&un, buf, sizeof buf), "");
    /* Too small a buffer gives an empty string, never a truncated address. */
    to_sockaddr("192.168.100.200", &ss);
    assert_string_equal(jn_net_addr_str((struct sockaddr *)&ss, buf, 8), "");
}

static const struct {
    const char *url;
    int rc;
    const char *scheme;
    const char *host;
    int port;
} origin_cases[] = {
    {"http://example.com", 0, "http", "example.com", 80},
    {"http://example.com/", 0, "http", "example.com", 80},
    {"https://example.com/a/b?c=d#e", 0, "https", "example.com", 443},
    {"https://example.com:443/", 0, "https", "example.com", 443},
    {"https://example.com:8443/x", 0, "https", "example.com", 8443},
    {"http://example.com:80", 0, "http", "example.com", 80},
    {"http://example.com:/x", 0, "http", "example.com", 80},
    {"HTTPS://API.GitHub.COM/repos", 0, "https", "api.github.com", 443},
    {"http://user:pass@host.test:8080/p", 0, "http", "host.test", 8080},
    {"http://user@host.test/p", 0, "http", "host.test", 80},
    {"http://a@b@host.test/p", 0, "http", "host.test", 80},
    {"http://host.test?q=a@b", 0, "http", "host.test", 80},
    {"http://host.test#frag@evil", 0, "http", "host.test", 80},
    {"http://[::1]/", 0, "http", "::1", 80},
    {"https://[2001:DB8::1]:8443/x", 0, "https", "2001:db8::1", 8443},
    {"http://user:pw@[fe80::1]:81", 0, "http", "fe80::1", 81},
    {"http://127.0.0.1:9/x", 0, "http", "127.0.0.1", 9},
    {"ftp://example.com/", -1, NULL, NULL, 0},
    {"file:///etc/passwd", -1, NULL, NULL, 0},
    {"javascript:alert(1)", -1, NULL, NULL, 0},
    {"httpx://example.com/", -1, NULL, NULL, 0},
    {"http:example.com", -1, NULL, NULL, 0},
    {"example.com/path", -1, NULL, NULL, 0},
    {"", -1, NULL, NULL, 0},
    {"http://", -1, NULL, NULL, 0},
    {"http:///path", -1, NULL, NULL, 0},
    {"http://user@/path", -1, NULL, NULL, 0},
    {"http://host.test:0/", -1, NULL, NULL, 0},
    {"http://host.test:65536/", -1, NULL, NULL, 0},
    {"http://host.test:12a/", -1, NULL, NULL, 0},
    {"http://[::1/", -1, NULL, NULL, 0},
    {"http://[::1]x/", -1, NULL, NULL, 0},
    {"http://::1/", -1, NULL, NULL, 0},
    {"http://bad host/", -1, NULL, NULL, 0},
    {"http://bad\\host/", -1, NULL, NULL, 0},
};

static void test_url_origin(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof origin_cases / sizeof origin_cases[0]; i++) {
        char scheme[8] = "unset", host[64] = "unset";
        int port = -7;
        int rc =
            jn_url_origin(origin_cases[i].url, scheme, sizeof scheme, host, sizeof host, &port);
        if (rc != origin_cases[i].rc)
            print_error("%s: expected rc %d, got %d\n", origin_cases[i].url, origin_cases[i].rc,
                        rc);
        assert_int_equal(rc, origin_cases[i].rc);
        if (rc != 0)
            continue;
        assert_string_equal(scheme, origin_cases[i].scheme);
        assert_string_equal(host, origin_cases[i].host);
        assert_int_equal(port, origin_cases[i].port);
    }
}

static void test_url_origin_buffers(void **state)
{
    char scheme[8], small[8];
    int port = 0;

    (void)state;
    assert_int_equal(jn_url_origin(NULL, scheme, sizeof scheme, small, sizeof small, &port), -1);
    /* Host does not fit: refused rather than truncated. */
    assert_int_equal(jn_url_origin("http://longer-host.test/", scheme, sizeof scheme, small,
                                   sizeof small, &port),
                     -1);
    assert_int_equal(jn_url_origin("https://h.test/", small, 5, NULL, 0, &port), -1);
    /* Outputs are optional. */
    assert_int_equal(jn_url_origin("https://h.test:444/", NULL, 0, NULL, 0, &port), 0);
    assert_int_equal(port, 444);
    assert_int_equal(jn_url_origin("https://h.test/", NULL, 0, NULL, 0, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_classification),
        cmocka_unit_test(test_addr_other_families),
        cmocka_unit_test(test_addr_str),
        cmocka_unit_test(test_url_origin),
        cmocka_unit_test(test_url_origin_buffers),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "junction/net.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

typedef struct {
    uint32_t net;
    int bits;
} v4_range_t;

/* IPv4 ranges that are not globally routable unicast (IANA special-purpose registry). */
static const v4_range_t v4_special[] = {
    {0x00000000u, 8},  /* 0.0.0.0/8 "this network" */
    {0x0a000000u, 8},  /* 10/8 private */
    {0x64400000u, 10}, /* 100.64/10 carrier-grade NAT */
    {0x7f000000u, 8},  /* 127/8 loopback */
    {0xa9fe0000u, 16}, /* 169.254/16 link-local */
    {0xac100000u, 12}, /* 172.16/12 private */
    {0xc0000000u, 24}, /* 192.0.0/24 IETF protocol assignments */
    {0xc0000200u, 24}, /* 192.0.2/24 TEST-NET-1 */
    {0xc0586300u, 24}, /* 192.88.99/24 6to4 relay anycast (deprecated) */
    {0xc0a80000u, 16}, /* 192.168/16 private */
    {0xc6120000u, 15}, /* 198.18/15 benchmarking */
    {0xc6336400u, 24}, /* 198.51.100/24 TEST-NET-2 */
    {0xcb007100u, 24}, /* 203.0.113/24 TEST-NET-3 */
    {0xe0000000u, 4},  /* 224/4 multicast */
    {0xf0000000u, 4},  /* 240/4 reserved, 255.255.255.255 broadcast */
};

typedef struct {
    uint8_t prefix[4];
    int bits;
} v6_range_t;

/* Non-global ranges inside 2000::/3 (the only global unicast block). 2002::/16
 * (6to4) is classified by its embedded IPv4 address instead. */
static const v6_range_t v6_special[] = {
    {{0x20, 0x01, 0x00, 0x00}, 23}, /* 2001::/23 IETF protocol assignments, Teredo */
    {{0x20, 0x01, 0x0d, 0xb8}, 32}, /* 2001:db8::/32 documentation */
    {{0x3f, 0xff, 0x00, 0x00}, 20}, /* 3fff::/20 documentation */
};

static int v4_is_public(const uint8_t b[4])
{
    uint32_t a = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];

    for (size_t i = 0; i < sizeof v4_special / sizeof v4_special[0]; i++) {
        uint32_t mask = 0xffffffffu << (32 - v4_special[i].bits);
        if ((a & mask) == v4_special[i].net)
            return 0;
    }
    return 1;
}

static int prefix_match(const uint8_t *a, const uint8_t *prefix, int bits)
{
    int whole = bits / 8, rest = bits % 8;

    if (memcmp(a, prefix, (size_t)whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (prefix[whole] & mask);
}

/* Forms whose last 32 bits are an IPv4 address the packet ends up at. */
static int v6_embeds_v4(const uint8_t a[16])
{
    static const uint8_t compat[12];
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t translated[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
    static const uint8_t nat64[12] = {0x00, 0x64, 0xff, 0x9b};

    return memcmp(a, compat, 12) == 0 || memcmp(a, mapped, 12) == 0 ||
           memcmp(a, translated, 12) == 0 || memcmp(a, nat64, 12) == 0;
}

static int v6_is_public(const uint8_t a[16])
{
    if (v6_embeds_v4(a)) /* also covers :: and ::1 (0.0.0.0/8) */
        return v4_is_public(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) /* 6to4 */
        return v4_is_public(a + 2);
    /* Outside 2000::/3 everything is reserved, ULA, link-local or multicast. */
    if ((a[0] & 0xe0) != 0x20)
        return 0;
    for (size_t i = 0; i < sizeof v6_special / sizeof v6_special[0]; i++) {
        if (prefix_match(a, v6_special[i].prefix, v6_special[i].bits))
            return 0;
    }
    return 1;
}

int jn_net_addr_is_public(const struct sockaddr *addr)
{
    if (!addr)
        return 0;
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        return v4_is_public((const uint8_t *)&in->sin_addr);
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        return v6_is_public(in6->sin6_addr.s6_addr);
    }
    return 0;
}

const char *jn_net_addr_str(const struct sockaddr *addr, char *buf, size_t len)
{
    const void *src = NULL;

    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    if (addr && addr->sa_family == AF_INET)
        src = &((const struct sockaddr_in *)addr)->sin_addr;
    else if (addr && addr->sa_family == AF_INET6)
        src = &((const struct sockaddr_in6 *)addr)->sin6_addr;
    if (src && !inet_ntop(addr->sa_family, src, buf, (socklen_t)len))
        buf[0] = '\0';
    return buf;
}

static int copy_lower(char *dst, size_t dst_len, const char *src, size_t n)
{
    if (!dst)
        return 0;
    if (n >= dst_len)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char ch = src[i];
        dst[i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch - 'A' + 'a') : ch;
    }
    dst[n] = '\0';
    return 0;
}

/* Port digits after ':'; an empty port means the scheme default (RFC 3986). */
static int parse_port(const char *s, size_t n, int def)
{
    long v = 0;

    if (n == 0)
        return def;
    if (n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return (v >= 1 && v <= 65535) ? (int)v : -1;
}

static int host_chars_ok(const char *h, size_t n, int bracketed)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)h[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '\\' || ch == '[' || ch == ']' || ch == '@')
            return 0;
        if (ch == ':' && !bracketed)
            return 0;
    }
    return 1;
}

/* Splits "host[:port]" or "[v6][:port]" (userinfo already removed). */
static int split_authority(const char *a, size_t n, const char **host, size_t *host_n,
                           const char **port, size_t *port_n)
{
    const char *end = a + n, *colon;
    int bracketed = n > 0 && a[0] == '[';

    if (bracketed) {
        const char *close = memchr(a, ']', n);
        if (!close || (close + 1 < end && close[1] != ':'))
            return -1;
        *host = a + 1;
        *host_n = (size_t)(close - a - 1);
        colon = close + 1 < end ? close + 1 : NULL;
    } else {
        colon = memchr(a, ':', n);
        *host = a;
        *host_n = colon ? (size_t)(colon - a) : n;
    }
    *port = colon ? colon + 1 : end;
    *port_n = (size_t)(end - *port);
    return host_chars_ok(*host, *host_n, bracketed) ? 0 : -1;
}

int jn_url_origin(const char *url, char *scheme, size_t scheme_len, char *host, size_t host_len,
                  int *port)
{
    const char *auth, *at, *h, *p;
    size_t slen, alen, hlen, plen;
    int def;

    if (!url)
        return -1;
    slen = strcspn(url, ":/?#");
    if (url[slen] != ':' || strncmp(url + slen + 1, "//", 2) != 0)
        return -1;
    if (slen == 4 && strncasecmp(url, "http", 4) == 0)
        def = 80;
    else if (slen == 5 && strncasecmp(url, "https", 5) == 0)
        def = 443;
    else
        return -1;
    auth = url + slen + 3;
    alen = strcspn(auth, "/?#");
    at = memrchr(auth, '@', alen);
    if (at) {
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    if (split_authority(auth, alen, &h, &hlen, &p, &plen) != 0)
        return -1;
    int port_num = parse_port(p, plen, def);
    if (port_num < 0 || copy_lower(scheme, scheme_len, url, slen) != 0 ||
        copy_lower(host, host_len, h, hlen) != 0)
        return -1;
    if (port)
        *port = port_num;
    return 0;
}

/* Network address classification, for egress policy (SSRF protection). */
#ifndef JUNCTION_NET_H
#define JUNCTION_NET_H

#include <sys/socket.h>

/* 1 when the address is globally routable unicast; 0 for loopback, private
 * (RFC 1918, fc00::/7), link-local (169.254/16, fe80::/10), carrier-grade NAT
 * (100.64/10), unspecified, multicast, broadcast, documentation and reserved
 * ranges, and IPv4-mapped/compatible/NAT64 forms of any of those. */
int jn_net_addr_is_public(const struct sockaddr *addr);
/* Writes the numeric form ("10.0.0.1", "::1") into buf; returns buf. */
const char *jn_net_addr_str(const struct sockaddr *addr, char *buf, size_t len);

/* Split "scheme://host:port/..." into lower-cased host and port (default 80/443).
 * Handles [v6] literals and userinfo. Returns 0, or -1 when not an http(s) URL. */
int jn_url_origin(const char *url, char *scheme, size_t scheme_len, char *host, size_t host_len,
                  int *port);

#endif

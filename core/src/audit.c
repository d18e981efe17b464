/* The hash-chained audit log (see audit.h for the chain and its encoding). */
#include "junction/error.h"
#include "junction/audit.h"
#include "junction/clock.h"
#include "junction/crypto.h"
#include "junction/redact.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GENESIS_HASH "0000000000000000000000000000000000000000000000000000000000000000"
#define CANON_MAGIC "junction:audit:v1\n"

/* Identifiers are short; a detail is a small JSON object. Bounds keep one
 * entry from bloating the log or the verifier. */
#define FIELD_MAX 1024
#define DETAIL_MAX (64 * 1024)
/* Appends that lost the race to another process, chained again each time. */
#define APPEND_TRIES 64

_Static_assert(sizeof(GENESIS_HASH) == JN_AUDIT_HASH_HEX + 1, "genesis hash length");

/* ---- canonical encoding ---- */

static size_t field_len(const char *s)
{
    return s == NULL ? 2 : 21 + strlen(s) + 1;
}

static char *put_field(char *p, const char *s)
{
    size_t n;

    if (s == NULL) {
        memcpy(p, "-\n", 2);
        return p + 2;
    }
    n = strlen(s);
    p += sprintf(p, "%zu:", n);
    memcpy(p, s, n);
    p[n] = '\n';
    return p + n + 1;
}

int jn_audit_hash(const jn_audit_record_t *r, char out[JN_AUDIT_HASH_HEX + 1])
{
    const char *strs[6] = {r->actor,         r->action,      r->org_id,
                           r->credential_id, r->detail_json, r->prev_hash};
    char seq[24], ts[24], *buf, *p;
    uint8_t md[JN_SHA256_LEN];
    size_t cap, i;
    int rc;

    snprintf(seq, sizeof(seq), "%" PRId64, r->seq);
    snprintf(ts, sizeof(ts), "%" PRId64, r->ts_ms);
    cap = sizeof(CANON_MAGIC) + field_len(seq) + field_len(ts);
    for (i = 0; i < 6; i++)
        cap += field_len(strs[i]);
    buf = malloc(cap);
    if (buf == NULL)
        return -1;
    p = buf;
    memcpy(p, CANON_MAGIC, sizeof(CANON_MAGIC) - 1);
    p += sizeof(CANON_MAGIC) - 1;
    p = put_field(p, seq);
    p = put_field(p, ts);
    for (i = 0; i < 6; i++)
        p = put_field(p, strs[i]);
    rc = jn_sha256(buf, (size_t)(p - buf), md);
    free(buf);
    if (rc != 0)
        return -1;
    jn_hex_encode(md, sizeof(md), out);
    return 0;
}

/* ---- append ---- */

static int check_field(const char *name, const char *value, int required, size_t max, char *err,
                       size_t errlen)
{
    if (value == NULL) {
        if (required)
            jn_errorf(err, errlen, "audit: %s is required", name);
        return required ? -1 : 0;
    }
    if ((required && value[0] == '\0') || strlen(value) > max) {
        jn_errorf(err, errlen, "audit: %s must be 1 to %zu bytes", name, max);
        return -1;
    }
    return 0;
}

int jn_audit_append(jn_store_t *s, const jn_audit_event_t *ev, int64_t *seq_out, char *err,
                    size_t errlen)
{
    jn_audit_record_t rec = {0};
    char prev[JN_AUDIT_HASH_HEX + 1], hash[JN_AUDIT_HASH_HEX + 1];
    char *scrubbed = NULL;
    int64_t last = 0;
    int own, rc, tries;

    if (seq_out != NULL)
        *seq_out = 0;
    if (check_field("actor", ev->actor, 1, FIELD_MAX, err, errlen) != 0 ||
        check_field("action", ev->action, 1, FIELD_MAX, err, errlen) != 0 ||
        check_field("org_id", ev->org_id, 0, FIELD_MAX, err, errlen) != 0 ||
        check_field("credential_id", ev->credential_id, 0, FIELD_MAX, err, errlen) != 0 ||
        check_field("detail_json", ev->detail_json, 0, DETAIL_MAX, err, errlen) != 0)
        return -1;
    /* A detail is built by code that never puts secrets in it; a caller's
     * error text may still carry one, and the log is kept for years. */
    if (ev->detail_json != NULL)
        scrubbed =
            jn_redactor_scrub(jn_redactor_global(), ev->detail_json, strlen(ev->detail_json));
    own = !jn_store_in_transaction(s);
    if (own && jn_store_begin(s) != 0) {
        jn_errorf(err, errlen, "audit: %s", jn_store_errmsg(s));
        free(scrubbed);
        return -1;
    }
    rec.ts_ms = ev->ts_ms != 0 ? ev->ts_ms : jn_now_ms();
    rec.actor = ev->actor;
    rec.action = ev->action;
    rec.org_id = ev->org_id;
    rec.credential_id = ev->credential_id;
    rec.detail_json = scrubbed != NULL ? scrubbed : ev->detail_json;
    rec.prev_hash = prev;
    rec.hash = hash;
    /* SQLite: read under the write lock, no other appender can take the same
     * seq. A store shared without such a lock (the cluster store) refuses an
     * entry whose seq or previous hash is no longer the tail (1): another
     * process appended first, so the entry is chained again on the new tail. */
    for (tries = 0;; tries++) {
        rc = jn_store_audit_last(s, &last, prev);
        if (rc < 0)
            goto fail;
        if (rc == 1)
            memcpy(prev, GENESIS_HASH, sizeof(prev));
        rec.seq = last + 1;
        if (jn_audit_hash(&rec, hash) != 0) {
            jn_errorf(err, errlen, "audit: out of memory");
            goto fail_quiet;
        }
        rc = jn_store_audit_insert(s, &rec);
        if (rc == 0)
            break;
        if (rc < 0 || tries >= APPEND_TRIES)
            goto fail;
    }
    if (own && jn_store_commit(s) != 0)
        goto fail;
    if (seq_out != NULL)
        *seq_out = rec.seq;
    free(scrubbed);
    return 0;

fail:
    jn_errorf(err, errlen, "audit: %s", jn_store_errmsg(s));
fail_quiet:
    if (own)
        jn_store_rollback(s);
    free(scrubbed);
    return -1;
}

int jn_audit_anchor(jn_store_t *s, char out[JN_AUDIT_ANCHOR_MAX], char *err, size_t errlen)
{
    char hash[JN_AUDIT_HASH_HEX + 1];
    int64_t seq = 0;
    int rc = jn_store_audit_last(s, &seq, hash);

    if (rc < 0) {
        jn_errorf(err, errlen, "audit: %s", jn_store_errmsg(s));
        return -1;
    }
    snprintf(out, JN_AUDIT_ANCHOR_MAX, "%" PRId64 ":%s", seq, rc == 1 ? GENESIS_HASH : hash);
    return 0;
}

/* ---- verification ---- */

typedef struct {
    int64_t expect_seq;               /* the seq the next row must have */
    char prev[JN_AUDIT_HASH_HEX + 1]; /* hash of the last good entry */
    int64_t entries;
    int64_t last_seq;
    char last_hash[JN_AUDIT_HASH_HEX + 1];
    /* the anchor: seq 0 when only a hash was given */
    int has_anchor;
    int64_t anchor_seq;
    char anchor_hash[JN_AUDIT_HASH_HEX + 1];
    int anchor_seen;
    /* the first failure */
    int failed;
    int64_t bad_seq;
    char reason[400];
    /* after a broken link: look further for the entry that links where the
     * broken one should have (then the entries were reordered) */
    int searching;
    char want_prev[JN_AUDIT_HASH_HEX + 1];
    int oom;
} verify_state_t;

static int same_hash(const char *a, const char *b)
{
    return a != NULL && b != NULL && strlen(a) == JN_AUDIT_HASH_HEX &&
           strlen(b) == JN_AUDIT_HASH_HEX && jn_ct_equal(a, b, JN_AUDIT_HASH_HEX);
}

static int fail_at(verify_state_t *vs, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_at(verify_state_t *vs, int64_t seq, const char *fmt, ...)
{
    va_list ap;

    vs->failed = 1;
    vs->bad_seq = seq;
    va_start(ap, fmt);
    vsnprintf(vs->reason, sizeof(vs->reason), fmt, ap);
    va_end(ap);
    return 1; /* stop */
}

static int verify_row(void *ud, const jn_audit_record_t *r)
{
    verify_state_t *vs = ud;
    char hash[JN_AUDIT_HASH_HEX + 1];

    if (vs->searching) {
        if (same_hash(r->prev_hash, vs->want_prev)) {
            snprintf(vs->reason, sizeof(vs->reason),
                     "entry %" PRId64 " is out of order: it does not link to entry %" PRId64
                     ", while entry %" PRId64 " does (entries were reordered)",
                     vs->bad_seq, vs->bad_seq - 1, r->seq);
            vs->searching = 0;
            return 1;
        }
        return 0;
    }
    if (r->seq != vs->expect_seq) {
        if (vs->expect_seq == 1 && r->seq == 2)
            return fail_at(vs, 1, "the log starts at entry 2: entry 1 is missing (deleted)");
        if (vs->expect_seq == 1)
            return fail_at(vs, 1,
                           "the log starts at entry %" PRId64 ": entries 1 to %" PRId64
                           " are missing (deleted)",
                           r->seq, r->seq - 1);
        if (r->seq == vs->expect_seq + 1)
            return fail_at(vs, vs->expect_seq,
                           "entry %" PRId64 " is missing (deleted): entry %" PRId64
                           " follows entry %" PRId64,
                           vs->expect_seq, r->seq, vs->expect_seq - 1);
        return fail_at(vs, vs->expect_seq,
                       "entries %" PRId64 " to %" PRId64 " are missing (deleted): entry %" PRId64
                       " follows entry %" PRId64,
                       vs->expect_seq, r->seq - 1, r->seq, vs->expect_seq - 1);
    }
    if (!same_hash(r->prev_hash, vs->prev)) {
        memcpy(vs->want_prev, vs->prev, sizeof(vs->want_prev));
        vs->searching = 1;
        if (r->seq == 1)
            fail_at(vs, 1,
                    "entry 1 does not start the chain: its prev_hash is not the genesis"
                    " value (entries before it were removed, or it was altered)");
        else
            fail_at(vs, r->seq,
                    "entry %" PRId64 " does not link to entry %" PRId64
                    ": its prev_hash differs from entry %" PRId64
                    "'s hash (an entry was inserted, removed or moved, or entry %" PRId64
                    " was altered and its hash recomputed)",
                    r->seq, r->seq - 1, r->seq - 1, r->seq - 1);
        return 0; /* keep reading to tell a reorder apart */
    }
    if (jn_audit_hash(r, hash) != 0) {
        vs->oom = 1;
        return 1;
    }
    if (!same_hash(hash, r->hash))
        return fail_at(vs, r->seq,
                       "entry %" PRId64 " was altered: its content (actor, action, organization,"
                       " credential, detail or time) does not match its hash",
                       r->seq);
    if (vs->has_anchor) {
        if (vs->anchor_seq == r->seq && !same_hash(r->hash, vs->anchor_hash))
            return fail_at(vs, r->seq,
                           "entry %" PRId64 " differs from the anchor: the chain was rewritten"
                           " up to here (entries at or before %" PRId64
                           " were altered and re-hashed)",
                           r->seq, r->seq);
        if (same_hash(r->hash, vs->anchor_hash))
            vs->anchor_seen = 1;
    }
    memcpy(vs->prev, hash, sizeof(vs->prev));
    memcpy(vs->last_hash, hash, sizeof(vs->last_hash));
    vs->last_seq = r->seq;
    vs->expect_seq++;
    vs->entries++;
    return 0;
}

static int parse_anchor(const char *anchor, verify_state_t *vs)
{
    const char *colon = strchr(anchor, ':'), *hash = anchor;
    char *end;
    size_t i;

    vs->anchor_seq = 0;
    if (colon != NULL) {
        long long v;

        if (colon == anchor || anchor[0] == '-')
            return -1;
        v = strtoll(anchor, &end, 10);
        if (end != colon || v < 0)
            return -1;
        vs->anchor_seq = v;
        hash = colon + 1;
    }
    if (strlen(hash) != JN_AUDIT_HASH_HEX)
        return -1;
    for (i = 0; i < JN_AUDIT_HASH_HEX; i++) {
        char c = hash[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -1;
    }
    memcpy(vs->anchor_hash, hash, sizeof(vs->anchor_hash));
    vs->has_anchor = 1;
    return 0;
}

int jn_audit_verify(jn_store_t *s, const char *anchor, int64_t *first_bad_seq, char *report,
                    size_t report_len)
{
    verify_state_t *vs;
    int rc;

    if (first_bad_seq != NULL)
        *first_bad_seq = 0;
    if (report != NULL && report_len > 0)
        report[0] = '\0';
    vs = calloc(1, sizeof(*vs));
    if (vs == NULL) {
        jn_errorf(report, report_len, "audit verify: out of memory");
        return -1;
    }
    vs->expect_seq = 1;
    memcpy(vs->prev, GENESIS_HASH, sizeof(vs->prev));
    memcpy(vs->last_hash, GENESIS_HASH, sizeof(vs->last_hash));
    if (anchor != NULL && anchor[0] != '\0' && parse_anchor(anchor, vs) != 0) {
        jn_errorf(report, report_len,
                  "audit verify: the anchor is not '<seq>:<64 hex>' or '<64 hex>' (lower-case)");
        rc = -1;
        goto done;
    }
    if (jn_store_audit_each(s, 1, verify_row, vs) != 0) {
        jn_errorf(report, report_len, "audit verify: cannot read the log: %s", jn_store_errmsg(s));
        rc = -1;
        goto done;
    }
    if (vs->oom) {
        jn_errorf(report, report_len, "audit verify: out of memory");
        rc = -1;
        goto done;
    }
    if (!vs->failed && vs->has_anchor) {
        /* An anchor of seq 0 is the empty log's: nothing can be missing. */
        if (vs->anchor_seq > vs->last_seq)
            fail_at(vs, vs->last_seq + 1,
                    "the log ends at entry %" PRId64 " but the anchor records entry %" PRId64
                    ": entries %" PRId64 " to %" PRId64 " are missing (truncated)",
                    vs->last_seq, vs->anchor_seq, vs->last_seq + 1, vs->anchor_seq);
        else if (vs->anchor_seq == 0 && !vs->anchor_seen &&
                 !same_hash(vs->anchor_hash, GENESIS_HASH))
            fail_at(vs, vs->last_seq + 1,
                    "the anchor hash is not in the log (%" PRId64
                    " entries): the log was truncated or rewritten",
                    vs->entries);
    }
    if (vs->failed) {
        if (first_bad_seq != NULL)
            *first_bad_seq = vs->bad_seq;
        jn_errorf(report, report_len, "audit log tampered: %s", vs->reason);
        rc = 1;
    } else {
        jn_errorf(report, report_len,
                  "audit log intact: %" PRId64 " %s, last entry %" PRId64 " hash %s%s", vs->entries,
                  vs->entries == 1 ? "entry" : "entries", vs->last_seq, vs->last_hash,
                  vs->has_anchor ? ", anchor matched" : "");
        rc = 0;
    }

done:
    free(vs);
    return rc;
}

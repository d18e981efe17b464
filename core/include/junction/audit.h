/* The hash-chained audit log.
 *
 * Every entry records who did what to which organization / credential and
 * when, plus a JSON detail that never holds secret material (it is also run
 * through the global redactor before it is stored). Entries are numbered
 * 1, 2, 3, ... without gaps and chained:
 *
 *   hash(n) = SHA-256(canonical(n)),  canonical(n) includes hash(n-1)
 *
 * with hash(0) = 64 '0' characters. canonical() is, byte for byte:
 *
 *   "junction:audit:v1\n" F(seq) F(ts) F(actor) F(action) F(org_id)
 *   F(credential_id) F(detail_json) F(prev_hash)
 *
 * where F(NULL) = "-\n" and F(s) = "<decimal byte length of s>:" s "\n"
 * (seq and ts, integers, are written in decimal first). The length prefixes
 * make the encoding unambiguous whatever the fields contain, so an external
 * tool can recompute every hash from the table alone.
 *
 * What verification detects: an edited entry (its hash no longer matches), a
 * deleted entry (a gap in seq, or a broken link when the rest were
 * renumbered), reordered entries (a link that points elsewhere; the entry
 * that belongs there is named), an edit whose hash and all later hashes were
 * recomputed (only against an anchor) and a truncated tail (only against an
 * anchor). The anchor is the last entry's "<seq>:<hash>" (jn_audit_anchor),
 * which the caller keeps elsewhere (another system, a signed log line); a bare
 * "<hash>" is accepted too. Without an anchor, whoever can write the database
 * can rewrite the whole chain: keep anchors outside it.
 */
#ifndef JUNCTION_AUDIT_H
#define JUNCTION_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#include "junction/store.h"

#define JN_AUDIT_HASH_HEX 64
/* "<seq>:<hash>" and its NUL. */
#define JN_AUDIT_ANCHOR_MAX (20 + 1 + JN_AUDIT_HASH_HEX + 1)

typedef struct {
    const char *actor;         /* required: user, service account or "system" */
    const char *action;        /* required: "credential.create", "credential.access", ... */
    const char *org_id;        /* optional */
    const char *credential_id; /* optional */
    const char *detail_json;   /* optional JSON; no secrets */
    int64_t ts_ms;             /* 0: now (wall clock, ms since the epoch) */
} jn_audit_event_t;

/* Appends one entry. Inside a transaction opened with jn_store_begin the entry
 * joins it (so a change and its audit entry commit or roll back together);
 * otherwise it runs in its own transaction. The write lock taken by the
 * transaction makes concurrent appenders (other processes) serialize, so seq
 * numbers never collide. *seq_out (optional) receives the new seq.
 * 0 or -1 (reason in err). */
int jn_audit_append(jn_store_t *s, const jn_audit_event_t *ev, int64_t *seq_out, char *err,
                    size_t errlen);

/* The hash of a record from its fields (rec->hash is ignored), as lower-case
 * hex into out (65 bytes). 0 or -1 (out of memory). */
int jn_audit_hash(const jn_audit_record_t *rec, char out[JN_AUDIT_HASH_HEX + 1]);

/* The current anchor "<seq>:<hash>" ("0:000...0" for an empty log). 0 or -1. */
int jn_audit_anchor(jn_store_t *s, char out[JN_AUDIT_ANCHOR_MAX], char *err, size_t errlen);

/* Verifies the whole chain, and the anchor when one is given (NULL: none).
 * Returns 0 when intact (report: entry count and last hash), 1 when tampering
 * is detected (*first_bad_seq: the first entry found wrong or missing; report:
 * which entry and why), -1 when the log could not be read or the anchor is
 * malformed (report: why). first_bad_seq may be NULL; report is always
 * NUL-terminated when report_len > 0. Memory use is constant in the log size. */
int jn_audit_verify(jn_store_t *s, const char *anchor, int64_t *first_bad_seq, char *report,
                    size_t report_len);

#endif

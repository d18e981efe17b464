/* Recorded HTTP exchanges of connector jobs: the authoring kit's fixtures.
 *
 * Recording puts a transport (runtime.h) in front of the traffic layer: every
 * ctx.http call goes out as usual and its outcome is written to the fixtures
 * directory, one JSON file per exchange, before the connector sees it.
 * Nothing secret is written: the credential's headers are never part of what
 * is recorded (the core adds them below this layer), headers that carry
 * credentials are replaced by "[REDACTED]", and URLs, bodies and header
 * values go through the redactor (the job's known secrets and secret-shaped
 * strings).
 *
 * Replaying puts a transport in place of the network: a request is matched
 * by method, URL (as the connector built it) and the SHA-256 of its body;
 * the recorded response (or transport error) is delivered on the next loop
 * turn. Requests with the same key get the recorded answers in order, the
 * last one repeating. A request nobody recorded fails with an error that
 * says so and how to record it, and is listed in jn_fixtures_miss.
 *
 * File: <dir>/<NNNN>-<method>-<host and path>.json
 *   { "request":  { "method", "url", "url_sha256" (only when the url was
 *                   redacted), "body_sha256", "headers": { name: value },
 *                   "body" (redacted, when not empty) },
 *     "response": { "status", "headers": [ [name, value], ... ],
 *                   "body" or "body_base64" } }
 *   or, for a transport failure, "response": { "error": "ETIMEDOUT",
 *   "message": "..." }.
 */
#ifndef JUNCTION_REPLAY_H
#define JUNCTION_REPLAY_H

#include <stddef.h>

#include "runtime.h"

typedef struct jn_fixtures jn_fixtures_t;

/* Records the exchanges of jobs on rt into dir (created if needed); numbering
 * continues after the exchanges already there. Set rt->transport to
 * jn_fixtures_transport(f). NULL with the reason. */
jn_fixtures_t *jn_fixtures_record(jn_runtime_t *rt, const char *dir, char *err, size_t errlen);
/* Loads every exchange of dir for replay on loop. NULL with the reason (a
 * malformed file is named with what is wrong in it). */
jn_fixtures_t *jn_fixtures_replay(uv_loop_t *loop, const char *dir, char *err, size_t errlen);
jn_transport_t *jn_fixtures_transport(jn_fixtures_t *f);
/* Exchanges loaded (replay) or written (record). */
size_t jn_fixtures_count(const jn_fixtures_t *f);
/* Replay: the requests that had no recorded exchange ("GET <url>"). */
size_t jn_fixtures_miss_count(const jn_fixtures_t *f);
const char *jn_fixtures_miss(const jn_fixtures_t *f, size_t i);
/* Replay: "host:port" of the i-th distinct origin the exchanges reach (the
 * spec host allows them: nothing leaves the process). NULL past the end. */
const char *jn_fixtures_host(const jn_fixtures_t *f, size_t i);
/* Drops calls still pending (their callbacks are not called). Run the loop
 * afterwards when calls were pending: their timers close on it. */
void jn_fixtures_destroy(jn_fixtures_t *f);
/* Removes the exchange files of dir (before a new recording). 0, or -1. */
int jn_fixtures_clear(const char *dir, char *err, size_t errlen);

#endif

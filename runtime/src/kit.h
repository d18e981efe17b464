/* The connector authoring kit's test run: a connector file, its busted spec
 * and its fixtures (recorded HTTP exchanges, replay.h), as `junction
 * connector test` and `junction connector deploy` run them.
 *
 * Layout beside a connector DIR/NAME.lua:
 *   DIR/tests/NAME_spec.lua          the spec (busted, inside the runtime)
 *   DIR/tests/fixtures/NAME/         NNNN-*.json exchanges, config.json
 *
 * Inside the spec, T.kit() describes the run and T.run{ kit = true, entry =
 * ... } runs the connector under test with the fixtures: recorded (with the
 * credential the command was given, which never enters Lua) or replayed
 * (offline, deterministic).
 */
#ifndef JUNCTION_KIT_H
#define JUNCTION_KIT_H

#include <stddef.h>

typedef struct {
    const char *file;     /* the connector */
    const char *spec;     /* its busted spec */
    const char *fixtures; /* the fixtures directory */
    int record;           /* 1: record against the provider; 0: replay */
    /* The connector's configuration (ctx.config and collect_evidence's
     * argument): JSON object text. Recording saves it as
     * <fixtures>/config.json; replay reads it from there. */
    const char *config_json;
    /* Record: hosts the jobs may reach although they are loopback or private
     * (a simulator), and the credential: a header line, or a credential
     * document and its auth type (NULL: none). */
    const char *const *allow_hosts;
    size_t nallow_hosts;
    const char *auth_header;
    const char *credential_type; /* with credential_doc: a credential document (vault form) */
    const char *credential_doc;
    size_t credential_len;
} jn_kit_t;

/* Default paths of a connector's spec and fixtures (DIR/tests/...). */
int jn_kit_paths(const char *connector, char *spec, size_t speclen, char *fixtures, size_t fixlen);
/* Runs the kit's spec with busted inside the runtime. 0 when every test
 * passed, 1 otherwise (busted printed why). */
int jn_spec_run_kit(const jn_kit_t *kit);

#endif

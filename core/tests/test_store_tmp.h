/* An SQLite store in a private temporary directory, for a test's fixture
 * (included; needs <cmocka.h> included before it). */
#ifndef JUNCTION_TEST_STORE_TMP_H
#define JUNCTION_TEST_STORE_TMP_H

#include "junction/store.h"

#include "test_tmpdir.h"

/* A new directory "<tmp>/<name>-XXXXXX" into dir, "<dir>/junction.db" into
 * path, and the store opened there (the test fails when it cannot be). */
static __attribute__((unused)) jn_store_t *tt_store_open(char *dir, size_t dirlen, char *path,
                                                         size_t pathlen, const char *name)
{
    char err[512] = "";
    jn_store_t *s;

    tt_tmpdir(dir, dirlen, name);
    snprintf(path, pathlen, "%s/junction.db", dir);
    if ((s = jn_store_open_sqlite(path, err, sizeof(err))) == NULL)
        fail_msg("open %s: %s", path, err);
    return s;
}

/* The store closed and its directory removed. */
static __attribute__((unused)) void tt_store_close(jn_store_t *s, const char *dir)
{
    jn_store_close(s);
    tt_rmtree(dir);
}

#endif

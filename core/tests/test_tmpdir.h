/* A private temporary directory for a test (included, like http_peer.c: one
 * executable per test file; needs <cmocka.h> included before it). */
#ifndef JUNCTION_TEST_TMPDIR_H
#define JUNCTION_TEST_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* A new directory "<$TMPDIR or /tmp>/<name>-XXXXXX" into buf. */
static __attribute__((unused)) void tt_tmpdir(char *buf, size_t len, const char *name)
{
    const char *tmp = getenv("TMPDIR");

    snprintf(buf, len, "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    assert_non_null(mkdtemp(buf));
}

static int tt_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The directory and everything in it. */
static __attribute__((unused)) void tt_rmtree(const char *dir)
{
    nftw(dir, tt_rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#endif

/* Memory for secret material (master keys, data keys, decrypted credentials).
 *
 * Each allocation is its own anonymous mapping so that it can be:
 *  - locked in RAM with mlock (kept out of swap) where RLIMIT_MEMLOCK allows;
 *    a refusal is ignored: the allocation still succeeds, unlocked;
 *  - excluded from core dumps with madvise(MADV_DONTDUMP);
 *  - wiped whole with OPENSSL_cleanse before it is unmapped.
 * Page granularity makes this suitable for a bounded number of small secrets,
 * not for bulk data.
 */
#ifndef JUNCTION_SECMEM_H
#define JUNCTION_SECMEM_H

#include <stddef.h>

/* Zero-filled memory for len bytes (len may be 0), or NULL when out of memory. */
void *jn_secmem_alloc(size_t len);
/* Wipes and releases memory from jn_secmem_alloc; NULL is ignored. */
void jn_secmem_free(void *p);
/* 1 when the allocation holding p is locked in RAM (for tests and diagnostics). */
int jn_secmem_is_locked(const void *p);

#endif

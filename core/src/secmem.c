/* Memory for secret material: one anonymous mapping per allocation, locked and
 * excluded from core dumps where the kernel allows, wiped before release. */
#include "junction/secmem.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/crypto.h>

/* Kept in front of the caller's bytes. 16 bytes keep the caller's pointer
 * aligned for any type. */
typedef struct {
    size_t map_len;
    int locked;
    int pad;
} secmem_header_t;

#define HEADER_LEN 16

_Static_assert(sizeof(secmem_header_t) <= HEADER_LEN, "secmem header does not fit");

void *jn_secmem_alloc(size_t len)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096, map_len;
    secmem_header_t *h;
    void *base;

    if (len > SIZE_MAX - HEADER_LEN - pg)
        return NULL;
    map_len = (len + HEADER_LEN + pg - 1) / pg * pg;
    base = mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return NULL;
    /* Best effort: an unprivileged process may be over RLIMIT_MEMLOCK, and a
     * kernel without MADV_DONTDUMP still gives usable memory. */
    h = base;
    h->map_len = map_len;
    h->locked = mlock(base, map_len) == 0;
#ifdef MADV_DONTDUMP
    (void)madvise(base, map_len, MADV_DONTDUMP);
#endif
    return (char *)base + HEADER_LEN;
}

void jn_secmem_free(void *p)
{
    secmem_header_t *h;
    size_t map_len;
    int locked;

    if (p == NULL)
        return;
    h = (secmem_header_t *)(void *)((char *)p - HEADER_LEN);
    map_len = h->map_len;
    locked = h->locked;
    OPENSSL_cleanse(h, map_len);
    if (locked)
        munlock(h, map_len);
    munmap(h, map_len);
}

int jn_secmem_is_locked(const void *p)
{
    const secmem_header_t *h;

    if (p == NULL)
        return 0;
    h = (const secmem_header_t *)(const void *)((const char *)p - HEADER_LEN);
    return h->locked;
}

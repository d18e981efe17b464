/* A SQLite VFS over the default one that gathers a transaction's writes to
 * the write-ahead log into one system call.
 *
 * SQLite appends a commit to the log as frames, and writes each frame with
 * two calls (its 24-byte header, then the page): a group commit of the
 * webhook intake is some fifty `pwrite`s of a few kilobytes each, one after
 * the other in the file. Here those writes go to a buffer while they follow
 * each other, and reach the file in one `pwrite` when the log is synced,
 * read, truncated, sized or closed, when a write does not follow the buffer,
 * and before the connection touches the shared-memory index (which is what
 * makes frames visible to other connections), and at the end of a commit:
 * with the commit frame's page, so that the commit returns an error if they
 * cannot be written, whether or not the connection syncs at commit. Nothing
 * else changes: the sync still comes after the data.
 *
 * Files other than a log are passed through as they are. A write error met
 * while flushing is returned by the call that flushed, or, when that call
 * cannot return one (a memory barrier), by the next call on the log, which
 * is the commit's sync. */
#include "store_vfs.h"

#include <pthread.h>
#include <sqlite3.h>
#include <string.h>

/* What is buffered reaches the file in one write of at most this much: the
 * default VFS writes at most 128 KiB - 1 bytes per call (it masks larger
 * sizes), and answers SQLITE_FULL for the rest. Larger writes go straight
 * to the file (after what is buffered). */
#define BUF_CAP 0x1ffff

typedef struct jfile jfile_t;

struct jfile {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, right after this struct */
    jfile_t *wal;       /* a database: its connection's log, while open */
    jfile_t *db;        /* a log: its database */
    unsigned char *buf;
    sqlite3_int64 off; /* the buffer holds [off, off + len) */
    int len;
    int err;        /* a flush that failed where it could not be returned */
    int commit_hdr; /* the last write was a commit frame's header */
};

static sqlite3_vfs *root;
static sqlite3_vfs vfs;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int registered;

#define ROUND8(n) (((n) + 7) & ~7)

/* Writes what is buffered: the error of this write or of one that failed
 * where it could not be returned, once. */
static int flush(jfile_t *f)
{
    int rc = SQLITE_OK;

    if (f->len > 0) {
        rc = f->real->pMethods->xWrite(f->real, f->buf, f->len, f->off);
        f->len = 0;
    }
    if (rc == SQLITE_OK)
        rc = f->err;
    f->err = SQLITE_OK;
    return rc;
}

/* The same where no error can be returned: kept for the next call. */
static void flush_later(jfile_t *f)
{
    int rc = flush(f);

    if (rc != SQLITE_OK)
        f->err = rc;
}

/* ---- the log ---- */

static int wal_close(sqlite3_file *p)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f), rc2;

    if (f->db != NULL && f->db->wal == f)
        f->db->wal = NULL;
    sqlite3_free(f->buf);
    f->buf = NULL;
    rc2 = f->real->pMethods->xClose(f->real);
    return rc != SQLITE_OK ? rc : rc2;
}

static int wal_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, out, amt, off);
}

/* A log frame's 24-byte header (SQLite writes it, then the page, with two
 * calls); bytes 4-7 hold the database's size after a commit, 0 for a frame
 * that does not end one. */
#define FRAME_HEADER 24

static int is_commit_header(const void *data, int amt)
{
    const unsigned char *h = data;

    return amt == FRAME_HEADER && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int wal_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off)
{
    jfile_t *f = (jfile_t *)p;
    int commit = f->commit_hdr, rc;

    /* A commit's frames reach the file with its last page, inside the
     * commit: a write that fails then fails the commit, also when the
     * connection does not sync at commit (synchronous=NORMAL, its caller
     * syncing the log itself), before the index names the frames. */
    f->commit_hdr = is_commit_header(data, amt);
    if (f->len > 0 && off == f->off + f->len && f->len + amt <= BUF_CAP) {
        memcpy(f->buf + f->len, data, (size_t)amt);
        f->len += amt;
        return commit ? flush(f) : SQLITE_OK;
    }
    if ((rc = flush(f)) != SQLITE_OK)
        return rc;
    if (amt >= BUF_CAP / 2 || commit)
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    if (f->buf == NULL && (f->buf = sqlite3_malloc(BUF_CAP)) == NULL)
        return f->real->pMethods->xWrite(f->real, data, amt, off);
    memcpy(f->buf, data, (size_t)amt);
    f->off = off;
    f->len = amt;
    return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_sync(sqlite3_file *p, int flags)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f);

    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_file_control(sqlite3_file *p, int op, void *arg)
{
    jfile_t *f = (jfile_t *)p;

    flush_later(f);
    return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wal_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **pp)
{
    jfile_t *f = (jfile_t *)p;
    int rc = flush(f);

    *pp = NULL;
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, off, amt, pp);
}

/* ---- both kinds: passed through ---- */

#define REAL(p) (((jfile_t *)(p))->real)

static int pass_close(sqlite3_file *p)
{
    jfile_t *f = (jfile_t *)p;

    if (f->wal != NULL) {
        flush_later(f->wal);
        f->wal->db = NULL;
        f->wal = NULL;
    }
    return REAL(p)->pMethods->xClose(REAL(p));
}

static int pass_read(sqlite3_file *p, void *out, int amt, sqlite3_int64 off)
{
    return REAL(p)->pMethods->xRead(REAL(p), out, amt, off);
}

static int pass_write(sqlite3_file *p, const void *data, int amt, sqlite3_int64 off)
{
    return REAL(p)->pMethods->xWrite(REAL(p), data, amt, off);
}

static int pass_truncate(sqlite3_file *p, sqlite3_int64 size)
{
    return REAL(p)->pMethods->xTruncate(REAL(p), size);
}

static int pass_sync(sqlite3_file *p, int flags)
{
    return REAL(p)->pMethods->xSync(REAL(p), flags);
}

static int pass_file_size(sqlite3_file *p, sqlite3_int64 *size)
{
    return REAL(p)->pMethods->xFileSize(REAL(p), size);
}

static int pass_lock(sqlite3_file *p, int lock)
{
    return REAL(p)->pMethods->xLock(REAL(p), lock);
}

static int pass_unlock(sqlite3_file *p, int lock)
{
    return REAL(p)->pMethods->xUnlock(REAL(p), lock);
}

static int pass_check_reserved(sqlite3_file *p, int *out)
{
    return REAL(p)->pMethods->xCheckReservedLock(REAL(p), out);
}

static int pass_file_control(sqlite3_file *p, int op, void *arg)
{
    return REAL(p)->pMethods->xFileControl(REAL(p), op, arg);
}

static int pass_sector_size(sqlite3_file *p)
{
    return REAL(p)->pMethods->xSectorSize(REAL(p));
}

static int pass_device(sqlite3_file *p)
{
    return REAL(p)->pMethods->xDeviceCharacteristics(REAL(p));
}

/* The shared-memory index is the database file's: before this connection
 * changes it (or orders its changes with a barrier), its log's frames are in
 * the file. */
static void flush_log(sqlite3_file *p)
{
    jfile_t *f = (jfile_t *)p;

    if (f->wal != NULL)
        flush_later(f->wal);
}

static int pass_shm_map(sqlite3_file *p, int region, int size, int extend, void volatile **pp)
{
    return REAL(p)->pMethods->xShmMap(REAL(p), region, size, extend, pp);
}

static int pass_shm_lock(sqlite3_file *p, int offset, int n, int flags)
{
    flush_log(p);
    return REAL(p)->pMethods->xShmLock(REAL(p), offset, n, flags);
}

static void pass_shm_barrier(sqlite3_file *p)
{
    flush_log(p);
    REAL(p)->pMethods->xShmBarrier(REAL(p));
}

static int pass_shm_unmap(sqlite3_file *p, int del)
{
    flush_log(p);
    return REAL(p)->pMethods->xShmUnmap(REAL(p), del);
}

static int pass_fetch(sqlite3_file *p, sqlite3_int64 off, int amt, void **pp)
{
    return REAL(p)->pMethods->xFetch(REAL(p), off, amt, pp);
}

static int pass_unfetch(sqlite3_file *p, sqlite3_int64 off, void *ptr)
{
    return REAL(p)->pMethods->xUnfetch(REAL(p), off, ptr);
}

static const sqlite3_io_methods pass_methods = {
    3,
    pass_close,
    pass_read,
    pass_write,
    pass_truncate,
    pass_sync,
    pass_file_size,
    pass_lock,
    pass_unlock,
    pass_check_reserved,
    pass_file_control,
    pass_sector_size,
    pass_device,
    pass_shm_map,
    pass_shm_lock,
    pass_shm_barrier,
    pass_shm_unmap,
    pass_fetch,
    pass_unfetch,
};

static const sqlite3_io_methods wal_methods = {
    3,
    wal_close,
    wal_read,
    wal_write,
    wal_truncate,
    wal_sync,
    wal_file_size,
    pass_lock,
    pass_unlock,
    pass_check_reserved,
    wal_file_control,
    pass_sector_size,
    pass_device,
    pass_shm_map,
    pass_shm_lock,
    pass_shm_barrier,
    pass_shm_unmap,
    wal_fetch,
    pass_unfetch,
};

/* ---- the VFS ---- */

static int vfs_open(sqlite3_vfs *v, sqlite3_filename name, sqlite3_file *file, int flags,
                    int *out_flags)
{
    jfile_t *f = (jfile_t *)file;
    int rc;

    (void)v;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)((char *)file + ROUND8(sizeof(jfile_t)));
    rc = root->xOpen(root, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || f->real->pMethods == NULL) {
        f->base.pMethods = NULL;
        return rc != SQLITE_OK ? rc : SQLITE_CANTOPEN;
    }
    /* The version-3 methods pass through to the default VFS's, which has
     * them all (unix, version 3). */
    if (f->real->pMethods->iVersion < 3) {
        f->base.pMethods = &pass_methods;
        pass_close(file);
        f->base.pMethods = NULL;
        return SQLITE_CANTOPEN;
    }
    f->base.pMethods = &pass_methods;
    if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
        sqlite3_file *db = sqlite3_database_file_object(name);
        /* the database was opened through this VFS (the log always is
         * opened by the connection that opened its database) */
        if (db != NULL && db->pMethods == &pass_methods) {
            f->db = (jfile_t *)db;
            f->db->wal = f;
            f->base.pMethods = &wal_methods;
        }
    }
    return SQLITE_OK;
}

static int vfs_delete(sqlite3_vfs *v, const char *name, int sync_dir)
{
    (void)v;
    return root->xDelete(root, name, sync_dir);
}

static int vfs_access(sqlite3_vfs *v, const char *name, int flags, int *out)
{
    (void)v;
    return root->xAccess(root, name, flags, out);
}

static int vfs_full_pathname(sqlite3_vfs *v, const char *name, int n, char *out)
{
    (void)v;
    return root->xFullPathname(root, name, n, out);
}

static void *vfs_dl_open(sqlite3_vfs *v, const char *name)
{
    (void)v;
    return root->xDlOpen(root, name);
}

static void vfs_dl_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    root->xDlError(root, n, out);
}

static void (*vfs_dl_sym(sqlite3_vfs *v, void *h, const char *sym))(void)
{
    (void)v;
    return root->xDlSym(root, h, sym);
}

static void vfs_dl_close(sqlite3_vfs *v, void *h)
{
    (void)v;
    root->xDlClose(root, h);
}

static int vfs_randomness(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return root->xRandomness(root, n, out);
}

static int vfs_sleep(sqlite3_vfs *v, int us)
{
    (void)v;
    return root->xSleep(root, us);
}

static int vfs_current_time(sqlite3_vfs *v, double *out)
{
    (void)v;
    return root->xCurrentTime(root, out);
}

static int vfs_last_error(sqlite3_vfs *v, int n, char *out)
{
    (void)v;
    return root->xGetLastError ? root->xGetLastError(root, n, out) : 0;
}

static int vfs_current_time_int64(sqlite3_vfs *v, sqlite3_int64 *out)
{
    (void)v;
    return root->xCurrentTimeInt64(root, out);
}

static void register_vfs(void)
{
    root = sqlite3_vfs_find(NULL);
    if (root == NULL || root->iVersion < 2 || root->xCurrentTimeInt64 == NULL)
        return;
    vfs.iVersion = 2;
    vfs.szOsFile = ROUND8((int)sizeof(jfile_t)) + root->szOsFile;
    vfs.mxPathname = root->mxPathname;
    vfs.zName = JN_STORE_VFS;
    vfs.xOpen = vfs_open;
    vfs.xDelete = vfs_delete;
    vfs.xAccess = vfs_access;
    vfs.xFullPathname = vfs_full_pathname;
    vfs.xDlOpen = vfs_dl_open;
    vfs.xDlError = vfs_dl_error;
    vfs.xDlSym = vfs_dl_sym;
    vfs.xDlClose = vfs_dl_close;
    vfs.xRandomness = vfs_randomness;
    vfs.xSleep = vfs_sleep;
    vfs.xCurrentTime = vfs_current_time;
    vfs.xGetLastError = vfs_last_error;
    vfs.xCurrentTimeInt64 = vfs_current_time_int64;
    registered = sqlite3_vfs_register(&vfs, 0) == SQLITE_OK;
}

const char *jn_store_vfs(void)
{
    pthread_once(&once, register_vfs);
    return registered ? JN_STORE_VFS : NULL;
}

/* The embedded store's SQLite VFS: the default one, with a transaction's
 * writes to the write-ahead log gathered into one system call (store_vfs.c). */
#ifndef JN_STORE_VFS_H
#define JN_STORE_VFS_H

#define JN_STORE_VFS "junction-unix"

/* Registers the VFS once (not as the default) and returns its name, or NULL
 * when the default VFS cannot carry it (the store then opens without it). */
const char *jn_store_vfs(void);

#endif

/* Error reporting convention of the core: functions that fail write a
 * precise, secret-free message into a caller's buffer (err, errlen). */
#ifndef JUNCTION_ERROR_H
#define JUNCTION_ERROR_H

#include <stddef.h>

/* Format into err (ignored when err is NULL or errlen is 0); returns -1 so a
 * caller can `return jn_errorf(err, errlen, "...", ...);`. */
int jn_errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

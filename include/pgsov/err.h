/* err.h — errors as values.
 * A library function that fails fills a struct pgsov_err and returns -1 (or NULL); it never
 * exits or logs. The caller decides whether to log, print or send an ErrorResponse. */
#ifndef PGSOV_ERR_H
#define PGSOV_ERR_H

#include <stddef.h>

struct pgsov_err {
    char msg[512];
};

/* Formats msg into err (if err is non-NULL) and returns -1, so callers can write
 * `return pgsov_fail(err, "...")`. */
int pgsov_fail(struct pgsov_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Copies at most size-1 bytes of src into dst and NUL-terminates it. Returns strlen(src):
 * a value >= size means the text was cut. */
size_t pgsov_strlcpy(char *dst, const char *src, size_t size);

#endif

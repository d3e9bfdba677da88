/* log.h — one line per event, key=value or JSON, never a secret.
 * log_event() takes alternating key, value strings ending with NULL so that both formats
 * come from the same call. The audit log is a separate file of JSON lines (jansson). */
#ifndef PGSOV_LOG_H
#define PGSOV_LOG_H

#include <stdbool.h>
#include <stdio.h>
#include "pgsov/config.h"

/* Sets format, level and destination (NULL path: stderr). Thread-safe to call log_* after. */
int log_setup(enum log_format fmt, enum log_level level, const char *path, struct pgsov_err *err);
void log_set_level(enum log_level level);

/* Would log_event() at this level write anything? Lets callers skip formatting values. */
bool log_enabled(enum log_level level);

/* log_event(LOG_INFO, "connect", "session", "12", "src", "127.0.0.1:5050", NULL); */
void log_event(enum log_level level, const char *event, ...) __attribute__((sentinel));

/* Opens (append) the audit log; NULL path closes it. */
int audit_open(const char *path, struct pgsov_err *err);

#include <jansson.h>
/* Writes one JSON object as a line to the audit log (adds "time"); steals the reference. */
void audit_write(json_t *obj);

const char *log_level_name(enum log_level l);
int log_level_parse(const char *s, enum log_level *out);

#endif

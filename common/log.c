/* log.c — single-line logs in key=value or JSON, and the JSON-lines audit log (see log.h).
 * Writers serialize on a mutex so lines from worker threads never interleave. Values are
 * escaped, never interpreted; callers must not pass secrets (nothing here can tell). */
#include "pgsov/log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static enum log_format log_fmt = LOG_FORMAT_KV;
static _Atomic enum log_level log_min = LOG_INFO;   /* read without the lock */
static FILE *log_out;      /* NULL: stderr */
static FILE *audit_out;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

const char *log_level_name(enum log_level l)
{
    return (unsigned)l <= LOG_ERROR ? level_names[l] : "info";
}

int log_level_parse(const char *s, enum log_level *out)
{
    for (int i = 0; i <= LOG_ERROR; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

int log_setup(enum log_format fmt, enum log_level level, const char *path, struct pgsov_err *err)
{
    FILE *f = NULL;
    if (path) {
        f = fopen(path, "a");
        if (!f)
            return pgsov_fail(err, "log_file %s: %s", path, strerror(errno));
        setvbuf(f, NULL, _IOLBF, 0);
    }
    pthread_mutex_lock(&log_lock);
    if (log_out)
        fclose(log_out);
    log_out = f;
    log_fmt = fmt;
    log_min = level;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void log_set_level(enum log_level level)
{
    pthread_mutex_lock(&log_lock);
    log_min = level;
    pthread_mutex_unlock(&log_lock);
}

bool log_enabled(enum log_level level)
{
    return level >= log_min;
}

static void format_time(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* key=value: quote values with spaces, quotes, '=' or control characters. */
static void kv_append(FILE *f, const char *key, const char *value)
{
    bool quote = !*value;
    for (const char *p = value; *p && !quote; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20 || *p == '\\')
            quote = true;
    fprintf(f, " %s=", key);
    if (!quote) {
        fputs(value, f);
        return;
    }
    fputc('"', f);
    for (const char *p = value; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch == '\n')
            fputs("\\n", f);
        else if (ch < 0x20)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void log_event(enum log_level level, const char *event, ...)
{
    if (level < log_min)
        return;
    char ts[40];
    format_time(ts, sizeof ts);
    va_list ap;

    if (log_fmt == LOG_FORMAT_JSON) {
        json_t *obj = json_object();
        json_object_set_new(obj, "time", json_string(ts));
        json_object_set_new(obj, "level", json_string(level_names[level]));
        json_object_set_new(obj, "event", json_string(event));
        va_start(ap, event);
        const char *k;
        while ((k = va_arg(ap, const char *)) != NULL) {
            const char *v = va_arg(ap, const char *);
            json_object_set_new(obj, k, v ? json_string(v) : json_null());
        }
        va_end(ap);
        char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(obj);
        pthread_mutex_lock(&log_lock);
        FILE *f = log_out ? log_out : stderr;
        if (line)
            fprintf(f, "%s\n", line);
        fflush(f);
        pthread_mutex_unlock(&log_lock);
        free(line);
        return;
    }

    pthread_mutex_lock(&log_lock);
    FILE *f = log_out ? log_out : stderr;
    fprintf(f, "time=%s level=%s event=%s", ts, level_names[level], event);
    va_start(ap, event);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        kv_append(f, k, v ? v : "");
    }
    va_end(ap);
    fputc('\n', f);
    fflush(f);
    pthread_mutex_unlock(&log_lock);
}

int audit_open(const char *path, struct pgsov_err *err)
{
    FILE *f = NULL;
    if (path) {
        f = fopen(path, "a");
        if (!f)
            return pgsov_fail(err, "audit_log %s: %s", path, strerror(errno));
    }
    pthread_mutex_lock(&log_lock);
    if (audit_out)
        fclose(audit_out);
    audit_out = f;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void audit_write(json_t *obj)
{
    if (!obj)
        return;
    char ts[40];
    format_time(ts, sizeof ts);
    json_object_set_new(obj, "time", json_string(ts));
    char *line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(obj);
    if (!line)
        return;
    pthread_mutex_lock(&log_lock);
    if (audit_out) {
        fprintf(audit_out, "%s\n", line);
        fflush(audit_out);
    }
    pthread_mutex_unlock(&log_lock);
    free(line);
}

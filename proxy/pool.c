/* pool.c — idle upstream connections kept for reuse (see pool.h), and their parameter lists.
 * The pool is a doubly linked list per worker, newest first: a take scans it for an exact key
 * (the startup packet), which for the handful of keys a proxy sees is cheaper than hashing. */
#include "pgsov/pool.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pgsov/log.h"
#include "pgsov/server.h"

/* ---- parameters --------------------------------------------------------------------------- */

static bool pair_at(const struct param_list *l, size_t off, const char **name, const char **value,
                    size_t *next)
{
    if (off >= l->len)
        return false;
    *name = l->buf + off;
    *value = *name + strlen(*name) + 1;
    *next = (size_t)(*value - l->buf) + strlen(*value) + 1;
    return true;
}

bool params_next(const struct param_list *l, size_t *off, const char **name, const char **value)
{
    size_t next;
    if (!pair_at(l, *off, name, value, &next))
        return false;
    *off = next;
    return true;
}

const char *params_get(const struct param_list *l, const char *name)
{
    const char *n, *v;
    for (size_t off = 0; params_next(l, &off, &n, &v);)
        if (strcmp(n, name) == 0)
            return v;
    return NULL;
}

int params_set(struct param_list *l, const char *name, const char *value)
{
    size_t nl = strlen(name) + 1, vl = strlen(value) + 1;
    if (nl > PARAM_NAME_MAX || vl > PARAM_VALUE_MAX + 1) {
        l->overflow = true;
        return -1;
    }
    /* Where the pair is now (start and end), or the end of the list for a new one. */
    size_t at = l->len, old_end = l->len;
    const char *n, *v;
    for (size_t off = 0, next; pair_at(l, off, &n, &v, &next); off = next) {
        if (strcmp(n, name) == 0) {
            if (strcmp(v, value) == 0)
                return 0;
            at = off;
            old_end = next;
            break;
        }
    }
    bool is_new = at == l->len;
    if (is_new && l->n == PARAMS_MAX) {
        l->overflow = true;
        return -1;
    }
    size_t old_size = old_end - at, new_size = nl + vl;
    size_t need = l->len - old_size + new_size;
    if (need > l->cap) {
        size_t cap = l->cap ? l->cap : 256;
        while (cap < need)
            cap *= 2;
        char *buf = realloc(l->buf, cap);
        if (!buf) {
            l->overflow = true;
            return -1;
        }
        l->buf = buf;
        l->cap = cap;
    }
    /* Shift the pairs after this one, then write it in place: order stays first-report. */
    memmove(l->buf + at + new_size, l->buf + old_end, l->len - old_end);
    memcpy(l->buf + at, name, nl);
    memcpy(l->buf + at + nl, value, vl);
    l->len = need;
    if (is_new)
        l->n++;
    return 0;
}

void params_write(const struct param_list *l, struct evbuffer *out)
{
    const char *n, *v;
    for (size_t off = 0, start = 0; params_next(l, &off, &n, &v); start = off) {
        uint32_t len = (uint32_t)(4 + off - start);
        uint8_t hdr[5] = { 'S', (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
        evbuffer_add(out, hdr, 5);
        evbuffer_add(out, l->buf + start, off - start);
    }
}

void params_compact(struct param_list *l)
{
    if (!l->buf || l->len == l->cap)
        return;
    char *buf = realloc(l->buf, l->len ? l->len : 1);
    if (buf) {
        l->buf = buf;
        l->cap = l->len ? l->len : 1;
    }
}

void params_clear(struct param_list *l)
{
    free(l->buf);
    memset(l, 0, sizeof *l);
}

/* ---- the pool ----------------------------------------------------------------------------- */

struct pool {
    struct event_base *base;
    struct pooled_upstream *head, *tail;
    size_t n;
};

struct pool *pool_new(struct event_base *base)
{
    struct pool *p = calloc(1, sizeof *p);
    if (p)
        p->base = base;
    return p;
}

static void pool_unlink(struct pooled_upstream *u)
{
    struct pool *p = u->pool;
    if (!p)
        return;
    if (u->prev)
        u->prev->next = u->next;
    else
        p->head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        p->tail = u->prev;
    u->next = u->prev = NULL;
    u->pool = NULL;
    p->n--;
}

void pooled_upstream_release(struct pooled_upstream *u)
{
    if (!u)
        return;
    pool_unlink(u);
    if (u->timer)
        event_free(u->timer);
    if (u->bev) {
        /* Tell the server goodbye on a plain link (a TLS link just closes): PostgreSQL then
         * ends the backend quietly instead of logging an unexpected EOF. */
        if (!u->fd_owned_by_bev && u->fd >= 0) {
            static const uint8_t terminate[5] = { 'X', 0, 0, 0, 4 };
            ssize_t ignored = send(u->fd, terminate, sizeof terminate, MSG_NOSIGNAL | MSG_DONTWAIT);
            (void)ignored;
        }
        bufferevent_free(u->bev);
    }
    if (!u->fd_owned_by_bev && u->fd >= 0)
        close(u->fd);
    params_clear(&u->params);
    free(u->key);
    snapshot_unref(u->snap);
    free(u);
}

static void pooled_close(struct pooled_upstream *u, const char *why)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%u", u->upstream_pid);
    log_event(LOG_DEBUG, "upstream_pool_close", "upstream_pid", pid, "reason", why, NULL);
    pooled_upstream_release(u);
}

void pool_flush(struct pool *p)
{
    while (p && p->head)
        pooled_close(p->head, "pool flushed");
}

void pool_free(struct pool *p)
{
    if (!p)
        return;
    pool_flush(p);
    free(p);
}

size_t pool_idle_count(const struct pool *p)
{
    return p ? p->n : 0;
}

/* An idle backend spoke (a FATAL before termination) or went away: it is of no use now. */
static void idle_read_cb(struct bufferevent *bev, void *arg)
{
    pooled_close(arg, "server spoke while idle");
}

static void idle_event_cb(struct bufferevent *bev, short what, void *arg)
{
    pooled_close(arg, "server closed while idle");
}

static void idle_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    pooled_close(arg, "idle timeout");
}

void pool_put(struct pool *p, struct pooled_upstream *u, size_t max_idle, int idle_timeout_ms)
{
    if (!p || max_idle == 0) {
        pooled_upstream_release(u);
        return;
    }
    while (p->n >= max_idle)
        pooled_close(p->tail, "pool full");
    u->pool = p;
    u->prev = NULL;
    u->next = p->head;
    if (p->head)
        p->head->prev = u;
    else
        p->tail = u;
    p->head = u;
    p->n++;
    bufferevent_setwatermark(u->bev, EV_READ, 0, 0);
    bufferevent_setcb(u->bev, idle_read_cb, NULL, idle_event_cb, u);
    bufferevent_disable(u->bev, EV_WRITE);
    bufferevent_enable(u->bev, EV_READ);
    if (idle_timeout_ms > 0 && (u->timer = evtimer_new(p->base, idle_timer_cb, u))) {
        struct timeval tv = { idle_timeout_ms / 1000, (idle_timeout_ms % 1000) * 1000 };
        evtimer_add(u->timer, &tv);
    }
}

struct pooled_upstream *pool_take(struct pool *p, const struct snapshot *snap, int env_index,
                                  const uint8_t *key, size_t key_len)
{
    if (!p)
        return NULL;
    for (struct pooled_upstream *u = p->head, *next; u; u = next) {
        next = u->next;
        if (u->snap != snap) {              /* reloaded since: other config, rules or TLS */
            pooled_close(u, "config reloaded");
            continue;
        }
        if (u->env_index != env_index || u->key_len != key_len || memcmp(u->key, key, key_len) != 0)
            continue;
        pool_unlink(u);
        if (u->timer) {
            event_free(u->timer);
            u->timer = NULL;
        }
        bufferevent_disable(u->bev, EV_READ);
        bufferevent_setcb(u->bev, NULL, NULL, NULL, NULL);
        return u;
    }
    return NULL;
}

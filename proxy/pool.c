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

int params_set(struct param_list *l, const char *name, const char *value)
{
    size_t vlen = strlen(value);
    if (vlen > PARAM_VALUE_MAX) {
        l->overflow = true;
        return -1;
    }
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->p[i].name, name) != 0)
            continue;
        if (strcmp(l->p[i].value, value) == 0)
            return 0;
        char *v = strdup(value);
        if (!v) {
            l->overflow = true;
            return -1;
        }
        free(l->p[i].value);
        l->p[i].value = v;
        return 0;
    }
    if (l->n == PARAMS_MAX) {
        l->overflow = true;
        return -1;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        l->overflow = true;
        return -1;
    }
    l->p[l->n].name = n;
    l->p[l->n].value = v;
    l->n++;
    return 0;
}

const char *params_get(const struct param_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->p[i].name, name) == 0)
            return l->p[i].value;
    return NULL;
}

void params_write(const struct param_list *l, struct evbuffer *out)
{
    for (size_t i = 0; i < l->n; i++) {
        size_t nl = strlen(l->p[i].name) + 1, vl = strlen(l->p[i].value) + 1;
        uint32_t len = (uint32_t)(4 + nl + vl);
        uint8_t hdr[5] = { 'S', (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
        evbuffer_add(out, hdr, 5);
        evbuffer_add(out, l->p[i].name, nl);
        evbuffer_add(out, l->p[i].value, vl);
    }
}

void params_clear(struct param_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->p[i].name);
        free(l->p[i].value);
    }
    l->n = 0;
    l->overflow = false;
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

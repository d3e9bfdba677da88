/* cancel.c — the proxy-key → upstream-key map (see cancel.h).
 * Open addressing would save a little memory; a chained hash keeps removal simple, and the
 * table only changes at connect and close, never per query. */
#include "pgsov/cancel.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CANCEL_BUCKETS 4096

struct cancel_entry {
    struct cancel_entry *next;
    uint32_t pid, secret;
    struct cancel_target target;
    bool looked_up;             /* a CancelRequest for this key went to the upstream */
};

static pthread_mutex_t cancel_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cancel_entry *buckets[CANCEL_BUCKETS];

static struct cancel_entry **slot(uint32_t pid)
{
    return &buckets[(pid * 2654435761u) % CANCEL_BUCKETS];
}

static struct cancel_entry *find(uint32_t pid)
{
    for (struct cancel_entry *e = *slot(pid); e; e = e->next)
        if (e->pid == pid)
            return e;
    return NULL;
}

int cancel_register(const struct cancel_target *t, uint32_t *pid, uint32_t *secret)
{
    struct cancel_entry *e = calloc(1, sizeof *e);
    if (!e)
        return -1;
    e->target = *t;
    pthread_mutex_lock(&cancel_lock);
    for (;;) {
        uint32_t keys[2];
        if (RAND_bytes((unsigned char *)keys, sizeof keys) != 1) {
            pthread_mutex_unlock(&cancel_lock);
            free(e);
            return -1;
        }
        /* PostgreSQL pids are positive int32; keep ours in that range for old clients. */
        e->pid = (keys[0] & 0x7fffffffu) | 1u;
        e->secret = keys[1];
        if (!find(e->pid))
            break;
    }
    struct cancel_entry **s = slot(e->pid);
    e->next = *s;
    *s = e;
    *pid = e->pid;
    *secret = e->secret;
    pthread_mutex_unlock(&cancel_lock);
    return 0;
}

bool cancel_unregister(uint32_t pid)
{
    bool looked_up = false;
    pthread_mutex_lock(&cancel_lock);
    for (struct cancel_entry **p = slot(pid); *p; p = &(*p)->next) {
        if ((*p)->pid == pid) {
            struct cancel_entry *dead = *p;
            *p = dead->next;
            looked_up = dead->looked_up;
            free(dead);
            break;
        }
    }
    pthread_mutex_unlock(&cancel_lock);
    return looked_up;
}

bool cancel_lookup(uint32_t pid, uint32_t secret, struct cancel_target *out)
{
    bool ok = false;
    pthread_mutex_lock(&cancel_lock);
    struct cancel_entry *e = find(pid);
    if (e && CRYPTO_memcmp(&e->secret, &secret, sizeof secret) == 0) {
        *out = e->target;
        e->looked_up = true;
        ok = true;
    }
    pthread_mutex_unlock(&cancel_lock);
    return ok;
}

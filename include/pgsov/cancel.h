/* cancel.h — proxy-issued BackendKeyData and the map back to upstream backends.
 * Clients only ever see keys the proxy made (random, from the OpenSSL RNG); a CancelRequest
 * on a new connection is looked up here and forwarded to the upstream that owns the backend.
 * Unknown keys are ignored, as PostgreSQL does. Shared by all workers (one mutex). */
#ifndef PGSOV_CANCEL_H
#define PGSOV_CANCEL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct cancel_target {
    struct sockaddr_storage addr;   /* upstream address */
    socklen_t addr_len;
    uint32_t upstream_pid, upstream_secret;
};

/* Registers target under fresh proxy keys written to *pid, *secret. 0 or -1 (no memory). */
int cancel_register(const struct cancel_target *t, uint32_t *pid, uint32_t *secret);
/* Removes the key; true when a cancel was ever looked up (and so forwarded) under it: its
 * packet may still be on its way to the upstream backend, which must then not serve another
 * client (upstream reuse closes it instead). */
bool cancel_unregister(uint32_t pid);
/* Copies the target for (pid, secret) into *out; false when unknown or the secret differs. */
bool cancel_lookup(uint32_t pid, uint32_t secret, struct cancel_target *out);

#endif

/* env.h — environment names and the hostname guard. Pure.
 *
 * The hostname guard is the check that stops "development points at the production host":
 * an environment's upstream must match one of its own host patterns and none of any other
 * environment's. The proxy runs it on every config load; the tools run it on every URL
 * before connecting. */
#ifndef PGSOV_ENV_H
#define PGSOV_ENV_H

#include <stdbool.h>
#include "pgsov/err.h"

struct config;
struct env_config;

/* Maps the usual spellings (NODE_ENV and friends) to a canonical name:
 * dev/develop/development/local → "development", test/testing → "test",
 * stage/staging/preview → "staging", prod/production/live → "production".
 * Returns NULL for anything else. */
const char *env_canonical_name(const char *name);

/* Is this environment production by any of its names: the section name or an alias that
 * env_canonical_name maps to "production" ([env.prod], [env.live], aliases = production)? */
bool env_is_production(const struct env_config *env);

/* Picks the environment the tools act on: explicit (from --env) if non-NULL, else $PGSOV_ENV,
 * else $NODE_ENV; resolved against cfg (names and aliases, then env_canonical_name).
 * NULL with err set when nothing was given or the name is unknown. */
const struct env_config *env_resolve(const struct config *cfg, const char *explicit_name,
                                     struct pgsov_err *err);

/* Does "host" (and port, when the pattern names one) match the glob pattern?
 * Patterns: "db.prod.example.com", "*.prod.example.com", "10.0.1.*", "127.0.0.1:5433",
 * "[::1]:5433". Case-insensitive on the host. */
bool env_host_pattern_match(const char *pattern, const char *host, int port);

/* The guard: host:port must match one of env's patterns and no other environment's.
 * Returns 0, or -1 with a message naming both environments and the host. */
int env_guard_check(const struct config *cfg, const struct env_config *env,
                    const char *host, int port, struct pgsov_err *err);

/* Runs env_guard_check on every environment's own upstream (config load does this). */
int env_guard_check_all(const struct config *cfg, struct pgsov_err *err);

#endif

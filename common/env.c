/* env.c — environment names and the hostname guard (see env.h). Pure: reads getenv() only
 * in env_resolve(). */
#include "pgsov/env.h"
#include "pgsov/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct { const char *spelling; const char *canonical; } canonical_names[] = {
    { "development", "development" }, { "dev", "development" }, { "develop", "development" },
    { "local", "development" },
    { "test", "test" }, { "testing", "test" },
    { "staging", "staging" }, { "stage", "staging" }, { "preview", "staging" },
    { "production", "production" }, { "prod", "production" }, { "live", "production" },
};

const char *env_canonical_name(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof canonical_names / sizeof canonical_names[0]; i++)
        if (strcasecmp(name, canonical_names[i].spelling) == 0)
            return canonical_names[i].canonical;
    return NULL;
}

static bool means_production(const char *name)
{
    const char *canon = env_canonical_name(name);
    return canon && strcmp(canon, "production") == 0;
}

bool env_is_production(const struct env_config *env)
{
    if (!env)
        return false;
    if (means_production(env->name))
        return true;
    for (size_t i = 0; i < env->n_aliases; i++)
        if (means_production(env->aliases[i]))
            return true;
    return false;
}

const struct env_config *env_resolve(const struct config *cfg, const char *explicit_name,
                                     struct pgsov_err *err)
{
    const char *name = explicit_name, *source = "--env";
    if (!name || !*name) {
        name = getenv("PGSOV_ENV");
        source = "PGSOV_ENV";
    }
    if (!name || !*name) {
        name = getenv("NODE_ENV");
        source = "NODE_ENV";
    }
    if (!name || !*name) {
        pgsov_fail(err, "no environment given: use --env NAME, or set PGSOV_ENV or NODE_ENV");
        return NULL;
    }
    const struct env_config *e = config_find_env(cfg, name);
    if (!e) {
        const char *canon = env_canonical_name(name);
        if (canon)
            e = config_find_env(cfg, canon);
    }
    if (!e) {
        char names[256];
        config_env_names(cfg, names, sizeof names);
        pgsov_fail(err, "environment \"%s\" (from %s) is not configured in %s; known: %s",
                   name, source, cfg && cfg->path ? cfg->path : "the config", names);
    }
    return e;
}

/* Splits a pattern into host glob and optional port glob: "h", "h:p", "[v6]", "[v6]:p".
 * A bare IPv6 address (several colons, no brackets) has no port part. */
static void split_pattern(const char *pattern, char *host, size_t host_size, const char **port)
{
    *port = NULL;
    if (pattern[0] == '[') {
        const char *close = strchr(pattern, ']');
        if (close) {
            size_t n = (size_t)(close - pattern - 1);
            snprintf(host, host_size, "%.*s", (int)n, pattern + 1);
            if (close[1] == ':')
                *port = close + 2;
            return;
        }
    }
    const char *colon = strchr(pattern, ':');
    if (colon && !strchr(colon + 1, ':')) {
        snprintf(host, host_size, "%.*s", (int)(colon - pattern), pattern);
        *port = colon + 1;
        return;
    }
    snprintf(host, host_size, "%s", pattern);
}

bool env_host_pattern_match(const char *pattern, const char *host, int port)
{
    char host_glob[256];
    const char *port_glob;
    if (!pattern || !host)
        return false;
    split_pattern(pattern, host_glob, sizeof host_glob, &port_glob);
    char bare_host[256];
    size_t hl = strlen(host);
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']')
        snprintf(bare_host, sizeof bare_host, "%.*s", (int)(hl - 2), host + 1);
    else
        snprintf(bare_host, sizeof bare_host, "%s", host);
    if (fnmatch(host_glob, bare_host, FNM_CASEFOLD) != 0)
        return false;
    if (port_glob && *port_glob) {
        char port_text[16];
        snprintf(port_text, sizeof port_text, "%d", port);
        if (fnmatch(port_glob, port_text, 0) != 0)
            return false;
    }
    return true;
}

static const char *first_match(const struct env_config *e, const char *host, int port)
{
    for (size_t i = 0; i < e->n_host_patterns; i++)
        if (env_host_pattern_match(e->host_patterns[i], host, port))
            return e->host_patterns[i];
    return NULL;
}

/* The guard compares text, the resolver reads numbers: "10.0.0.010" is 10.0.0.8 to
 * getaddrinfo (octal), "10.1" is 10.0.0.1, "::ffff:10.0.0.5" reaches 10.0.0.5 and
 * "db.prod.internal." is db.prod.internal. A host that is an address must therefore be written
 * the one way inet_ntop writes it, and a name without a trailing dot, or the guard refuses it. */
static int host_canonical(const char *host, struct pgsov_err *err)
{
    size_t len = strlen(host);
    if (len > 1 && host[len - 1] == '.')
        return pgsov_fail(err, "hostname guard: host \"%s\" ends with a dot; write it without",
                          host);
    char bare[64];
    if (host[0] == '[' && len < sizeof bare + 2 && host[len - 1] == ']') {
        memcpy(bare, host + 1, len - 2);
        bare[len - 2] = '\0';
        host = bare;
    }
    unsigned char addr[16];
    char canon[64];
    if (strchr(host, ':')) {
        if (inet_pton(AF_INET6, host, addr) != 1)
            return pgsov_fail(err, "hostname guard: host \"%s\" is not a valid IPv6 address", host);
        static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
        if (memcmp(addr, mapped, sizeof mapped) == 0)
            return pgsov_fail(err, "hostname guard: host \"%s\" is an IPv4 address in IPv6 form; "
                              "write the IPv4 address", host);
        inet_ntop(AF_INET6, addr, canon, sizeof canon);
        if (strcasecmp(canon, host) != 0)
            return pgsov_fail(err, "hostname guard: write the IPv6 address \"%s\" as %s (the "
                              "patterns are matched on that form)", host, canon);
        return 0;
    }
    /* every label starts with a digit: a number to the resolver, however it is spelled */
    bool numeric = true;
    for (const char *p = host; *p && numeric; p = strchr(p, '.') ? strchr(p, '.') + 1 : p + strlen(p))
        numeric = isdigit((unsigned char)*p);
    if (!numeric)
        return 0;
    if (inet_pton(AF_INET, host, addr) != 1)
        return pgsov_fail(err, "hostname guard: host \"%s\" is not an IPv4 address in dotted-quad "
                          "form (the resolver would read it as another address: 010 is octal, 10.1 "
                          "is 10.0.0.1); write all four decimal parts without leading zeros", host);
    inet_ntop(AF_INET, addr, canon, sizeof canon);
    if (strcmp(canon, host) != 0)
        return pgsov_fail(err, "hostname guard: write the address \"%s\" as %s", host, canon);
    return 0;
}

int env_guard_check(const struct config *cfg, const struct env_config *env,
                    const char *host, int port, struct pgsov_err *err)
{
    if (host_canonical(host, err) != 0)
        return -1;
    /* Another environment's pattern first: that is the dangerous mistake, name it. */
    for (size_t i = 0; i < cfg->n_envs; i++) {
        const struct env_config *other = &cfg->envs[i];
        if (other == env || strcmp(other->name, env->name) == 0)
            continue;
        const char *pat = first_match(other, host, port);
        if (pat)
            return pgsov_fail(err, "hostname guard: environment \"%s\" points at %s:%d, which "
                              "belongs to environment \"%s\" (its host pattern \"%s\"); refusing to "
                              "let %s reach %s's database", env->name, host, port, other->name, pat,
                              env->name, other->name);
    }
    if (!first_match(env, host, port))
        return pgsov_fail(err, "hostname guard: environment \"%s\" points at %s:%d, which matches "
                          "none of its host_patterns; point it at its own database or fix "
                          "host_patterns in [env.%s]", env->name, host, port, env->name);
    return 0;
}

int env_guard_check_all(const struct config *cfg, struct pgsov_err *err)
{
    for (size_t i = 0; i < cfg->n_envs; i++) {
        const struct env_config *e = &cfg->envs[i];
        if (env_guard_check(cfg, e, e->host, e->port, err) != 0)
            return -1;
    }
    return 0;
}

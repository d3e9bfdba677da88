/* rules.h — who may reach which environment, and run what.
 *
 * Operators write rule files in the spirit of pg_hba.conf (format: docs/rules.md). One rule per
 * line; the first rule that matches a connection decides; no match means refusal. A loaded
 * struct rules is immutable and may be shared read-only between worker threads; reload builds
 * a new one and swaps the pointer.
 * Pure: no I/O beyond reading the rule files in rules_load(), no logging, no globals. */
#ifndef PGSOV_RULES_H
#define PGSOV_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include "pgsov/err.h"
#include "pgsov/stmt_class.h"

struct config;

/* Longest accepted rule line in bytes, newline excluded. */
#define RULES_MAX_LINE 4096

enum rule_action { RULE_ALLOW, RULE_DENY };

enum rule_tls {
    RULE_TLS_ANY,           /* "any": plaintext or TLS                                     */
    RULE_TLS_REQUIRED,      /* "tls": the client connection uses TLS                       */
    RULE_TLS_CERT,          /* "cert": TLS with a verified client certificate              */
    RULE_TLS_CN,            /* "cn=NAME": verified certificate whose subject CN is NAME    */
    RULE_TLS_SHA256,        /* "sha256=HEX": verified certificate with this fingerprint    */
};

/* Values of struct rule.auth (option auth=...); -1 when the rule does not say. */
enum rule_auth {
    RULE_AUTH_PASSTHROUGH,  /* "passthrough": the upstream authenticates the client         */
    RULE_AUTH_PROXY,        /* "proxy": the proxy authenticates the client itself           */
};

enum rule_source {
    RULE_SOURCE_ALL,        /* "all": any client, TCP or unix socket                       */
    RULE_SOURCE_LIST,       /* "local" and/or CIDRs                                        */
};

/* What the proxy knows about one connection. */
struct conn_facts {
    bool is_unix;
    int family;                  /* AF_INET / AF_INET6 (ignored for unix)                  */
    unsigned char addr[16];      /* network order; IPv4 in the first 4 bytes               */
    const char *user;            /* startup user (NULL matches only "all")                 */
    const char *env;             /* canonical environment name the client declared
                                    (NULL matches only "all")                              */
    bool tls;
    bool client_cert;            /* a client certificate was presented and verified        */
    const char *cert_cn;         /* NULL if none                                           */
    const unsigned char *cert_sha256;   /* 32 bytes or NULL                                */
};

struct rule_cidr {
    int family;                  /* AF_INET / AF_INET6                                     */
    unsigned char addr[16];      /* network address, host bits zero                        */
    unsigned char prefix;        /* 0..32 / 0..128                                         */
};

/* One parsed line. Read-only after load; all pointers live as long as the struct rules. */
struct rule {
    const char *file;            /* the rule file's path as given to rules_load            */
    int line;
    enum rule_action action;
    class_set classes;           /* allow: granted classes (default CLASS_SET_DEFAULT); deny: 0 */
    const char *upstream_user;   /* NULL unless given (option upstream_user=)              */
    int auth;                    /* -1 unset, else enum rule_auth                          */

    /* matchers */
    const char *const *envs;     /* canonical names; n_envs == 0 means "all"               */
    size_t n_envs;
    enum rule_source source;
    bool source_local;           /* LIST: unix-socket clients match                        */
    const struct rule_cidr *cidrs;
    size_t n_cidrs;
    const char *const *users;    /* n_users == 0 means "all"                               */
    size_t n_users;
    enum rule_tls tls;
    const char *tls_cn;          /* RULE_TLS_CN                                            */
    unsigned char tls_sha256[32];/* RULE_TLS_SHA256                                        */
};

struct rules;   /* immutable after load; shared read-only between threads */

/* Reads the files in order and concatenates their rules. Environment names are resolved
 * against cfg (names and aliases) and stored canonical. On error returns -1 with
 * "file:line: reason" in err and leaves *out untouched. n_paths == 0 gives an empty set
 * (which refuses everything). The caller frees *out with rules_free(). */
int rules_load(const struct config *cfg, const char *const *paths, size_t n_paths,
               struct rules **out, struct pgsov_err *err);

/* Same from a string (tests, fuzzing); name stands for the file name in messages and in
 * rule->file. */
int rules_load_string(const struct config *cfg, const char *text, const char *name,
                      struct rules **out, struct pgsov_err *err);

void rules_free(struct rules *rs);

size_t rules_count(const struct rules *rs);

/* The i-th rule in load order (i < rules_count), for listings; NULL when out of range. */
const struct rule *rules_get(const struct rules *rs, size_t i);

/* First matching rule, or NULL (= refuse: deny by default). A RULE_DENY result means an
 * explicit refusal by that rule. Never allocates; safe to call concurrently. */
const struct rule *rules_match(const struct rules *rs, const struct conn_facts *who);

/* "203.0.113.5" / "[2001:db8::1]" / "local" for messages. */
void conn_facts_format_source(const struct conn_facts *who, char *buf, size_t size);

/* The rule written back as one normalized line (canonical environment names), e.g.
 * "allow production 10.0.0.0/8 app tls read,write,transaction,session", for SHOW RULES
 * and log lines. Truncated to size. */
void rule_format(const struct rule *r, char *buf, size_t size);

const char *rule_tls_name(enum rule_tls t);
const char *rule_auth_name(int auth);     /* "passthrough", "proxy", "unset" */

#endif

/* config.h — proxy.ini as one immutable snapshot.
 * config_load() reads the file with inih, expands ${VAR} from the process environment,
 * validates every key (errors carry file:line) and runs the hostname guard. A loaded
 * struct config is never modified: reload builds a new one and swaps the pointer.
 * Pure apart from reading the file and getenv(). */
#ifndef PGSOV_CONFIG_H
#define PGSOV_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include "pgsov/err.h"

enum client_tls_mode {
    CLIENT_TLS_DISABLE,     /* answer SSLRequest with 'N'                               */
    CLIENT_TLS_ALLOW,       /* TLS if the client asks, plaintext otherwise              */
    CLIENT_TLS_REQUIRE,     /* plaintext clients are refused                             */
    CLIENT_TLS_VERIFY_CA,   /* TLS with a client certificate signed by client_tls_ca     */
};

/* libpq's sslmode meanings, for the proxy→upstream and tool→database links. */
enum sslmode {
    SSLMODE_DISABLE,
    SSLMODE_REQUIRE,        /* encrypt, do not verify                                   */
    SSLMODE_VERIFY_CA,      /* chain must verify against sslrootcert                     */
    SSLMODE_VERIFY_FULL,    /* chain and host name must verify (the default)             */
};

enum log_format { LOG_FORMAT_KV, LOG_FORMAT_JSON };

/* Who authenticates the client (same values as rules.h's enum rule_auth). */
enum env_auth { ENV_AUTH_PASSTHROUGH = 0, ENV_AUTH_PROXY = 1 };

struct upstream_user_map {      /* upstream_user.CLIENT = ROLE */
    char *client_user;
    char *upstream_user;
};

struct upstream_password {      /* upstream_password.ROLE = secret (from ${VAR}) */
    char *role;
    char *password;
};
enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

struct env_config {
    char *name;                 /* canonical name: the section [env.NAME]                  */
    char **aliases;             /* other names a client may declare                        */
    size_t n_aliases;
    char *host;                 /* upstream host name or address                           */
    int port;                   /* upstream port                                           */
    char *database;             /* real database name on the upstream                      */
    enum sslmode sslmode;       /* default verify-full                                     */
    char *sslrootcert;          /* CA file for verify-ca / verify-full                     */
    char *sslcert, *sslkey;     /* optional client certificate towards the upstream       */
    char **host_patterns;       /* hostname guard: globs "host" or "host:port"            */
    size_t n_host_patterns;
    bool require_approval;      /* migrate refuses without --approve (default: true for an
                                   environment named production, false otherwise)          */
    char *migrations_dir;       /* default "migrations"                                    */
    enum env_auth auth;         /* passthrough (default) or proxy                          */
    struct upstream_user_map *user_map;     /* client user → upstream role (auth = proxy)  */
    size_t n_user_map;
    struct upstream_password *passwords;    /* upstream role → password (auth = proxy)      */
    size_t n_passwords;
    int line;                   /* line of the section header, for messages                */
};

struct config {
    char *path;                 /* file the snapshot was read from                         */

    /* [proxy] */
    char **listen;              /* "127.0.0.1:6432", "[::1]:6432", "*:6432"                */
    size_t n_listen;
    char *unix_socket_dir;      /* NULL: no unix socket; else .s.PGSQL.<port> in it         */
    char **rules_files;
    size_t n_rules_files;
    enum client_tls_mode client_tls;
    char *client_tls_cert, *client_tls_key, *client_tls_ca;
    int max_clients;
    uint32_t max_message_size;  /* bytes; larger messages close the connection            */
    int startup_timeout_ms;     /* client must finish startup (and TLS) within this        */
    int idle_timeout_ms;        /* 0 = never; idle clients outside a transaction closed    */
    int connect_timeout_ms;     /* upstream TCP+TLS connect                                 */
    int shutdown_timeout_ms;    /* SIGTERM drain bound                                      */
    int workers;                /* event-loop threads (SO_REUSEPORT); 0 = auto, one per CPU */
    bool upstream_reuse;        /* auth = proxy: reset and reuse upstream connections (pool.h) */
    int upstream_idle_timeout_ms;   /* a parked upstream connection is closed after this   */
    int upstream_max_idle;      /* parked upstream connections per worker                  */
    enum log_format log_format;
    enum log_level log_level;
    char *log_file;             /* NULL: stderr                                            */
    char *audit_log;            /* NULL: no audit log                                      */
    char *pid_file;
    char *users_file;           /* client credentials for auth = proxy (users.h format)    */

    /* statement guard */
    bool guard;                 /* classify and enforce statement classes (default on)    */
    uint32_t guard_max_statement_length;  /* longer SQL is not parsed: class unknown      */
    size_t guard_cache_entries;
    char **privileged_functions;          /* function names that make a statement privileged */
    size_t n_privileged_functions;

    /* environments, in file order */
    struct env_config *envs;
    size_t n_envs;
};

/* Reads and validates path. On error returns -1 with "file:line: reason" in err. */
int config_load(const char *path, struct config **out, struct pgsov_err *err);

/* Flags for config_load_ex(). */
#define CONFIG_NO_SECRETS 0x1   /* skip upstream_password.* (the tools never need the proxy's
                                   upstream secrets, nor the environment variables behind them) */
int config_load_ex(const char *path, unsigned flags, struct config **out, struct pgsov_err *err);

/* Same from a string (tests); name is used in messages. */
int config_load_string(const char *text, const char *name, struct config **out,
                       struct pgsov_err *err);
int config_load_string_ex(const char *text, const char *name, unsigned flags, struct config **out,
                          struct pgsov_err *err);

void config_free(struct config *cfg);

/* auth = proxy: the upstream role for a client user (upstream_user.CLIENT, else the client's
 * own name) and that role's password (upstream_password.ROLE, NULL when none is configured). */
const char *env_upstream_user(const struct env_config *env, const char *client_user);
const char *env_upstream_password(const struct env_config *env, const char *role);

/* Environment by canonical name or alias (case-insensitive), or NULL. */
const struct env_config *config_find_env(const struct config *cfg, const char *name);

/* "development, staging, production" into buf, for error messages. */
void config_env_names(const struct config *cfg, char *buf, size_t size);

const char *sslmode_name(enum sslmode m);
int sslmode_parse(const char *s, enum sslmode *out);

#endif

/* test_config.c — proxy.ini validation, ${VAR} expansion and the hostname guard. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pgsov/config.h"
#include "pgsov/env.h"

#define DEV_SECTION "[env.development]\naliases = dev\nhost = localhost\nport = 5433\n" \
                    "database = app\nhost_patterns = localhost:5433\n"
#define PROD_SECTION "[env.production]\naliases = prod\nhost = db.prod.example.com\nport = 5432\n" \
                     "database = app\nhost_patterns = *.prod.example.com\n"
#define PROXY_MIN "[proxy]\nclient_tls = disable\n"

static void test_valid_minimal(void **state)
{
    struct config *c;
    struct pgsov_err err;
    if (config_load_string(PROXY_MIN DEV_SECTION PROD_SECTION, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c->n_envs, 2);
    assert_string_equal(c->envs[0].name, "development");
    assert_int_equal(c->envs[0].sslmode, SSLMODE_VERIFY_FULL);     /* secure default */
    assert_false(c->envs[0].require_approval);
    assert_true(c->envs[1].require_approval);                      /* production default */
    assert_string_equal(c->listen[0], "127.0.0.1:6432");
    assert_int_equal(c->max_message_size, 64u * 1024 * 1024);
    assert_true(c->guard);
    assert_int_equal(c->workers, 0);                               /* auto */
    assert_true(c->upstream_reuse);                                /* auth = proxy backends reused */
    assert_int_equal(c->upstream_idle_timeout_ms, 60000);
    assert_int_equal(c->upstream_max_idle, 100);
    assert_ptr_equal(config_find_env(c, "PROD"), &c->envs[1]);
    assert_ptr_equal(config_find_env(c, "development"), &c->envs[0]);
    assert_null(config_find_env(c, "staging"));
    char names[64];
    config_env_names(c, names, sizeof names);
    assert_string_equal(names, "development, production");
    config_free(c);
}

/* Production by any of its names needs approval by default: [env.prod], [env.live], or a
 * section whose alias says production. An explicit require_approval still wins. */
static void test_production_by_any_name_needs_approval(void **state)
{
    static const struct { const char *ini; bool production; } cases[] = {
        { "[env.prod]\n", true },
        { "[env.LIVE]\n", true },
        { "[env.main]\naliases = app, production\n", true },
        { "[env.prod]\nrequire_approval = off\n", false },
        { "[env.staging]\naliases = preview\n", false },
        { "[env.prd]\n", false },              /* no known spelling: say so with an alias */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[512];
        snprintf(text, sizeof text, PROXY_MIN "%shost = localhost\nport = 5433\ndatabase = app\n"
                 "host_patterns = localhost:5433\n", cases[i].ini);
        struct config *c;
        struct pgsov_err err;
        if (config_load_string(text, "t.ini", &c, &err) != 0)
            fail_msg("case %zu: %s", i, err.msg);
        if (c->envs[0].require_approval != cases[i].production)
            fail_msg("case %zu (%s): require_approval = %d", i, cases[i].ini,
                     c->envs[0].require_approval);
        bool explicit_off = strstr(cases[i].ini, "require_approval") != NULL;
        assert_int_equal(env_is_production(&c->envs[0]), cases[i].production || explicit_off);
        config_free(c);
    }
}

static void test_values(void **state)
{
    struct config *c;
    struct pgsov_err err;
    const char *text = "[proxy]\nclient_tls = disable\nlisten = 127.0.0.1:7000, [::1]:7000\n"
                       "max_message_size = 1MB\nstartup_timeout = 500ms\nidle_timeout = 2m\n"
                       "shutdown_timeout = 1h\nlog_format = json\nlog_level = warning\nguard = off\n"
                       "rules = a.rules, b.rules\nprivileged_functions = dblink_exec, lo_import\n"
                       "upstream_reuse = off\nupstream_idle_timeout = 5s\nupstream_max_idle = 0\n"
                       DEV_SECTION "sslmode = disable\nrequire_approval = yes\n";
    if (config_load_string(text, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c->n_listen, 2);
    assert_string_equal(c->listen[1], "[::1]:7000");
    assert_int_equal(c->max_message_size, 1024 * 1024);
    assert_int_equal(c->startup_timeout_ms, 500);
    assert_int_equal(c->idle_timeout_ms, 120000);
    assert_int_equal(c->shutdown_timeout_ms, 3600000);
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    assert_int_equal(c->log_level, LOG_WARN);
    assert_false(c->guard);
    assert_false(c->upstream_reuse);
    assert_int_equal(c->upstream_idle_timeout_ms, 5000);
    assert_int_equal(c->upstream_max_idle, 0);
    assert_int_equal(c->n_rules_files, 2);
    assert_int_equal(c->n_privileged_functions, 2);
    assert_int_equal(c->envs[0].sslmode, SSLMODE_DISABLE);
    assert_true(c->envs[0].require_approval);
    config_free(c);
}

static void test_env_expansion(void **state)
{
    struct config *c;
    struct pgsov_err err;
    setenv("PGSOV_TEST_HOST", "localhost", 1);
    unsetenv("PGSOV_TEST_MISSING");
    const char *text = PROXY_MIN "[env.development]\nhost = ${PGSOV_TEST_HOST}\nport = 5433\n"
                       "database = ${PGSOV_TEST_MISSING:-app}\nhost_patterns = localhost:5433\n";
    if (config_load_string(text, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(c->envs[0].host, "localhost");
    assert_string_equal(c->envs[0].database, "app");
    config_free(c);

    const char *bad = PROXY_MIN "[env.development]\nhost = ${PGSOV_TEST_MISSING}\n";
    assert_int_equal(config_load_string(bad, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "t.ini:4:"));
    assert_non_null(strstr(err.msg, "PGSOV_TEST_MISSING"));

    /* set but empty is unset (never an empty secret), unless the reference allows it */
    setenv("PGSOV_TEST_EMPTY", "", 1);
    const char *empty = PROXY_MIN "[env.development]\nhost = localhost\nport = 5433\ndatabase = app\n"
                        "host_patterns = localhost:5433\nupstream_password.app = ${PGSOV_TEST_EMPTY}\n";
    assert_int_equal(config_load_string(empty, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "PGSOV_TEST_EMPTY is not set or empty"));
    const char *allowed = PROXY_MIN "[env.development]\nhost = localhost\nport = 5433\n"
                          "database = app${PGSOV_TEST_EMPTY:-}\nhost_patterns = localhost:5433\n";
    if (config_load_string(allowed, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_string_equal(c->envs[0].database, "app");
    config_free(c);
    unsetenv("PGSOV_TEST_EMPTY");
}

/* inih reads lines into a fixed buffer: a longer line is refused, never split (its tail read as
 * a line of its own replaced a list); a list goes on over indented lines. */
static void test_long_lines_and_continued_lists(void **state)
{
    char text[2048];
    char list[600] = "default";
    for (int i = 0; i < 40; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), ", app.fn_%02d", i);
    snprintf(text, sizeof text, PROXY_MIN "privileged_functions = %s\n" DEV_SECTION, list);
    struct config *c;
    struct pgsov_err err;
    assert_int_equal(config_load_string(text, "t.ini", &c, &err), -1);
    if (!strstr(err.msg, "t.ini:3: line longer than"))
        fail_msg("%s", err.msg);
    snprintf(text, sizeof text, PROXY_MIN "privileged_functions = default, app.a,\n"
             "    app.b, app.c\n\tapp.d\n" DEV_SECTION);
    if (config_load_string(text, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c->n_privileged_functions, 5);
    assert_string_equal(c->privileged_functions[0], "default");
    assert_string_equal(c->privileged_functions[4], "app.d");
    config_free(c);
    /* the same key again on its own line still replaces */
    snprintf(text, sizeof text, PROXY_MIN "privileged_functions = a, b\nprivileged_functions = c\n" DEV_SECTION);
    if (config_load_string(text, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_int_equal(c->n_privileged_functions, 1);
    config_free(c);
}

/* The documented example is a valid config (the tools' view: no upstream secrets needed), and
 * says what the defaults are. make runs the unit tests from the repository root. */
static void test_example_file(void **state)
{
    struct config *c;
    struct pgsov_err err;
    if (config_load_ex("proxy.ini.example", CONFIG_NO_SECRETS, &c, &err) != 0)
        fail_msg("proxy.ini.example: %s", err.msg);
    assert_true(c->n_envs >= 2);
    assert_int_equal(c->client_tls, CLIENT_TLS_REQUIRE);
    assert_true(c->upstream_reuse);
    assert_int_equal(c->upstream_idle_timeout_ms, 60000);
    assert_int_equal(c->upstream_max_idle, 100);
    assert_int_equal(c->workers, 0);
    for (size_t i = 0; i < c->n_envs; i++)
        assert_int_equal(c->envs[i].sslmode, SSLMODE_VERIFY_FULL);
    config_free(c);
}

/* Every invalid config names the file and line (or the environment) and why. */
static void test_errors(void **state)
{
    static const struct { const char *text; const char *want; } cases[] = {
        { "[proxy]\nbogus = 1\n" DEV_SECTION, "t.ini:2: unknown key \"bogus\"" },
        { PROXY_MIN DEV_SECTION "sslmode = verify-ca\n", "sslmode = verify-ca needs sslrootcert" },
        { "[proxy]\nclient_tls = maybe\n", "t.ini:2: client_tls" },
        { "[proxy]\n" DEV_SECTION, "client_tls = require needs client_tls_cert" },
        { "[proxy]\nclient_tls = verify-ca\nclient_tls_cert = c\nclient_tls_key = k\n" DEV_SECTION,
          "verify-ca needs client_tls_ca" },
        { PROXY_MIN "max_clients = 0\n" DEV_SECTION, "t.ini:3: max_clients" },
        { PROXY_MIN "max_message_size = 12\n" DEV_SECTION, "t.ini:3: max_message_size" },
        { PROXY_MIN "startup_timeout = soon\n" DEV_SECTION, "t.ini:3: startup_timeout" },
        { PROXY_MIN "upstream_reuse = sometimes\n" DEV_SECTION, "t.ini:3: upstream_reuse" },
        { PROXY_MIN "upstream_idle_timeout = 0\n" DEV_SECTION, "t.ini:3: upstream_idle_timeout" },
        { PROXY_MIN "upstream_max_idle = -1\n" DEV_SECTION, "t.ini:3: upstream_max_idle" },
        { PROXY_MIN "[staging]\nhost = x\n", "t.ini:4: unknown section [staging]" },
        { PROXY_MIN "[env.bad name]\nhost = x\n", "environment names use letters" },
        { PROXY_MIN, "no environments" },
        { PROXY_MIN "[env.development]\nport = 5433\ndatabase = app\nhost_patterns = x\n", "has no host" },
        { PROXY_MIN "[env.development]\nhost = h\nhost_patterns = h\n", "has no database" },
        { PROXY_MIN "[env.development]\nhost = h\ndatabase = d\n", "has no host_patterns" },
        { PROXY_MIN DEV_SECTION "sslmode = prefer\n", "t.ini:9: sslmode" },
        { PROXY_MIN DEV_SECTION "port = 99999\n", "t.ini:9: port" },
        { PROXY_MIN DEV_SECTION "frobnicate = 1\n", "unknown key \"frobnicate\" in [env.development]" },
        { PROXY_MIN DEV_SECTION "sslcert = c\n", "sslcert and sslkey go together" },
        { PROXY_MIN DEV_SECTION PROD_SECTION "[env.staging]\naliases = prod\nhost = s.example.com\n"
          "database = app\nhost_patterns = s.example.com\n", "\"prod\" is used by" },
        { PROXY_MIN DEV_SECTION "[env.development]\nhost = x\n", "appears twice" },
        { "[proxy]\nthis is not ini\n", "t.ini:2: syntax error" },
        { PROXY_MIN "[env.development]\nhost = db.prod.internal,localhost\nport = 5433\n"
          "database = app\nhost_patterns = *\n", "must be one host name or address" },
        { PROXY_MIN "startup_timeout = nan\n", "startup_timeout" },
        { PROXY_MIN "startup_timeout = 0x10\n", "startup_timeout" },
        { PROXY_MIN "idle_timeout = 1e3\n", "idle_timeout" },
        { PROXY_MIN "startup_timeout = 0.0001\n", "startup_timeout" },
        { PROXY_MIN "startup_timeout = -1\n", "startup_timeout" },
        { PROXY_MIN "startup_timeout = .5\n", "startup_timeout" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct config *c = NULL;
        struct pgsov_err err = { "" };
        if (config_load_string(cases[i].text, "t.ini", &c, &err) != -1)
            fail_msg("case %zu was accepted (want \"%s\")", i, cases[i].want);
        if (!strstr(err.msg, cases[i].want))
            fail_msg("case %zu: error \"%s\" does not contain \"%s\"", i, err.msg, cases[i].want);
    }
}

static void test_host_pattern_match(void **state)
{
    static const struct { const char *pattern, *host; int port; bool match; } cases[] = {
        { "db.prod.example.com", "db.prod.example.com", 5432, true },
        { "db.prod.example.com", "DB.PROD.example.COM", 5432, true },
        { "*.prod.example.com", "db.prod.example.com", 1, true },
        { "*.prod.example.com", "prod.example.com", 1, false },
        { "*.prod.example.com", "db.dev.example.com", 1, false },
        { "10.0.1.*", "10.0.1.7", 5432, true },
        { "10.0.1.*", "10.0.10.7", 5432, false },
        { "127.0.0.1:5433", "127.0.0.1", 5433, true },
        { "127.0.0.1:5433", "127.0.0.1", 5434, false },
        { "localhost:54*", "localhost", 5433, true },
        { "[::1]:5433", "::1", 5433, true },
        { "[::1]:5433", "[::1]", 5433, true },
        { "[::1]:5433", "::1", 5432, false },
        { "::1", "::1", 5432, true },
        { "fd00::*", "fd00::12", 5432, true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (env_host_pattern_match(cases[i].pattern, cases[i].host, cases[i].port) != cases[i].match)
            fail_msg("pattern \"%s\" vs %s:%d: expected %s", cases[i].pattern, cases[i].host,
                     cases[i].port, cases[i].match ? "match" : "no match");
}

/* The classic accident: development's upstream is production's host. */
static void test_hostname_guard(void **state)
{
    struct config *c;
    struct pgsov_err err;
    const char *crossed = PROXY_MIN
        "[env.development]\nhost = db.prod.example.com\ndatabase = app\nhost_patterns = localhost, *.dev.example.com\n"
        PROD_SECTION;
    assert_int_equal(config_load_string(crossed, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "\"development\""));
    assert_non_null(strstr(err.msg, "\"production\""));
    assert_non_null(strstr(err.msg, "db.prod.example.com"));

    const char *own = PROXY_MIN
        "[env.development]\nhost = db.other.example.com\ndatabase = app\nhost_patterns = *.dev.example.com\n";
    assert_int_equal(config_load_string(own, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "matches none of its host_patterns"));

    /* same host, told apart by port */
    const char *ports = PROXY_MIN
        "[env.development]\nhost = localhost\nport = 5433\ndatabase = app\nhost_patterns = localhost:5433\n"
        "[env.production]\nhost = localhost\nport = 5433\ndatabase = app\nhost_patterns = localhost:5434\n";
    assert_int_equal(config_load_string(ports, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "belongs to environment \"development\""));

    /* tools check URLs against a loaded config */
    if (config_load_string(PROXY_MIN DEV_SECTION PROD_SECTION, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    const struct env_config *dev = config_find_env(c, "dev");
    assert_int_equal(env_guard_check(c, dev, "localhost", 5433, &err), 0);
    assert_int_equal(env_guard_check(c, dev, "db.prod.example.com", 5432, &err), -1);
    assert_int_equal(env_guard_check(c, dev, "localhost", 5999, &err), -1);
    config_free(c);

    /* The guard reads text, the resolver numbers: every spelling of an address but the
     * canonical one is refused (dev's "1677*" would otherwise let 167772168 = 10.0.0.8 by). */
    const char *wide = PROXY_MIN
        "[env.development]\nhost = 10.0.1.1\ndatabase = app\n"
        "host_patterns = 10.0.1.*, 1677*, 10.0.8, fd00::*, *.dev.internal, *.internal.\n"
        "[env.production]\nhost = 10.0.0.8\ndatabase = app\nhost_patterns = 10.0.0.8, db.prod.internal\n";
    if (config_load_string(wide, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    dev = config_find_env(c, "development");
    static const struct { const char *host; const char *why; } refused[] = {
        { "10.0.0.010", "not an IPv4 address in dotted-quad form" },
        { "10.0.8", "not an IPv4 address in dotted-quad form" },
        { "167772168", "not an IPv4 address in dotted-quad form" },
        { "0x0a.0.0.8", "not an IPv4 address in dotted-quad form" },
        { "::ffff:10.0.0.8", "IPv4 address in IPv6 form" },
        { "fd00:0::1", "as fd00::1" },
        { "db.dev.internal.", "ends with a dot" },
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        if (env_guard_check(c, dev, refused[i].host, 5432, &err) != -1)
            fail_msg("%s was accepted for development", refused[i].host);
        if (!strstr(err.msg, refused[i].why))
            fail_msg("%s: \"%s\" lacks \"%s\"", refused[i].host, err.msg, refused[i].why);
    }
    static const char *const accepted[] = { "10.0.1.9", "fd00::1", "[fd00::1]", "db.dev.internal",
                                            "1db.dev.internal" };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++)
        if (env_guard_check(c, dev, accepted[i], 5432, &err) != 0)
            fail_msg("%s: %s", accepted[i], err.msg);
    config_free(c);
}

static void test_env_resolve(void **state)
{
    struct config *c;
    struct pgsov_err err;
    if (config_load_string(PROXY_MIN DEV_SECTION PROD_SECTION, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    unsetenv("PGSOV_ENV");
    unsetenv("NODE_ENV");
    assert_null(env_resolve(c, NULL, &err));
    assert_non_null(strstr(err.msg, "no environment given"));
    setenv("NODE_ENV", "production", 1);
    assert_ptr_equal(env_resolve(c, NULL, &err), &c->envs[1]);
    setenv("PGSOV_ENV", "develop", 1);                  /* canonical spelling → development */
    assert_ptr_equal(env_resolve(c, NULL, &err), &c->envs[0]);
    assert_ptr_equal(env_resolve(c, "prod", &err), &c->envs[1]);
    assert_null(env_resolve(c, "staging", &err));
    assert_non_null(strstr(err.msg, "known: development, production"));
    unsetenv("PGSOV_ENV");
    unsetenv("NODE_ENV");
    assert_string_equal(env_canonical_name("live"), "production");
    assert_string_equal(env_canonical_name("PREVIEW"), "staging");
    assert_null(env_canonical_name("qa"));
    config_free(c);
}

/* auth = proxy: client → upstream role map, passwords from the environment, and the tools'
 * view of the same file without those secrets. */
static void test_upstream_credentials(void **state)
{
    struct config *c;
    struct pgsov_err err;
    unsetenv("PGSOV_TEST_SECRET");
    const char *text = "[proxy]\nclient_tls = disable\nusers_file = /etc/pgsov/users\n"
                       DEV_SECTION "auth = proxy\nupstream_user.app = app_rw\n"
                       "upstream_password.app_rw = ${PGSOV_TEST_SECRET}\n";
    assert_int_equal(config_load_string(text, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "PGSOV_TEST_SECRET"));
    if (config_load_string_ex(text, "t.ini", CONFIG_NO_SECRETS, &c, &err) != 0)
        fail_msg("%s", err.msg);
    assert_null(env_upstream_password(&c->envs[0], "app_rw"));
    config_free(c);

    setenv("PGSOV_TEST_SECRET", "s3cret", 1);
    if (config_load_string(text, "t.ini", &c, &err) != 0)
        fail_msg("%s", err.msg);
    const struct env_config *e = &c->envs[0];
    assert_int_equal(e->auth, ENV_AUTH_PROXY);
    assert_string_equal(env_upstream_user(e, "app"), "app_rw");
    assert_string_equal(env_upstream_user(e, "other"), "other");
    assert_string_equal(env_upstream_password(e, "app_rw"), "s3cret");
    assert_null(env_upstream_password(e, "app"));
    config_free(c);
    unsetenv("PGSOV_TEST_SECRET");

    const char *no_users = PROXY_MIN DEV_SECTION "auth = proxy\n";
    assert_int_equal(config_load_string(no_users, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "needs users_file"));
    const char *bad_auth = PROXY_MIN DEV_SECTION "auth = maybe\n";
    assert_int_equal(config_load_string(bad_auth, "t.ini", &c, &err), -1);
    assert_non_null(strstr(err.msg, "t.ini:9: auth"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_minimal),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_production_by_any_name_needs_approval),
        cmocka_unit_test(test_env_expansion),
        cmocka_unit_test(test_long_lines_and_continued_lists),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_host_pattern_match),
        cmocka_unit_test(test_hostname_guard),
        cmocka_unit_test(test_env_resolve),
        cmocka_unit_test(test_upstream_credentials),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

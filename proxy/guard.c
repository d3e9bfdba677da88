/* guard.c — classifies SQL text into statement classes (see guard.h).
 * Owns: the node-type → class table for PostgreSQL 15's grammar, the walk over libpg_query's
 * JSON parse tree (every statement, nested ones included), the lexing-change rule, the
 * privileged-function rule and the two verdict cache levels (exact text; token stream with
 * literal values masked, from pg_query_scan), each a hash table with CLOCK eviction.
 * Does not own: policy (rules.c), what a PREPARE recorded (session.c), I/O of any kind. */
#include "pgsov/guard.h"

#include <ctype.h>
#include <jansson.h>
#include <pg_query.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "pgsov/err.h"

/* ---- the node table ------------------------------------------------------------------ */

enum node_kind {
    K_CLASS,    /* the node is of one class; nested nodes add theirs            */
    K_INNER,    /* the node takes the classes of what it wraps                  */
    K_DEPENDS,  /* a handler reads the node's fields                            */
};

enum node_special {
    SP_NONE,
    SP_SELECT,              /* read; SELECT ... INTO is ddl too                                */
    SP_INSERT,              /* write; INSERT ... VALUES reads nothing, INSERT ... SELECT does  */
    SP_RENAME,              /* ddl; ALTER ROLE ... RENAME is role                             */
    SP_UPDATE,              /* write; UPDATE pg_settings calls set_config through a rule       */
    SP_EXPLAIN,             /* EXPLAIN ANALYZE executes its statement, plain EXPLAIN does not */
    SP_COPY,                /* file/program: privileged; FROM STDIN write; TO STDOUT read      */
    SP_SET,                 /* SET/RESET: session, role/session_authorization privileged       */
    SP_ALTER_ROLE_SET,      /* role, and the SET inside may change lexing                     */
    SP_ALTER_DATABASE_SET,  /* ddl, and the SET inside may change lexing                      */
    SP_ALTER_SYSTEM,        /* privileged, and the SET inside may change lexing               */
    SP_PREPARE,             /* the class of its statement, recorded under its name            */
    SP_EXECUTE,             /* whatever the session recorded for the name                     */
    SP_DEALLOCATE,          /* session                                                        */
};

struct node_rule {
    const char *type;       /* node type as libpg_query's JSON names it */
    enum node_kind kind;
    enum stmt_class cls;    /* for K_CLASS */
    enum node_special special;
};

/* Every *Stmt node type of pg_query.proto's Node oneof (PostgreSQL 15), sorted by strcmp for
 * bsearch; tests/unit/test_guard.c checks both properties against the .proto file. */
static const struct node_rule node_rules[] = {
    { "AlterCollationStmt",           K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterDatabaseRefreshCollStmt", K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterDatabaseSetStmt",         K_DEPENDS, CLASS_READ,        SP_ALTER_DATABASE_SET },
    { "AlterDatabaseStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterDefaultPrivilegesStmt",   K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "AlterDomainStmt",              K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterEnumStmt",                K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterEventTrigStmt",           K_CLASS,   CLASS_PRIVILEGED,  SP_NONE               },
    { "AlterExtensionContentsStmt",   K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterExtensionStmt",           K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterFdwStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterForeignServerStmt",       K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterFunctionStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterObjectDependsStmt",       K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterObjectSchemaStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterOpFamilyStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterOperatorStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterOwnerStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterPolicyStmt",              K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterPublicationStmt",         K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterRoleSetStmt",             K_DEPENDS, CLASS_READ,        SP_ALTER_ROLE_SET     },
    { "AlterRoleStmt",                K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "AlterSeqStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterStatsStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterSubscriptionStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterSystemStmt",              K_DEPENDS, CLASS_READ,        SP_ALTER_SYSTEM       },
    { "AlterTSConfigurationStmt",     K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterTSDictionaryStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterTableMoveAllStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterTableSpaceOptionsStmt",   K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterTableStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterTypeStmt",                K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "AlterUserMappingStmt",         K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CallStmt",                     K_CLASS,   CLASS_FUNCTION,    SP_NONE               },
    { "CheckPointStmt",               K_CLASS,   CLASS_MAINTENANCE, SP_NONE               },
    { "ClosePortalStmt",              K_CLASS,   CLASS_SESSION,     SP_NONE               },
    { "ClusterStmt",                  K_CLASS,   CLASS_MAINTENANCE, SP_NONE               },
    { "CommentStmt",                  K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CompositeTypeStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "ConstraintsSetStmt",           K_CLASS,   CLASS_TRANSACTION, SP_NONE               },
    { "CopyStmt",                     K_DEPENDS, CLASS_READ,        SP_COPY               },
    { "CreateAmStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateCastStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateConversionStmt",         K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateDomainStmt",             K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateEnumStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateEventTrigStmt",          K_CLASS,   CLASS_PRIVILEGED,  SP_NONE               },
    { "CreateExtensionStmt",          K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateFdwStmt",                K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateForeignServerStmt",      K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateForeignTableStmt",       K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateFunctionStmt",           K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateOpClassStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateOpFamilyStmt",           K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreatePLangStmt",              K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreatePolicyStmt",             K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreatePublicationStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateRangeStmt",              K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateRoleStmt",               K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "CreateSchemaStmt",             K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateSeqStmt",                K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateStatsStmt",              K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateStmt",                   K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateSubscriptionStmt",       K_CLASS,   CLASS_PRIVILEGED,  SP_NONE               },
    { "CreateTableAsStmt",            K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateTableSpaceStmt",         K_CLASS,   CLASS_PRIVILEGED,  SP_NONE               },
    { "CreateTransformStmt",          K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateTrigStmt",               K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreateUserMappingStmt",        K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "CreatedbStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DeallocateStmt",               K_DEPENDS, CLASS_READ,        SP_DEALLOCATE         },
    { "DeclareCursorStmt",            K_INNER,   CLASS_READ,        SP_NONE               },
    { "DefineStmt",                   K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DeleteStmt",                   K_CLASS,   CLASS_WRITE,       SP_NONE               },
    { "DiscardStmt",                  K_CLASS,   CLASS_SESSION,     SP_NONE               },
    { "DoStmt",                       K_CLASS,   CLASS_FUNCTION,    SP_NONE               },
    { "DropOwnedStmt",                K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DropRoleStmt",                 K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "DropStmt",                     K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DropSubscriptionStmt",         K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DropTableSpaceStmt",           K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DropUserMappingStmt",          K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "DropdbStmt",                   K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "ExecuteStmt",                  K_DEPENDS, CLASS_READ,        SP_EXECUTE            },
    { "ExplainStmt",                  K_DEPENDS, CLASS_READ,        SP_EXPLAIN            },
    { "FetchStmt",                    K_CLASS,   CLASS_READ,        SP_NONE               },
    { "GrantRoleStmt",                K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "GrantStmt",                    K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "ImportForeignSchemaStmt",      K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "IndexStmt",                    K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "InsertStmt",                   K_DEPENDS, CLASS_READ,        SP_INSERT             },
    { "ListenStmt",                   K_CLASS,   CLASS_SESSION,     SP_NONE               },
    { "LoadStmt",                     K_CLASS,   CLASS_PRIVILEGED,  SP_NONE               },
    { "LockStmt",                     K_CLASS,   CLASS_WRITE,       SP_NONE               },
    { "MergeStmt",                    K_CLASS,   CLASS_WRITE,       SP_NONE               },
    { "NotifyStmt",                   K_CLASS,   CLASS_SESSION,     SP_NONE               },
    { "PLAssignStmt",                 K_CLASS,   CLASS_UNKNOWN,     SP_NONE               },
    { "PrepareStmt",                  K_DEPENDS, CLASS_READ,        SP_PREPARE            },
    { "RawStmt",                      K_INNER,   CLASS_READ,        SP_NONE               },
    { "ReassignOwnedStmt",            K_CLASS,   CLASS_ROLE,        SP_NONE               },
    { "RefreshMatViewStmt",           K_CLASS,   CLASS_MAINTENANCE, SP_NONE               },
    { "ReindexStmt",                  K_CLASS,   CLASS_MAINTENANCE, SP_NONE               },
    { "RenameStmt",                   K_DEPENDS, CLASS_READ,        SP_RENAME             },
    { "ReplicaIdentityStmt",          K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "ReturnStmt",                   K_CLASS,   CLASS_READ,        SP_NONE               },
    { "RuleStmt",                     K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "SecLabelStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "SelectStmt",                   K_DEPENDS, CLASS_READ,        SP_SELECT             },
    { "SetOperationStmt",             K_CLASS,   CLASS_READ,        SP_NONE               },
    { "TransactionStmt",              K_CLASS,   CLASS_TRANSACTION, SP_NONE               },
    { "TruncateStmt",                 K_CLASS,   CLASS_DDL,         SP_NONE               },
    { "UnlistenStmt",                 K_CLASS,   CLASS_SESSION,     SP_NONE               },
    { "UpdateStmt",                   K_DEPENDS, CLASS_READ,        SP_UPDATE             },
    { "VacuumStmt",                   K_CLASS,   CLASS_MAINTENANCE, SP_NONE               },
    { "VariableSetStmt",              K_DEPENDS, CLASS_READ,        SP_SET                },
    { "VariableShowStmt",             K_CLASS,   CLASS_READ,        SP_NONE               },
    { "ViewStmt",                     K_CLASS,   CLASS_DDL,         SP_NONE               },
};

#define N_NODE_RULES (sizeof node_rules / sizeof node_rules[0])

static int node_rule_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct node_rule *)elem)->type);
}

static const struct node_rule *node_rule_find(const char *type)
{
    return bsearch(type, node_rules, N_NODE_RULES, sizeof node_rules[0], node_rule_cmp);
}

const char *guard_node_class_name(const char *node_type)
{
    const struct node_rule *r = node_type ? node_rule_find(node_type) : NULL;
    if (!r)
        return NULL;
    switch (r->kind) {
    case K_CLASS: return stmt_class_name(r->cls);
    case K_INNER: return "inner";
    case K_DEPENDS: return "depends";
    }
    return NULL;
}

/* ---- danger order ------------------------------------------------------------------- */

static const enum stmt_class danger_order[CLASS__COUNT] = {   /* most dangerous first */
    CLASS_UNKNOWN, CLASS_PRIVILEGED, CLASS_ROLE, CLASS_DDL, CLASS_FUNCTION, CLASS_WRITE,
    CLASS_MAINTENANCE, CLASS_SESSION, CLASS_TRANSACTION, CLASS_READ,
};

enum stmt_class guard_worst_class(class_set set)
{
    for (size_t i = 0; i < CLASS__COUNT; i++)
        if (set & CLASS_BIT(danger_order[i]))
            return danger_order[i];
    return CLASS_READ;
}

void guard_resolve_execute(struct guard_verdict *v, class_set recorded)
{
    if (!v->execute_name[0])
        return;
    v->classes = v->classes_besides_execute | recorded;
    v->worst = guard_worst_class(v->classes);
}

enum stmt_class guard_classify_function_call(uint32_t oid)
{
    /* pg_proc OIDs of PostgreSQL's catalog (fixed since 9.x/11 for the 64-bit ones): the
     * functions libpq's lo_* API calls through fastpath. lo_import (764, 767) and lo_export
     * (765) are not among them: they read and write server files. */
    static const uint32_t large_object_fns[] = {
        715,  /* lo_create */   952, /* lo_open */   953, /* lo_close */   954, /* loread */
        955,  /* lowrite */     956, /* lo_lseek */  957, /* lo_creat */   958, /* lo_tell */
        964,  /* lo_unlink */   1004, /* lo_truncate */ 3170, /* lo_lseek64 */
        3171, /* lo_tell64 */   3172, /* lo_truncate64 */
    };
    for (size_t i = 0; i < sizeof large_object_fns / sizeof large_object_fns[0]; i++)
        if (large_object_fns[i] == oid)
            return CLASS_FUNCTION;
    return CLASS_PRIVILEGED;
}

/* ---- privileged functions ----------------------------------------------------------- */

const char *const guard_default_privileged_functions[] = {
    /* reach other servers or run SQL text the proxy never sees */
    "dblink", "dblink_exec", "dblink_connect", "dblink_connect_u", "dblink_send_query",
    "dblink_open", "dblink_fetch", "dblink_get_result",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
    "ts_stat", "ts_rewrite", "crosstab", "crosstab2", "crosstab3", "crosstab4",
    /* server files */
    "lo_import", "lo_export", "pg_read_file", "pg_read_binary_file", "pg_ls_dir",
    "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir",
    "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "pg_logdir_ls",
    /* other sessions and the server itself */
    "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_backup_start",
    "pg_backup_stop", "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause",
    "pg_wal_replay_resume", "pg_log_backend_memory_contexts",
    "pg_stat_reset", "pg_stat_reset_shared", "pg_stat_reset_single_table_counters",
    "pg_stat_reset_single_function_counters", "pg_stat_reset_slru",
    "pg_stat_reset_replication_slot", "pg_stat_statements_reset",
    /* replication */
    "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
    "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes", "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes", "pg_replication_slot_advance",
    "pg_logical_emit_message", "pg_replication_origin_create", "pg_replication_origin_drop",
    "pg_replication_origin_session_setup", "pg_replication_origin_advance",
    "pg_import_system_collations",
    NULL,
};

#define GUARD_FUNC_NAME_MAX 128

struct priv_func {
    char name[GUARD_FUNC_NAME_MAX];     /* bare function name, lower case */
    char schema[GUARD_FUNC_NAME_MAX];   /* "" when unqualified            */
};

/* ---- the verdict caches ------------------------------------------------------------ */

/* Two levels with one implementation: the exact level is keyed by the statement text, the
 * masked level by the statement's token stream with literal values masked (see "the masked
 * key" below). A key is a byte string; both levels are bounded hash tables with CLOCK
 * eviction. */

#define CACHE_MAX_CHAIN 8       /* a longer chain is not extended: bounded lookups */
#define CACHE_NIL UINT32_MAX
#define GUARD_MASKED_MIN_TEXT 8 /* shorter texts (BEGIN, COMMIT, END, ...) rarely hold a
                                   literal and repeat verbatim: no scan for them */

struct cache_entry {
    char *key;                  /* NULL: slot free */
    size_t len;
    uint64_t hash;
    uint32_t next;              /* next entry in the bucket's chain */
    bool referenced;            /* CLOCK bit */
    struct guard_verdict verdict;
};

struct cache {
    struct cache_entry *entries;
    size_t n_entries;           /* 0: this level is off */
    uint32_t *buckets;
    size_t bucket_mask;
    size_t hand;
    uint64_t seed;
    uint64_t *evictions;        /* the stats counter this level adds to */
};

struct guard {
    uint32_t max_len;
    uint32_t cache_max_text;
    struct priv_func *funcs;
    size_t n_funcs;
    struct cache exact;         /* key: the text                          */
    struct cache masked;        /* key: masked token stream (masked_key) */
    struct cache digits;        /* key: text with short digit runs masked (digit_key) */
    char *key_buf;              /* scratch for the masked key: cache_max_text bytes */
    char *digit_buf;            /* scratch for the digit key: cache_max_text bytes */
    char *text_buf;             /* scratch NUL-terminated copy: cache_max_text + 1 bytes */
    struct guard_stats stats;
};

static uint64_t cache_hash(uint64_t seed, const char *p, size_t len)
{
    const uint64_t mul = 0x9e3779b97f4a7c15ull;
    uint64_t h = seed ^ (len * mul);
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * mul;
        h ^= h >> 29;
        p += 8;
        len -= 8;
    }
    uint64_t tail = 0;
    memcpy(&tail, p, len);
    h = (h ^ tail) * mul;
    h ^= h >> 32;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
    return h;
}

static int cache_init(struct cache *c, size_t n_entries, uint64_t *evictions)
{
    memset(c, 0, sizeof *c);
    c->evictions = evictions;
    if (n_entries == 0)
        return 0;
    if (n_entries >= CACHE_NIL / 2)
        return -1;
    size_t nb = 16;
    while (nb < n_entries * 2)
        nb *= 2;
    c->entries = calloc(n_entries, sizeof *c->entries);
    c->buckets = malloc(nb * sizeof *c->buckets);
    if (!c->entries || !c->buckets)
        return -1;
    c->n_entries = n_entries;
    for (size_t i = 0; i < nb; i++)
        c->buckets[i] = CACHE_NIL;
    for (size_t i = 0; i < n_entries; i++)
        c->entries[i].next = CACHE_NIL;
    c->bucket_mask = nb - 1;
    /* A secret seed, so nobody can aim keys at one bucket; chains are capped anyway. */
    if (getrandom(&c->seed, sizeof c->seed, GRND_NONBLOCK) != (ssize_t)sizeof c->seed)
        c->seed = (uint64_t)(uintptr_t)c ^ (uint64_t)time(NULL) * 0x9e3779b97f4a7c15ull;
    return 0;
}

static void cache_destroy(struct cache *c)
{
    if (c->entries)
        for (size_t i = 0; i < c->n_entries; i++)
            free(c->entries[i].key);
    free(c->entries);
    free(c->buckets);
    memset(c, 0, sizeof *c);
}

static struct cache_entry *cache_find(struct cache *c, const char *key, size_t len,
                                      uint64_t hash)
{
    for (uint32_t i = c->buckets[hash & c->bucket_mask]; i != CACHE_NIL; i = c->entries[i].next) {
        struct cache_entry *e = &c->entries[i];
        if (e->hash == hash && e->len == len && memcmp(e->key, key, len) == 0)
            return e;
    }
    return NULL;
}

static void cache_unlink(struct cache *c, uint32_t idx)
{
    struct cache_entry *e = &c->entries[idx];
    uint32_t *link = &c->buckets[e->hash & c->bucket_mask];
    while (*link != CACHE_NIL) {
        if (*link == idx) {
            *link = e->next;
            break;
        }
        link = &c->entries[*link].next;
    }
    free(e->key);
    e->key = NULL;
    e->next = CACHE_NIL;
}

/* A free slot, evicting with CLOCK when all are taken. */
static uint32_t cache_victim(struct cache *c)
{
    for (;;) {
        uint32_t idx = (uint32_t)c->hand;
        struct cache_entry *e = &c->entries[idx];
        c->hand = (c->hand + 1) % c->n_entries;
        if (!e->key)
            return idx;
        if (e->referenced) {
            e->referenced = false;
            continue;
        }
        cache_unlink(c, idx);
        (*c->evictions)++;
        return idx;
    }
}

static void cache_insert(struct cache *c, const char *key, size_t len, uint64_t hash,
                         const struct guard_verdict *v)
{
    size_t chain = 0;
    for (uint32_t i = c->buckets[hash & c->bucket_mask]; i != CACHE_NIL; i = c->entries[i].next)
        chain++;
    if (chain >= CACHE_MAX_CHAIN)
        return;
    char *copy = malloc(len ? len : 1);
    if (!copy)
        return;                 /* not caching is always correct */
    memcpy(copy, key, len);
    uint32_t idx = cache_victim(c);
    struct cache_entry *e = &c->entries[idx];
    e->key = copy;
    e->len = len;
    e->hash = hash;
    e->referenced = false;
    e->verdict = *v;
    uint32_t *head = &c->buckets[hash & c->bucket_mask];
    e->next = *head;
    *head = idx;
}

/* ---- construction ------------------------------------------------------------------ */

void guard_options_default(struct guard_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->max_statement_length = GUARD_DEFAULT_MAX_STATEMENT_LENGTH;
    opt->cache_entries = GUARD_DEFAULT_CACHE_ENTRIES;
    opt->cache_max_text = GUARD_DEFAULT_CACHE_MAX_TEXT;
}

static int priv_func_set(struct priv_func *f, const char *spec)
{
    const char *dot = strrchr(spec, '.');
    const char *name = dot ? dot + 1 : spec;
    size_t schema_len = dot ? (size_t)(dot - spec) : 0;
    if (!*name || strlen(name) >= sizeof f->name || schema_len >= sizeof f->schema ||
        (dot && schema_len == 0))
        return -1;
    for (size_t i = 0; name[i]; i++)
        f->name[i] = (char)tolower((unsigned char)name[i]), f->name[i + 1] = '\0';
    for (size_t i = 0; i < schema_len; i++)
        f->schema[i] = (char)tolower((unsigned char)spec[i]);
    f->schema[schema_len] = '\0';
    return 0;
}

struct guard *guard_new(const struct guard_options *opt)
{
    struct guard_options defaults;
    if (!opt) {
        guard_options_default(&defaults);
        opt = &defaults;
    }
    struct guard *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->max_len = opt->max_statement_length ? opt->max_statement_length
                                           : GUARD_DEFAULT_MAX_STATEMENT_LENGTH;
    g->cache_max_text = opt->cache_max_text ? opt->cache_max_text : GUARD_DEFAULT_CACHE_MAX_TEXT;

    /* The configured list, where the entry "default" stands for the built-in one (so a site
     * adds its own functions without dropping ours); no list: the built-in one. */
    static const char *const just_default[] = { "default" };
    const char *const *names = opt->privileged_functions ? opt->privileged_functions : just_default;
    size_t n = opt->privileged_functions ? opt->n_privileged_functions : 1;
    size_t n_builtin = 0, total = 0;
    while (guard_default_privileged_functions[n_builtin])
        n_builtin++;
    for (size_t i = 0; i < n; i++)
        total += names[i] && strcasecmp(names[i], "default") == 0 ? n_builtin : 1;
    g->funcs = calloc(total ? total : 1, sizeof *g->funcs);
    if (!g->funcs)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!names[i])
            goto fail;
        bool builtin = strcasecmp(names[i], "default") == 0;
        for (size_t k = 0; k < (builtin ? n_builtin : 1); k++)
            if (priv_func_set(&g->funcs[g->n_funcs++],
                              builtin ? guard_default_privileged_functions[k] : names[i]) < 0)
                goto fail;
    }

    if (cache_init(&g->exact, opt->cache_entries, &g->stats.evictions) < 0 ||
        cache_init(&g->masked, opt->masked_cache_off ? 0 : opt->cache_entries,
                   &g->stats.masked_evictions) < 0 ||
        cache_init(&g->digits, opt->masked_cache_off ? 0 : opt->cache_entries,
                   &g->stats.digit_evictions) < 0)
        goto fail;
    if (g->masked.n_entries > 0 && !(g->key_buf = malloc(g->cache_max_text)))
        goto fail;
    if (g->digits.n_entries > 0 && !(g->digit_buf = malloc(g->cache_max_text)))
        goto fail;
    if (!(g->text_buf = malloc((size_t)g->cache_max_text + 1)))
        goto fail;
    return g;
fail:
    guard_free(g);
    return NULL;
}

void guard_free(struct guard *g)
{
    if (!g)
        return;
    cache_destroy(&g->exact);
    cache_destroy(&g->masked);
    cache_destroy(&g->digits);
    free(g->key_buf);
    free(g->digit_buf);
    free(g->text_buf);
    free(g->funcs);
    free(g);
}

void guard_get_stats(const struct guard *g, struct guard_stats *out)
{
    *out = g->stats;
}

/* ---- the walk ---------------------------------------------------------------------- */

#define WALK_MAX_DEPTH 4000     /* jansson stops at 2048 anyway; this guards the recursion */

struct walk {
    const struct guard *g;
    class_set classes;          /* everything but the EXECUTEs themselves */
    bool has_execute;
    bool lexing_change;
    bool read_literal;          /* the verdict depends on a literal's value: the masked cache
                                   must not share it (see guard_classify)                  */
    bool failed;                /* → CLASS_UNKNOWN with reason */
    int depth;
    int n_prepare, n_execute, n_deallocate;
    char prepare_name[64];
    class_set prepare_classes;
    char execute_name[64];
    char deallocate_name[64];
    char reason[160];
};

static void walk_fail(struct walk *w, const char *reason)
{
    if (!w->failed)
        pgsov_strlcpy(w->reason, reason, sizeof w->reason);
    w->failed = true;
}

static void walk_value(struct walk *w, json_t *v);

static void walk_add(struct walk *w, enum stmt_class c)
{
    w->classes |= CLASS_BIT(c);
}

/* A string member of obj, or NULL. */
static const char *member_str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool member_true(json_t *obj, const char *key)
{
    return json_is_true(json_object_get(obj, key));
}

/* Copies a statement name into a 64-byte field; a name that does not fit (the parser truncates
 * identifiers to 63 bytes, so it cannot happen) fails the walk. */
static void walk_name(struct walk *w, char dst[64], const char *name, const char *what)
{
    if (pgsov_strlcpy(dst, name ? name : "", 64) >= 64)
        walk_fail(w, what);
}

/* The String of an A_Const node ({"A_Const":{"sval":{"sval":"x"}}}), or NULL. */
static const char *const_string(json_t *node)
{
    json_t *c = json_object_get(node, "A_Const");
    return c ? member_str(json_object_get(c, "sval"), "sval") : NULL;
}

static bool lexing_name(const char *name)
{
    return name && (strcasecmp(name, "standard_conforming_strings") == 0 ||
                    strcasecmp(name, "client_encoding") == 0 || strcasecmp(name, "names") == 0);
}

/* Is node (one value of SET, or set_config's second argument) a value that keeps the lexing
 * the guard assumes: standard_conforming_strings on, client encoding UTF8? */
static bool lexing_value_safe(const char *name, json_t *node)
{
    json_t *c = json_object_get(node, "A_Const");
    if (!c)
        return false;
    const char *s = member_str(json_object_get(c, "sval"), "sval");
    if (strcasecmp(name, "standard_conforming_strings") == 0) {
        json_t *ival = json_object_get(c, "ival");
        if (ival)
            return json_integer_value(json_object_get(ival, "ival")) == 1;
        json_t *bval = json_object_get(c, "boolval");
        if (bval)
            return member_true(bval, "boolval");
        return s && (strcasecmp(s, "on") == 0 || strcasecmp(s, "true") == 0 ||
                     strcasecmp(s, "yes") == 0 || strcmp(s, "1") == 0);
    }
    if (!s)
        return false;
    /* PostgreSQL compares encoding names ignoring case and non-alphanumerics. */
    char clean[16];
    size_t n = 0;
    for (; *s; s++) {
        if (!isalnum((unsigned char)*s))
            continue;
        if (n + 1 >= sizeof clean)
            return false;
        clean[n++] = (char)tolower((unsigned char)*s);
    }
    clean[n] = '\0';
    return strcmp(clean, "utf8") == 0 || strcmp(clean, "unicode") == 0;
}

/* set: the body of a VariableSetStmt. RESET ALL returns every setting to its value at session
 * start, which the session checked, so it is not a change; RESET or SET ... DEFAULT of one of
 * the names is, because the guard cannot know that value. */
static void check_set_lexing(struct walk *w, json_t *set)
{
    const char *name = member_str(set, "name");
    const char *kind = member_str(set, "kind");
    if (!lexing_name(name))
        return;
    w->read_literal = true;
    json_t *args = json_object_get(set, "args");
    if (!kind || strcmp(kind, "VAR_SET_VALUE") != 0 || json_array_size(args) != 1 ||
        !lexing_value_safe(strcasecmp(name, "names") == 0 ? "client_encoding" : name,
                           json_array_get(args, 0)))
        w->lexing_change = true;
}

/* role and session_authorization change who the session is: SET, or a default for later
 * sessions (ALTER ROLE/DATABASE ... SET), is SET ROLE. */
static bool sets_identity(struct walk *w, json_t *set)
{
    const char *name = member_str(set, "name");
    if (!name || (strcasecmp(name, "role") != 0 && strcasecmp(name, "session_authorization") != 0))
        return false;
    walk_add(w, CLASS_PRIVILEGED);
    return true;
}

static void handle_set(struct walk *w, json_t *set)
{
    const char *name = member_str(set, "name");
    if (sets_identity(w, set))
        ;
    else if (name && strcmp(name, "TRANSACTION") == 0)
        walk_add(w, CLASS_TRANSACTION);     /* SET TRANSACTION ISOLATION LEVEL / SNAPSHOT */
    else
        walk_add(w, CLASS_SESSION);
    check_set_lexing(w, set);
}

static bool priv_func_match(const struct guard *g, const char *schema, const char *name)
{
    for (size_t i = 0; i < g->n_funcs; i++) {
        const struct priv_func *f = &g->funcs[i];
        if (strcasecmp(f->name, name) != 0)
            continue;
        /* "s.f" in the list: a call of f without schema may reach s.f through search_path. */
        if (!f->schema[0] || !schema || strcasecmp(f->schema, schema) == 0)
            return true;
    }
    return false;
}

/* set_config(name, value, is_local): role and session_authorization are privileged; the two
 * lexing settings must keep their values; a name the guard cannot read could be either. */
static void handle_set_config(struct walk *w, json_t *args)
{
    w->read_literal = true;     /* its name and value are literals */
    const char *name = const_string(json_array_get(args, 0));
    if (!name) {
        walk_add(w, CLASS_PRIVILEGED);
        w->lexing_change = true;
        return;
    }
    if (strcasecmp(name, "role") == 0 || strcasecmp(name, "session_authorization") == 0)
        walk_add(w, CLASS_PRIVILEGED);
    if (lexing_name(name) && (strcasecmp(name, "names") == 0 ||
                              !lexing_value_safe(name, json_array_get(args, 1))))
        w->lexing_change = true;
}

static void handle_func_call(struct walk *w, json_t *call)
{
    json_t *names = json_object_get(call, "funcname");
    size_t n = json_array_size(names);
    if (n == 0)
        return;
    const char *name = member_str(json_object_get(json_array_get(names, n - 1), "String"), "sval");
    const char *schema = n >= 2
        ? member_str(json_object_get(json_array_get(names, n - 2), "String"), "sval") : NULL;
    if (!name)
        return;
    if (priv_func_match(w->g, schema, name))
        walk_add(w, CLASS_PRIVILEGED);
    if (strcasecmp(name, "set_config") == 0)
        handle_set_config(w, json_object_get(call, "args"));
}

/* EXPLAIN executes its statement only with ANALYZE (not "ANALYZE false/off/0/no"). Reading
 * the option's value (ANALYZE 0, ANALYZE 'off') reads a literal. */
static bool explain_option_true(struct walk *w, json_t *arg)
{
    if (!arg)
        return true;
    w->read_literal = true;
    const char *s = member_str(json_object_get(arg, "String"), "sval");
    if (!s)
        s = const_string(arg);
    if (s && (strcasecmp(s, "false") == 0 || strcasecmp(s, "off") == 0 ||
              strcasecmp(s, "no") == 0 || strcmp(s, "0") == 0))
        return false;
    json_t *iv = json_object_get(arg, "Integer");
    if (iv && json_integer_value(json_object_get(iv, "ival")) == 0)
        return false;
    return true;
}

/* ExplainQuery reads the options in order and does not refuse a repeated one: the last
 * ANALYZE decides (EXPLAIN (ANALYZE false, ANALYZE true) executes). */
static bool explain_analyzes(struct walk *w, json_t *options)
{
    size_t i;
    json_t *opt;
    bool analyze = false;
    json_array_foreach(options, i, opt) {
        json_t *def = json_object_get(opt, "DefElem");
        const char *defname = member_str(def, "defname");
        if (defname && strcmp(defname, "analyze") == 0)
            analyze = explain_option_true(w, json_object_get(def, "arg"));
    }
    return analyze;
}

static void handle_explain(struct walk *w, json_t *body)
{
    if (explain_analyzes(w, json_object_get(body, "options"))) {
        walk_value(w, json_object_get(body, "query"));
        return;
    }
    /* Plain EXPLAIN only plans: read. The planner may still evaluate functions (constant
     * folding), so privileged calls inside keep their class. */
    struct walk inner = *w;
    inner.classes = 0;
    walk_value(&inner, json_object_get(body, "query"));
    w->failed = inner.failed;
    w->read_literal = inner.read_literal;
    memcpy(w->reason, inner.reason, sizeof w->reason);
    w->depth = inner.depth;
    walk_add(w, CLASS_READ);
    w->classes |= inner.classes & CLASS_BIT(CLASS_PRIVILEGED);
}

static void handle_copy(struct walk *w, json_t *body)
{
    if (member_str(body, "filename") || member_true(body, "is_program"))
        walk_add(w, CLASS_PRIVILEGED);      /* a server file or program */
    else if (member_true(body, "is_from"))
        walk_add(w, CLASS_WRITE);
    else
        walk_add(w, CLASS_READ);
    walk_value(w, body);                    /* COPY (query) TO, WHERE clause */
}

static void handle_prepare(struct walk *w, json_t *body)
{
    if (++w->n_prepare > 1) {
        walk_fail(w, "more than one PREPARE in one query string");
        return;
    }
    walk_name(w, w->prepare_name, member_str(body, "name"), "PREPARE name too long");
    class_set before = w->classes;
    w->classes = 0;
    walk_value(w, json_object_get(body, "query"));
    w->prepare_classes = w->classes;
    w->classes |= before;
}

static void handle_execute(struct walk *w, json_t *body)
{
    const char *name = member_str(body, "name");
    if (w->n_execute++ > 0 && strcmp(w->execute_name, name ? name : "") != 0) {
        walk_fail(w, "EXECUTE of more than one prepared statement in one query string");
        return;
    }
    walk_name(w, w->execute_name, name, "EXECUTE name too long");
    w->has_execute = true;
    walk_value(w, json_object_get(body, "params"));
}

static void handle_deallocate(struct walk *w, json_t *body)
{
    walk_add(w, CLASS_SESSION);
    if (w->n_deallocate++ > 0) {
        walk_fail(w, "more than one DEALLOCATE in one query string");
        return;
    }
    walk_name(w, w->deallocate_name, member_str(body, "name"), "DEALLOCATE name too long");
}

/* INSERT ... VALUES holds its rows in a SelectStmt that reads no table: walk the rows without
 * making the statement a read. */
static void handle_insert(struct walk *w, json_t *body)
{
    walk_add(w, CLASS_WRITE);
    const char *key;
    json_t *child;
    json_object_foreach(body, key, child) {
        json_t *select = json_object_get(child, "SelectStmt");
        if (strcmp(key, "selectStmt") == 0 && select && json_object_size(select) > 0 &&
            json_object_get(select, "valuesLists") && !json_object_get(select, "fromClause") &&
            !json_object_get(select, "withClause"))
            walk_value(w, select);
        else
            walk_value(w, child);
    }
}

/* A one-argument function can be called as a field: (c).pg_read_file, t.c.lo_import. The
 * parser tries a column first and then the function, so a privileged name in field position
 * is a privileged call. */
static void check_field_call(struct walk *w, json_t *fields, bool last_only)
{
    size_t n = json_array_size(fields);
    for (size_t i = last_only && n ? n - 1 : 0; i < n; i++) {
        const char *name = member_str(json_object_get(json_array_get(fields, i), "String"), "sval");
        if (name && priv_func_match(w->g, NULL, name))
            walk_add(w, CLASS_PRIVILEGED);
    }
}

static void walk_node(struct walk *w, const char *type, json_t *body)
{
    if (strcmp(type, "FuncCall") == 0) {
        handle_func_call(w, body);
        walk_value(w, body);
        return;
    }
    if (strcmp(type, "A_Indirection") == 0)
        check_field_call(w, json_object_get(body, "indirection"), false);
    else if (strcmp(type, "ColumnRef") == 0 && json_array_size(json_object_get(body, "fields")) >= 2)
        check_field_call(w, json_object_get(body, "fields"), true);
    else if (strcmp(type, "CallStmt") == 0)
        handle_func_call(w, json_object_get(body, "funccall"));   /* held without its type name */
    else if (strcmp(type, "DropStmt") == 0 &&
             strcmp(member_str(body, "removeType") ? member_str(body, "removeType") : "",
                    "OBJECT_EVENT_TRIGGER") == 0)
        walk_add(w, CLASS_PRIVILEGED);      /* as ALTER EVENT TRIGGER: it removes a server guard */
    const struct node_rule *r = type[0] >= 'A' && type[0] <= 'Z' ? node_rule_find(type) : NULL;
    if (!r) {
        walk_value(w, body);                /* an expression or clause: look inside */
        return;
    }
    if (r->kind == K_CLASS)
        walk_add(w, r->cls);
    switch (r->special) {
    case SP_NONE:
        walk_value(w, body);
        return;
    case SP_SELECT:
        walk_add(w, CLASS_READ);
        walk_value(w, body);                /* its INTO, in any branch: walk_value */
        return;
    case SP_INSERT:
        handle_insert(w, body);
        return;
    case SP_RENAME: {
        const char *rename = member_str(body, "renameType");
        walk_add(w, rename && strcmp(rename, "OBJECT_ROLE") == 0 ? CLASS_ROLE : CLASS_DDL);
        walk_value(w, body);
        return;
    }
    case SP_UPDATE: {
        walk_add(w, CLASS_WRITE);
        const char *rel = member_str(json_object_get(body, "relation"), "relname");
        if (rel && strcmp(rel, "pg_settings") == 0) {
            walk_add(w, CLASS_PRIVILEGED);  /* its rule calls set_config() on any setting */
            w->lexing_change = true;
        }
        walk_value(w, body);
        return;
    }
    case SP_EXPLAIN:
        handle_explain(w, body);
        return;
    case SP_COPY:
        handle_copy(w, body);
        return;
    case SP_SET:
        handle_set(w, body);
        return;
    case SP_ALTER_ROLE_SET:
        walk_add(w, CLASS_ROLE);
        sets_identity(w, json_object_get(body, "setstmt"));
        check_set_lexing(w, json_object_get(body, "setstmt"));
        return;
    case SP_ALTER_DATABASE_SET:
        walk_add(w, CLASS_DDL);
        sets_identity(w, json_object_get(body, "setstmt"));
        check_set_lexing(w, json_object_get(body, "setstmt"));
        return;
    case SP_ALTER_SYSTEM:
        walk_add(w, CLASS_PRIVILEGED);
        check_set_lexing(w, json_object_get(body, "setstmt"));
        return;
    case SP_PREPARE:
        handle_prepare(w, body);
        return;
    case SP_EXECUTE:
        handle_execute(w, body);
        return;
    case SP_DEALLOCATE:
        handle_deallocate(w, body);
        return;
    }
    walk_fail(w, "internal: unhandled node rule");
}

static void walk_value(struct walk *w, json_t *v)
{
    if (!v || w->failed)
        return;
    if (++w->depth > WALK_MAX_DEPTH) {
        walk_fail(w, "statement nested too deeply");
        w->depth--;
        return;
    }
    if (json_is_object(v)) {
        const char *key;
        json_t *child;
        json_object_foreach(v, key, child) {
            /* SELECT ... INTO creates a table; in a UNION/INTERSECT/EXCEPT it sits in the
             * leftmost branch, a SelectStmt the tree holds without its type name */
            if (strcmp(key, "intoClause") == 0 && json_is_object(child))
                walk_add(w, CLASS_DDL);
            if (json_is_object(child) && key[0] >= 'A' && key[0] <= 'Z')
                walk_node(w, key, child);
            else if (json_is_object(child) || json_is_array(child))
                walk_value(w, child);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *child;
        json_array_foreach(v, i, child) walk_value(w, child);
    }
    w->depth--;
}

/* ---- the masked key --------------------------------------------------------------- */

/* Two texts whose PostgreSQL token streams are equal except for the values of literal tokens
 * parse to trees of one shape: the grammar decides on token types, keywords and identifiers,
 * never on a literal's value (the exceptions are below). So a verdict whose walk never read a
 * literal's value (struct walk.read_literal) holds for every text with the same masked key.
 *
 * The key is the token stream of pg_query_scan() — PostgreSQL's own lexer, with
 * standard_conforming_strings on as the parser assumes — with comments dropped, the literal
 * tokens below reduced to their token number, and every other token kept as its number and
 * its exact text. Token texts are taken from one token's start to the next token's start with
 * trailing white space removed (no token ends in white space): pg_query_scan's end offsets
 * are wrong for U&"..." identifiers and U&'...' strings, and a key must not depend on them.
 *
 * What is kept verbatim although it is a literal, and why:
 * - USCONST (U&'...'): the parser, not the lexer, decodes its escapes and rejects bad ones;
 * - PARAM ($1): nothing gains from masking it;
 * - the integer of FLOAT ( n ) and of ALTER [COLUMN] n: PostgreSQL 15's grammar rejects some
 *   values there ("precision for type float must be less than 54 bits", "column number must
 *   be in range"), so their value decides whether the text parses at all. These are the
 *   grammar actions of gram.y that test a literal's value; every other literal only reaches
 *   the tree as a value.
 * A text with UESCAPE has no key: the escape character is a string literal that changes the
 * value of the U&"..." identifier before it (U&"pg_read_fil!0065" UESCAPE '!').
 * A text that is not valid UTF-8 has no key either: libpg_query copies a literal's bytes into
 * its JSON tree, which jansson then refuses (CLASS_UNKNOWN), so there a literal's bytes decide
 * the verdict. */

/* Token numbers of enum Token in libpg_query's pg_query.proto (15-4.0.0). The header that
 * names them, pg_query.pb-c.h, needs protobuf-c's headers, which pgsov does not depend on;
 * tests/unit/test_guard.c checks these numbers against the installed .proto file. */
enum {
    TOK_FCONST = 260, TOK_SCONST = 261, TOK_USCONST = 262, TOK_BCONST = 263,
    TOK_XCONST = 264, TOK_ICONST = 266, TOK_PARAM = 267, TOK_SQL_COMMENT = 275, TOK_C_COMMENT = 276,
    TOK_UESCAPE = 685, TOK_OPEN_PAREN = 40, TOK_ALTER = 287, TOK_COLUMN = 336,
    TOK_FLOAT_P = 422,
};

/* tok is masked unless the grammar tests its value (see above); prev1 and prev2 are the two
 * tokens before it, comments left out. */
static bool token_masked(uint32_t tok, uint32_t prev1, uint32_t prev2)
{
    if (tok == TOK_ICONST)
        return !(prev1 == TOK_OPEN_PAREN && prev2 == TOK_FLOAT_P) && prev1 != TOK_ALTER &&
               prev1 != TOK_COLUMN;
    return tok == TOK_SCONST || tok == TOK_FCONST || tok == TOK_BCONST || tok == TOK_XCONST;
}

/* A reader of the protobuf wire format, for the two messages of pg_query_scan's result:
 * ScanResult { int32 version = 1; repeated ScanToken tokens = 2; } and
 * ScanToken { int32 start = 1; int32 end = 2; Token token = 4; KeywordKind keyword_kind = 5; }.
 * Every read is bounds-checked; anything unexpected means "no key". */
struct pb_reader {
    const uint8_t *p, *end;
};

static bool pb_varint(struct pb_reader *b, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return false;
        uint8_t byte = *b->p++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool pb_skip(struct pb_reader *b, unsigned wire_type)
{
    uint64_t n;
    switch (wire_type) {
    case 0:
        return pb_varint(b, &n);
    case 1:
        n = 8;
        break;
    case 2:
        if (!pb_varint(b, &n))
            return false;
        break;
    case 5:
        n = 4;
        break;
    default:
        return false;
    }
    if (n > (uint64_t)(b->end - b->p))
        return false;
    b->p += n;
    return true;
}

struct scan_token {
    uint32_t start, token;
};

static bool pb_scan_token(struct pb_reader b, struct scan_token *t)
{
    t->start = 0;               /* proto3: a field at its default value is absent */
    t->token = 0;
    while (b.p < b.end) {
        uint64_t tag, v;
        if (!pb_varint(&b, &tag))
            return false;
        unsigned field = (unsigned)(tag >> 3), wire_type = (unsigned)(tag & 7);
        if ((field == 1 || field == 4) && wire_type == 0) {
            if (!pb_varint(&b, &v) || v > UINT32_MAX)
                return false;
            if (field == 1)
                t->start = (uint32_t)v;
            else
                t->token = (uint32_t)v;
        } else if (!pb_skip(&b, wire_type)) {
            return false;
        }
    }
    return true;
}

struct key_builder {
    char *buf;
    size_t len, cap;
    bool overflow;
};

static void key_put(struct key_builder *k, const void *p, size_t n)
{
    if (k->overflow || n > k->cap - k->len) {
        k->overflow = true;
        return;
    }
    memcpy(k->buf + k->len, p, n);
    k->len += n;
}

/* One token: its number in two bytes; for a kept token, then its text's length (varint) and
 * the text. Which numbers carry text is fixed, so the encoding is injective. */
static void key_token(struct key_builder *k, uint32_t token, const char *text, size_t n)
{
    uint8_t head[2 + 10];
    size_t h = 0;
    head[h++] = (uint8_t)(token & 0xff);
    head[h++] = (uint8_t)(token >> 8);
    if (text) {
        size_t v = n;
        do {
            head[h++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
            v >>= 7;
        } while (v);
    }
    key_put(k, head, h);
    if (text)
        key_put(k, text, n);
}

/* The text of a kept token: from its start to the next token's start (or the end of the
 * text), less trailing white space. */
static bool key_kept_token(struct key_builder *k, const char *sql, uint32_t token, size_t from,
                           size_t to)
{
    while (to > from && (sql[to - 1] == ' ' || sql[to - 1] == '\t' || sql[to - 1] == '\n' ||
                         sql[to - 1] == '\r' || sql[to - 1] == '\f' || sql[to - 1] == '\v'))
        to--;
    if (to == from)
        return false;
    key_token(k, token, sql + from, to - from);
    return true;
}

/* Builds the masked key of sql (NUL-terminated, len bytes) into g->key_buf. Returns its length,
 * or -1 when the text has no key (not UTF-8, scan error, UESCAPE, key longer than
 * cache_max_text, an unexpected scan result). *maskable: the key masked a literal or dropped a comment, so
 * it can match texts the exact level cannot. */
/* Would jansson accept these bytes inside a JSON string? Only texts with a byte >= 0x80 ask it. */
static bool text_utf8_valid(const char *sql, size_t len)
{
    size_t i = 0;
    while (i < len && !((unsigned char)sql[i] & 0x80))
        i++;
    if (i == len)
        return true;
    json_t *s = json_stringn(sql, len);
    json_decref(s);
    return s != NULL;
}

/* Does the span [from, to) of sql hold an ASCII digit? */
static bool span_has_digit(const char *sql, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        if (sql[i] >= '0' && sql[i] <= '9')
            return true;
    return false;
}

/* May digits inside this token change to other digits without changing any token's kind or
 * extent? Numeric literals the key masks (their neighbours decide ICONST or FCONST, and the
 * digit key keeps runs short), bit and hex strings, strings in single quotes (only a quote
 * or a backslash can end or escape one) and comments. Not a dollar-quoted string: its tag
 * may hold digits and decides where it ends ($a1$ ... $a12$). Not an E'...' string with a
 * backslash either: \ooo, \xhh, \uXXXX and \UXXXXXXXX turn digits into bytes the lexer then
 * checks (E'\101' lexes, E'\0' and E'\351' do not; \u needs exactly four). The token is the
 * span [start, end) of sql. */
static bool digits_may_vary(const char *sql, size_t start, size_t end, uint32_t tok, bool masked)
{
    if (tok == TOK_SQL_COMMENT || tok == TOK_C_COMMENT)
        return true;
    if (!masked)
        return false;
    if (tok == TOK_ICONST || tok == TOK_FCONST || tok == TOK_BCONST || tok == TOK_XCONST)
        return true;
    if (tok == TOK_SCONST && sql[start] == '\'')
        return true;
    if (tok == TOK_SCONST && (sql[start] == 'E' || sql[start] == 'e') && sql[start + 1] == '\'')
        return memchr(sql + start, '\\', end - start) == NULL;
    return false;
}

static ssize_t masked_key(struct guard *g, const char *sql, size_t len, bool *maskable,
                          bool *digits_safe)
{
    *maskable = false;
    *digits_safe = true;
    bool have_last = false, last_masked = false;
    struct scan_token last = { 0, 0 };
    if (!text_utf8_valid(sql, len))
        return -1;
    PgQueryScanResult r = pg_query_scan(sql);
    if (r.error || (!r.pbuf.data && r.pbuf.len)) {
        pg_query_free_scan_result(r);
        return -1;
    }
    struct key_builder k = { .buf = g->key_buf, .cap = g->cache_max_text };
    struct pb_reader b = { (const uint8_t *)r.pbuf.data, (const uint8_t *)r.pbuf.data + r.pbuf.len };
    bool ok = true, have_pending = false;
    struct scan_token pending = { 0, 0 };
    size_t next_min = 0;            /* token starts must increase */
    uint32_t prev1 = 0, prev2 = 0;  /* the two tokens before, comments left out */
    while (ok && b.p < b.end) {
        uint64_t tag, n;
        ok = pb_varint(&b, &tag);
        if (!ok)
            break;
        if (tag >> 3 != 2 || (tag & 7) != 2) {
            ok = pb_skip(&b, (unsigned)(tag & 7));
            continue;
        }
        ok = pb_varint(&b, &n) && n <= (uint64_t)(b.end - b.p);
        if (!ok)
            break;
        struct pb_reader msg = { b.p, b.p + n };
        b.p += n;
        struct scan_token t;
        ok = pb_scan_token(msg, &t) && t.start >= next_min && t.start < len &&
             t.token <= UINT16_MAX && t.token != TOK_UESCAPE;
        if (!ok)
            break;
        next_min = (size_t)t.start + 1;
        if (have_last && span_has_digit(sql, last.start, t.start) &&
            !digits_may_vary(sql, last.start, t.start, last.token, last_masked))
            *digits_safe = false;
        have_last = true;
        last = t;
        last_masked = token_masked(t.token, prev1, prev2);
        if (have_pending)
            ok = key_kept_token(&k, sql, pending.token, pending.start, t.start);
        have_pending = false;
        if (t.token == TOK_SQL_COMMENT || t.token == TOK_C_COMMENT) {
            *maskable = true;
            continue;
        }
        if (token_masked(t.token, prev1, prev2)) {
            *maskable = true;
            key_token(&k, t.token, NULL, 0);
        } else {
            pending = t;
            have_pending = true;
        }
        prev2 = prev1;
        prev1 = t.token;
    }
    if (have_last && span_has_digit(sql, last.start, len) &&
        !digits_may_vary(sql, last.start, len, last.token, last_masked))
        *digits_safe = false;
    if (ok && have_pending)
        ok = key_kept_token(&k, sql, pending.token, pending.start, len);
    pg_query_free_scan_result(r);
    if (!ok || k.overflow)
        return -1;
    return (ssize_t)k.len;
}

/* May a verdict be shared with every text of the same masked key? Only when the walk never
 * read a literal's value, and never for what the session treats by name or refuses anyway. */
static bool verdict_shareable(const struct guard_verdict *v, bool read_literal)
{
    return !read_literal && !(v->classes & CLASS_BIT(CLASS_UNKNOWN)) && !v->lexing_change &&
           !v->prepare_name[0] && !v->execute_name[0] && !v->deallocate;
}

/* ---- classify ---------------------------------------------------------------------- */

static void verdict_unknown(struct guard_verdict *out, const char *reason)
{
    int n_statements = out->n_statements;
    memset(out, 0, sizeof *out);
    out->n_statements = n_statements;
    out->classes = CLASS_BIT(CLASS_UNKNOWN);
    out->classes_besides_execute = CLASS_BIT(CLASS_UNKNOWN);
    out->worst = CLASS_UNKNOWN;
    pgsov_strlcpy(out->reason, reason, sizeof out->reason);
}

/* *read_literal: the verdict depends on some literal's value (or is CLASS_UNKNOWN). */
static void classify_text(const struct guard *g, const char *sql, struct guard_verdict *out,
                          bool *read_literal)
{
    memset(out, 0, sizeof *out);
    *read_literal = true;
    PgQueryParseResult res = pg_query_parse(sql);
    if (res.error) {
        char reason[160];
        snprintf(reason, sizeof reason, "parse error: %s at offset %d",
                 res.error->message ? res.error->message : "?", res.error->cursorpos);
        pg_query_free_parse_result(res);
        verdict_unknown(out, reason);
        return;
    }
    json_error_t jerr;
    json_t *root = res.parse_tree ? json_loads(res.parse_tree, 0, &jerr) : NULL;
    pg_query_free_parse_result(res);
    if (!root) {
        verdict_unknown(out, "parse tree unreadable (nested too deeply or out of memory)");
        return;
    }
    json_t *stmts = json_object_get(root, "stmts");
    struct walk w = { .g = g };
    size_t i;
    json_t *raw;
    json_array_foreach(stmts, i, raw) walk_value(&w, json_object_get(raw, "stmt"));
    out->n_statements = (int)json_array_size(stmts);
    json_decref(root);
    *read_literal = w.read_literal;
    if (w.failed) {
        verdict_unknown(out, w.reason);
        return;
    }
    out->classes_besides_execute = w.classes;
    out->classes = w.classes | (w.has_execute ? CLASS_BIT(CLASS_UNKNOWN) : 0);
    out->worst = guard_worst_class(out->classes);
    out->lexing_change = w.lexing_change;
    memcpy(out->prepare_name, w.prepare_name, sizeof out->prepare_name);
    out->prepare_classes = w.prepare_classes;
    memcpy(out->execute_name, w.execute_name, sizeof out->execute_name);
    out->deallocate = w.n_deallocate > 0;
    memcpy(out->deallocate_name, w.deallocate_name, sizeof out->deallocate_name);
    if (w.has_execute)
        snprintf(out->reason, sizeof out->reason, "EXECUTE of prepared statement \"%s\"",
                 w.execute_name);
}

/* The digit key: sql with every run of 1 to 9 ASCII digits replaced by one 0x01 byte, so that
 * `... where aid = 17` and `... where aid = 90210` meet before any lexing. -1 when a run is
 * longer (an integer's token kind could then depend on its value: ICONST or FCONST), when
 * the text holds a 0x01 byte itself, or when it has no digit (the exact level covers it).
 * A verdict is stored under this key only when masked_key() found every digit of the text in
 * a place where other digits change no token (digits_may_vary). */
static ssize_t digit_key(const char *sql, size_t len, char *buf, size_t cap)
{
    size_t o = 0;
    bool any = false;
    for (size_t i = 0; i < len;) {
        if (sql[i] == '\x01')
            return -1;
        if (sql[i] >= '0' && sql[i] <= '9') {
            size_t run = 0;
            while (i < len && sql[i] >= '0' && sql[i] <= '9') {
                i++;
                run++;
            }
            if (run > 9 || o == cap)
                return -1;
            buf[o++] = '\x01';
            any = true;
            continue;
        }
        if (o == cap)
            return -1;
        buf[o++] = sql[i++];
    }
    return any ? (ssize_t)o : -1;
}

void guard_classify(struct guard *g, const char *sql, size_t len, struct guard_verdict *out)
{
    memset(out, 0, sizeof *out);
    if (!sql) {
        sql = "";
        len = 0;
    }
    if (len > g->max_len) {
        char reason[160];
        snprintf(reason, sizeof reason, "statement of %zu bytes is longer than "
                 "max_statement_length (%u)", len, g->max_len);
        verdict_unknown(out, reason);
        return;
    }
    if (memchr(sql, '\0', len)) {
        verdict_unknown(out, "NUL byte inside the statement text");
        return;
    }
    /* Level 1: the exact text. */
    bool cacheable = len <= g->cache_max_text;
    uint64_t hash = 0;
    if (cacheable && g->exact.n_entries > 0) {
        hash = cache_hash(g->exact.seed, sql, len);
        struct cache_entry *e = cache_find(&g->exact, sql, len, hash);
        if (e) {
            e->referenced = true;
            g->stats.hits++;
            *out = e->verdict;
            return;
        }
    }
    /* Level 2: short digit runs masked, no lexing at all. */
    ssize_t dkey_len = -1;
    uint64_t dkey_hash = 0;
    if (cacheable && g->digits.n_entries > 0 && len >= GUARD_MASKED_MIN_TEXT) {
        dkey_len = digit_key(sql, len, g->digit_buf, g->cache_max_text);
        if (dkey_len >= 0) {
            dkey_hash = cache_hash(g->digits.seed, g->digit_buf, (size_t)dkey_len);
            struct cache_entry *e = cache_find(&g->digits, g->digit_buf, (size_t)dkey_len, dkey_hash);
            if (e) {
                e->referenced = true;
                g->stats.digit_hits++;
                *out = e->verdict;
                return;
            }
        }
    }
    char *text = cacheable ? g->text_buf : malloc(len + 1);
    if (!text) {
        verdict_unknown(out, "out of memory");
        return;
    }
    memcpy(text, sql, len);
    text[len] = '\0';
    /* Level 3: the token stream with literal values masked. */
    ssize_t key_len = -1;
    uint64_t key_hash = 0;
    bool maskable = false, digits_safe = false;
    if (cacheable && g->masked.n_entries > 0 && len >= GUARD_MASKED_MIN_TEXT) {
        key_len = masked_key(g, text, len, &maskable, &digits_safe);
        if (key_len >= 0 && maskable) {
            key_hash = cache_hash(g->masked.seed, g->key_buf, (size_t)key_len);
            struct cache_entry *e = cache_find(&g->masked, g->key_buf, (size_t)key_len,
                                               key_hash);
            if (e) {
                e->referenced = true;
                g->stats.masked_hits++;
                *out = e->verdict;
                /* masked entries are shareable verdicts: the digit level may hold it too */
                if (dkey_len >= 0 && digits_safe)
                    cache_insert(&g->digits, g->digit_buf, (size_t)dkey_len, dkey_hash, out);
                return;
            }
        }
    }
    /* Level 4: parse and walk. */
    g->stats.misses++;
    bool read_literal;
    classify_text(g, text, out, &read_literal);
    if (text != g->text_buf)
        free(text);
    if (cacheable && g->exact.n_entries > 0)
        cache_insert(&g->exact, sql, len, hash, out);
    if (key_len >= 0 && maskable && verdict_shareable(out, read_literal)) {
        cache_insert(&g->masked, g->key_buf, (size_t)key_len, key_hash, out);
        if (dkey_len >= 0 && digits_safe)
            cache_insert(&g->digits, g->digit_buf, (size_t)dkey_len, dkey_hash, out);
    }
}

/* ---- audit helpers ----------------------------------------------------------------- */

/* Replaces every literal token of sql by $n (numbered after the highest $n already there)
 * and drops comments, using PostgreSQL's own lexer. pg_query_normalize() leaves the literals
 * of most utility statements in place (ALTER TABLE ... DEFAULT 'x', COMMENT ... IS 'x',
 * CREATE TABLE AS SELECT 'x'), and the audit log must never carry a literal value. NULL when
 * the text cannot be lexed (an unterminated quote) or memory runs out. */
static char *redact_literals(const char *sql)
{
    size_t len = strlen(sql);
    PgQueryScanResult r = pg_query_scan(sql);
    if (r.error || (!r.pbuf.data && r.pbuf.len)) {
        pg_query_free_scan_result(r);
        return NULL;
    }
    struct scan_token *toks = NULL;
    size_t n = 0, cap = 0;
    bool ok = true;
    unsigned long max_param = 0;
    struct pb_reader b = { (const uint8_t *)r.pbuf.data, (const uint8_t *)r.pbuf.data + r.pbuf.len };
    while (ok && b.p < b.end) {
        uint64_t tag, m;
        if (!(ok = pb_varint(&b, &tag)))
            break;
        if (tag >> 3 != 2 || (tag & 7) != 2) {
            ok = pb_skip(&b, (unsigned)(tag & 7));
            continue;
        }
        ok = pb_varint(&b, &m) && m <= (uint64_t)(b.end - b.p);
        if (!ok)
            break;
        struct pb_reader msg = { b.p, b.p + m };
        b.p += m;
        struct scan_token t;
        ok = pb_scan_token(msg, &t) && t.start < len && (n == 0 || t.start > toks[n - 1].start);
        if (!ok)
            break;
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            struct scan_token *grown = realloc(toks, cap * sizeof *toks);
            if (!(ok = grown != NULL))
                break;
            toks = grown;
        }
        toks[n++] = t;
        if (t.token == TOK_PARAM && sql[t.start] == '$') {
            unsigned long k = strtoul(sql + t.start + 1, NULL, 10);
            if (k > max_param)
                max_param = k;
        }
    }
    pg_query_free_scan_result(r);
    char *out = ok ? malloc(len + 16 * n + 1) : NULL;   /* "$n" is at most 11 bytes */
    if (!out) {
        free(toks);
        return NULL;
    }
    size_t o = 0, prev_end = 0;
    for (size_t i = 0; i < n; i++) {
        size_t start = toks[i].start, end = i + 1 < n ? toks[i + 1].start : len;
        while (end > start && (sql[end - 1] == ' ' || sql[end - 1] == '\t' || sql[end - 1] == '\n' ||
                               sql[end - 1] == '\r' || sql[end - 1] == '\f'))
            end--;
        memcpy(out + o, sql + prev_end, start - prev_end);   /* white space between tokens */
        o += start - prev_end;
        uint32_t tok = toks[i].token;
        if (tok == TOK_SCONST || tok == TOK_USCONST || tok == TOK_FCONST || tok == TOK_BCONST ||
            tok == TOK_XCONST || tok == TOK_ICONST)
            o += (size_t)sprintf(out + o, "$%lu", ++max_param);
        else if (tok != TOK_SQL_COMMENT && tok != TOK_C_COMMENT) {
            memcpy(out + o, sql + start, end - start);
            o += end - start;
        }
        prev_end = end;
    }
    memcpy(out + o, sql + prev_end, len - prev_end);
    o += len - prev_end;
    out[o] = '\0';
    free(toks);
    return out;
}

char *guard_normalize(const char *sql)
{
    if (!sql)
        return NULL;
    PgQueryNormalizeResult r = pg_query_normalize(sql);
    char *out = redact_literals(!r.error && r.normalized_query ? r.normalized_query : sql);
    pg_query_free_normalize_result(r);
    return out;
}

char *guard_fingerprint(const char *sql)
{
    if (!sql)
        return NULL;
    PgQueryFingerprintResult r = pg_query_fingerprint(sql);
    char *out = NULL;
    if (!r.error && r.fingerprint_str)
        out = strdup(r.fingerprint_str);
    pg_query_free_fingerprint_result(r);
    return out;
}

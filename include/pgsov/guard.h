/* guard.h — what SQL text will make the server do: statement classes, by parsing it with
 * libpg_query (PostgreSQL 15 grammar) and walking the whole tree, with a verdict cache.
 * Pure: no I/O, no logging, no globals. Policy (which classes a rule grants) lives in rules.h;
 * remembering what a SQL-level PREPARE recorded lives in the session.
 *
 * Threads: a struct guard is NOT thread-safe; keep one per event-loop thread. libpg_query keeps
 * per-thread state (a memory context freed at thread exit, one pthread key per thread), and a
 * deeply nested statement recurses deeply in the parser: call guard_* only from long-lived
 * threads with a stack of at least 8 MB. Statements are bounded by max_statement_length, and
 * trees nested deeper than the JSON walker allows are CLASS_UNKNOWN. */
#ifndef PGSOV_GUARD_H
#define PGSOV_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "pgsov/stmt_class.h"

#define GUARD_DEFAULT_MAX_STATEMENT_LENGTH 65536u
#define GUARD_DEFAULT_CACHE_ENTRIES 4096u
#define GUARD_DEFAULT_CACHE_MAX_TEXT 4096u

struct guard_options {
    uint32_t max_statement_length;  /* longer SQL is not parsed: CLASS_UNKNOWN; 0 → default */
    size_t cache_entries;           /* capacity of each verdict cache level; 0 disables both */
    uint32_t cache_max_text;        /* longer texts are classified but not cached, so the
                                       cache holds at most entries × this many bytes; 0 →
                                       default (4096). The masked level's keys are bounded
                                       the same way.                                        */
    bool masked_cache_off;          /* true: only the exact-text level (see guard_classify) */
    const char *const *privileged_functions; /* lower-case names, optionally "schema.name", */
    size_t n_privileged_functions;  /* whose call anywhere makes a statement privileged;
                                       privileged_functions == NULL → the built-in list
                                       (guard_default_privileged_functions). An unqualified
                                       name matches a call in any schema; "s.f" matches
                                       calls of s.f and of unqualified f (search_path).     */
};

/* Fills *opt with the defaults (cache on, built-in function list). */
void guard_options_default(struct guard_options *opt);

/* The built-in privileged function list, NULL-terminated. */
extern const char *const guard_default_privileged_functions[];

struct guard;

/* opt == NULL → defaults. Returns NULL when memory runs out or a function name is empty or
 * longer than 127 bytes. */
struct guard *guard_new(const struct guard_options *opt);
void guard_free(struct guard *g);

struct guard_verdict {
    class_set classes;          /* every class present in the text (all statements, nested) */
    enum stmt_class worst;      /* the most dangerous of classes (CLASS_READ when empty)     */
    int n_statements;           /* 0 for an empty query string (EmptyQueryResponse)          */
    bool lexing_change;         /* the text may set standard_conforming_strings or
                                   client_encoding to something other than on / UTF8: the
                                   session must refuse it                                    */
    char prepare_name[64];      /* SQL-level "PREPARE name AS stmt": name ("" otherwise)     */
    class_set prepare_classes;  /* classes of that inner statement: record them for name    */
    char execute_name[64];      /* SQL-level EXECUTE name (also inside EXPLAIN ANALYZE or
                                   CREATE TABLE AS): "" otherwise. While set, classes holds
                                   CLASS_UNKNOWN, so an unresolved EXECUTE fails closed; the
                                   session resolves it with guard_resolve_execute().         */
    class_set classes_besides_execute; /* classes without the EXECUTE itself (its arguments
                                   are included)                                            */
    bool deallocate;            /* DEALLOCATE [PREPARE] name | ALL                           */
    char deallocate_name[64];   /* its name; "" means ALL                                    */
    char reason[160];           /* for CLASS_UNKNOWN: why (parser message, too long, ...)   */
};

/* Classifies sql (len bytes, need not be NUL-terminated; an embedded NUL is CLASS_UNKNOWN).
 * Never fails: anything it cannot classify is CLASS_UNKNOWN with reason set.
 * Two cache levels answer before any parse: the exact text, then the text's PostgreSQL token
 * stream with literal values masked (pg_query_scan), which holds only verdicts whose
 * classification never read a literal's value, never CLASS_UNKNOWN, lexing changes or
 * PREPARE/EXECUTE/DEALLOCATE. A verdict from either level equals a fresh classification. */
void guard_classify(struct guard *g, const char *sql, size_t len, struct guard_verdict *out);

/* For a verdict with execute_name set: replaces the EXECUTE's CLASS_UNKNOWN by the classes the
 * session recorded for that name at PREPARE time, and recomputes worst. */
void guard_resolve_execute(struct guard_verdict *v, class_set recorded);

/* The fastpath FunctionCall message names its function by OID. The large-object functions
 * libpq calls that way (lo_open, loread, lowrite, lo_creat, ...) are CLASS_FUNCTION; any other
 * OID could be set_config, lo_import or pg_read_file, and is CLASS_PRIVILEGED. */
enum stmt_class guard_classify_function_call(uint32_t oid);

/* The most dangerous class in set (order: unknown, privileged, role, ddl, function, write,
 * maintenance, session, transaction, read); CLASS_READ for the empty set. */
enum stmt_class guard_worst_class(class_set set);

/* Normalized text (constants replaced by $n, pg_query_normalize) and fingerprint hex
 * (pg_query_fingerprint) for the audit log; malloc'd, the caller frees; NULL on failure
 * (parse error or no memory). sql is NUL-terminated. */
char *guard_normalize(const char *sql);
char *guard_fingerprint(const char *sql);

struct guard_stats {
    uint64_t hits;              /* answered by the exact-text level                      */
    uint64_t masked_hits;       /* answered by the masked level                          */
    uint64_t digit_hits;        /* answered by the digit level (before any lexing)       */
    uint64_t misses;            /* parsed and walked (neither level answered)            */
    uint64_t evictions, masked_evictions, digit_evictions;
};
void guard_get_stats(const struct guard *g, struct guard_stats *out);

/* The classification table, for tests and docs: the class name a statement node type maps to
 * ("read", "ddl", ...), "inner" when the node takes the class of the statement it wraps
 * (DeclareCursorStmt, RawStmt), "depends" when its fields decide (EXPLAIN, COPY, SET, ...);
 * NULL when node_type is not mapped. */
const char *guard_node_class_name(const char *node_type);

#endif

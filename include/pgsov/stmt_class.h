/* stmt_class.h — the classes of SQL statement that rules grant and the guard assigns.
 * Names follow pgaudit's where they overlap. Pure. */
#ifndef PGSOV_STMT_CLASS_H
#define PGSOV_STMT_CLASS_H

#include <stdint.h>
#include "pgsov/err.h"

enum stmt_class {
    CLASS_READ = 0,     /* SELECT, COPY TO STDOUT, SHOW, EXPLAIN without ANALYZE of a read  */
    CLASS_WRITE,        /* INSERT, UPDATE, DELETE, MERGE, COPY FROM STDIN, data-modifying CTE */
    CLASS_DDL,          /* CREATE/ALTER/DROP of schema objects, TRUNCATE, COMMENT, ...      */
    CLASS_ROLE,         /* GRANT, REVOKE, CREATE/ALTER/DROP ROLE, ALTER DEFAULT PRIVILEGES    */
    CLASS_FUNCTION,     /* DO, CALL, the fastpath FunctionCall message                      */
    CLASS_PRIVILEGED,   /* SET ROLE, SET SESSION AUTHORIZATION, ALTER SYSTEM, LOAD, COPY to or
                           from a file or program, configured dangerous functions           */
    CLASS_TRANSACTION,  /* BEGIN, COMMIT, ROLLBACK, SAVEPOINT, PREPARE TRANSACTION, ...       */
    CLASS_SESSION,      /* SET, RESET, DISCARD, LISTEN, NOTIFY, PREPARE, DEALLOCATE, ...      */
    CLASS_MAINTENANCE,  /* VACUUM, ANALYZE, CLUSTER, REINDEX, CHECKPOINT, REFRESH MAT. VIEW   */
    CLASS_UNKNOWN,      /* not parsable, too long, or not classified: refused unless granted */
    CLASS__COUNT
};

typedef uint32_t class_set;     /* bit (1u << class) per granted class */

#define CLASS_BIT(c) ((class_set)1u << (c))
#define CLASS_SET_ALL ((class_set)((1u << CLASS__COUNT) - 1u))
/* What a rule grants when it names no classes: an application's everyday needs. */
#define CLASS_SET_DEFAULT (CLASS_BIT(CLASS_READ) | CLASS_BIT(CLASS_WRITE) | \
                           CLASS_BIT(CLASS_TRANSACTION) | CLASS_BIT(CLASS_SESSION))

/* "read", "write", ... ; never NULL for a valid class. */
const char *stmt_class_name(enum stmt_class c);

/* Parses one name; returns -1 when unknown. */
int stmt_class_from_name(const char *name, enum stmt_class *out);

/* Parses a comma-separated list such as "read,write,ddl". "all" means every class except
 * unknown (which must be named). "default" means CLASS_SET_DEFAULT. "none" is the empty set. */
int class_set_parse(const char *list, class_set *out, struct pgsov_err *err);

/* Writes "read,write,..." into buf. */
void class_set_format(class_set set, char *buf, size_t size);

#endif

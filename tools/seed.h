/* seed.h — deterministic business test data: the pure core of `pgsov seed`.
 *
 * A scenario file (JSON, see docs/seed.md) names tables, how many rows each has (a count for
 * a root table, a count per parent row for a child table) and one generator per column.
 * seed_generate() streams a table's rows as CSV (RFC 4180) or COPY text lines to a callback;
 * nothing here touches a database, a clock or a global, and nothing holds a table in memory:
 * a child table is produced by walking its ancestors again, which regenerates each ancestor
 * row from its position alone.
 *
 * Determinism: every (table, column) owns a stream keyed by SHA-256(seed, table, column), and
 * every row draws from a substream of it keyed by the row's position among its ancestors.
 * Adding a column or a table leaves every other value as it was. Arithmetic on values is
 * integer (fixed-point decimals, days, cents); the few distributions that need floating point
 * use only IEEE-754 basic operations and our own exp/log, never libm's. */
#ifndef PGSOV_TOOLS_SEED_H
#define PGSOV_TOOLS_SEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgsov/err.h"

struct seed_scenario;

/* Parses scenario JSON text; name is used in messages ("credito.json: tables[1].rows: ...").
 * Unknown keys, wrong types and dangling references are errors naming the JSON path. */
int seed_scenario_parse(const char *text, size_t len, const char *name,
                        struct seed_scenario **out, struct pgsov_err *err);
int seed_scenario_load(const char *path, struct seed_scenario **out, struct pgsov_err *err);
void seed_scenario_free(struct seed_scenario *sc);

/* Tables in load order (parents before children). Names as written ("app.clients"). */
size_t seed_table_count(const struct seed_scenario *sc);
const char *seed_table_name(const struct seed_scenario *sc, size_t t);
/* Emitted columns of table t (columns with "emit": false are left out). */
size_t seed_column_count(const struct seed_scenario *sc, size_t t);
const char *seed_column_name(const struct seed_scenario *sc, size_t t, size_t c);
/* Is emitted column c of table t a "sequence" (the loader moves the table's own sequence
 * past the values it wrote)? */
bool seed_column_is_sequence(const struct seed_scenario *sc, size_t t, size_t c);
/* The largest value a "sequence" column c of table t holds after `rows` rows were generated
 * (the values are start, start + step, ...), so the loader need not scan the table for it.
 * false when c is not a sequence, may be NULL (null_rate), or rows is 0. */
bool seed_sequence_max(const struct seed_scenario *sc, size_t t, size_t c, uint64_t rows,
                       int64_t *out);

enum seed_format {
    SEED_FORMAT_CSV,        /* RFC 4180: comma, "quoted" when needed, CRLF; NULL is empty    */
    SEED_FORMAT_COPY_TEXT,  /* PostgreSQL COPY text: tab, backslash escapes, \N, LF          */
    SEED_FORMAT_COPY_BINARY,/* PostgreSQL COPY binary tuples (no file header or trailer: see
                               SEED_COPY_BINARY_HEADER), each column as run->types says      */
};

/* Column types the binary format encodes. Anything else (domains, arrays, other types) is
 * SEED_PG_OTHER, and a table with such a column is loaded as COPY text. */
enum seed_pgtype {
    SEED_PG_OTHER, SEED_PG_BOOL, SEED_PG_INT2, SEED_PG_INT4, SEED_PG_INT8, SEED_PG_NUMERIC,
    SEED_PG_DATE, SEED_PG_TIMESTAMP, SEED_PG_TIMESTAMPTZ, SEED_PG_TEXT, SEED_PG_UUID,
};
/* The type for a pg_attribute.atttypid (built-in OIDs are fixed across versions). text,
 * varchar and bpchar are all SEED_PG_TEXT: their binary input is the text itself, with the
 * same length checks and padding as text input. */
enum seed_pgtype seed_pgtype_from_oid(unsigned oid);

/* COPY binary framing: the 19-byte header before the first tuple, the 2-byte trailer after
 * the last one. */
#define SEED_COPY_BINARY_HEADER "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0"
#define SEED_COPY_BINARY_HEADER_LEN 19
#define SEED_COPY_BINARY_TRAILER "\377\377"
#define SEED_COPY_BINARY_TRAILER_LEN 2

struct seed_run {
    uint64_t seed;
    double scale;           /* multiplies root tables' row counts; 1.0 = as written          */
    enum seed_format format;
    /* SEED_FORMAT_COPY_BINARY: the type of each emitted column (seed_column_count entries) */
    const enum seed_pgtype *types;
};

/* seed_generate's result (err set) when format is SEED_FORMAT_COPY_BINARY and a value has no
 * binary form that means exactly what its COPY text would (a text value for a numeric column,
 * a date for a timestamptz column, an integer out of int4 range...). The caller loads the table
 * as text instead, where the server decides, as it always did. */
#define SEED_NOT_BINARY (-2)

/* Receives one formatted line (with its line ending). Return -1 (err set) to stop. */
typedef int (*seed_line_fn)(void *ctx, const char *line, size_t len, struct pgsov_err *err);

/* Generates table t's rows in order and hands each line to fn (no header line; see
 * seed_header). *rows_out (if non-NULL) gets the number of rows. Memory stays flat. */
int seed_generate(const struct seed_scenario *sc, size_t t, const struct seed_run *run,
                  seed_line_fn fn, void *ctx, uint64_t *rows_out, struct pgsov_err *err);

/* The CSV header line of table t ("id,name,...\r\n") into buf; returns its length, or -1 if
 * buf is too small. */
int seed_header(const struct seed_scenario *sc, size_t t, char *buf, size_t size);

/* ---- building blocks, exposed for tests ---------------------------------------------- */

/* Dates are days since 1970-01-01 (proleptic Gregorian). */
int32_t seed_days_from_civil(int y, int m, int d);
/* 0001-01-01 and 9999-12-31 in days since 1970-01-01: the dates seed produces. */
#define SEED_DAY_MIN (-719162)
#define SEED_DAY_MAX 2932896
void seed_civil_from_days(int32_t days, int *y, int *m, int *d);
/* "YYYY-MM-DD" → days; -1 with err on a malformed or impossible date. */
int seed_date_parse(const char *s, int32_t *days, struct pgsov_err *err);
/* The same day of the month n months later (n may be negative); a day that the target month
 * lacks (29–31) becomes that month's last day. Anchored: Jan 31 + 1 = Feb 28/29, + 2 = Mar 31. */
int32_t seed_add_months(int32_t days, int n);

/* CPF: 9 base digits → 11 digits with the two check digits, NUL-terminated (out[12]). */
void seed_cpf_complete(const char base9[9], char out[12]);
/* CNPJ, numeric or alphanumeric (July 2026): 12 chars [0-9A-Z] → 14 with the two numeric
 * check digits (value of a char = ASCII − 48, weights 2..9 from the right, mod 11).
 * Returns -1 if base12 holds a character outside [0-9A-Z]. */
int seed_cnpj_complete(const char base12[12], char out[15]);

/* French amortisation (Price table) of principal_cents at a monthly rate over n months.
 * Each installment but the last is PMT rounded to cents; the last takes whatever makes the
 * principal parts sum exactly to the principal. Interest per month = balance × rate rounded
 * to cents. rate is rate_m / 10^rate_scale (integer arithmetic for the interest). */
struct seed_installment {
    int64_t amount, principal, interest, balance_after;   /* cents */
};
/* Fills out[0..n-1]; n in 1..SEED_MAX_TERM. Returns -1 (err set) on bad input or overflow. */
#define SEED_MAX_TERM 600
int seed_amortize(int64_t principal_cents, int64_t rate_m, int rate_scale, int n,
                  struct seed_installment *out, struct pgsov_err *err);

/* ASCII folding of UTF-8 Portuguese text for e-mail local parts: "João Conceição" →
 * "joao conceicao" (lowercase; other non-ASCII bytes dropped). Returns strlen(out). */
size_t seed_ascii_fold(const char *in, char *out, size_t size);

#endif

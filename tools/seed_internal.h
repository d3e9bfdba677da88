/* seed_internal.h — what the seed_*.c files share and nobody else needs: the parsed scenario,
 * values, random streams, the expression language and the embedded Brazilian data tables.
 * The public surface is seed.h. */
#ifndef PGSOV_TOOLS_SEED_INTERNAL_H
#define PGSOV_TOOLS_SEED_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "seed.h"

/* ---- values ---------------------------------------------------------------------------- */

enum seed_kind { SV_NULL, SV_NUM, SV_DATE, SV_TEXT, SV_BOOL };

#define SEED_TEXT_MAX 192
#define SEED_MAX_SCALE 8

struct seed_value {
    enum seed_kind kind;
    int scale;              /* SV_NUM: digits after the decimal point                         */
    int64_t i;              /* SV_NUM mantissa (value = i / 10^scale); SV_DATE days; SV_BOOL    */
    int aux;                /* SV_TEXT made by the city generator: city index + 1; by the
                               timestamp generator: SEED_AUX_INSTANT; else 0                  */
    char text[SEED_TEXT_MAX];
};

/* aux of a timestamp generator's text ("YYYY-MM-DD HH:MM:SS-03"): i holds the same instant
 * as seconds since 1970-01-01 UTC, so COPY binary need not parse the text back. */
#define SEED_AUX_INSTANT (-1)
/* The fixed offset timestamps are written with (Brasília, -03). */
#define SEED_TS_OFFSET_SECONDS (-3 * 3600)

extern const int64_t seed_pow10[19];

/* Copies only what the kind uses (values are large; most are not text). */
static inline void seed_value_copy(struct seed_value *dst, const struct seed_value *src)
{
    dst->kind = src->kind;
    dst->scale = src->scale;
    dst->i = src->i;
    dst->aux = src->aux;
    if (src->kind == SV_TEXT)
        memcpy(dst->text, src->text, strlen(src->text) + 1);
}

/* ---- random streams -------------------------------------------------------------------- */

struct seed_key { uint64_t k[4]; };
struct seed_rng { uint64_t s[4]; };

uint64_t seed_mix64(uint64_t x);
/* SHA-256(seed as 8 bytes LE || table || 0 || column || 0) as four words. */
void seed_key_derive(uint64_t seed, const char *table, const char *column, struct seed_key *out);
/* The substream of key for one row (xoshiro256** state expanded with SplitMix64). */
void seed_rng_init(struct seed_rng *r, const struct seed_key *key, uint64_t rowkey);
uint64_t seed_rng_next(struct seed_rng *r);
uint64_t seed_rng_below(struct seed_rng *r, uint64_t n);           /* [0, n), unbiased     */
int64_t seed_rng_range(struct seed_rng *r, int64_t lo, int64_t hi); /* [lo, hi]             */
double seed_rng_unit(struct seed_rng *r);                           /* [0, 1)               */
double seed_rng_normal(struct seed_rng *r);                         /* N(0,1), polar method */
double seed_exp(double x);
double seed_log(double x);
/* x × 10^scale rounded half away from zero into *out; -1 when out of int64 range. */
int seed_double_to_fixed(double x, int scale, int64_t *out);
/* m / 10^from_scale at to_scale, rounded half away from zero. */
int64_t seed_rescale(int64_t m, int from_scale, int to_scale);

/* ---- Brazilian reference data (seed_data.c) -------------------------------------------- */

struct seed_city {
    const char *name, *uf;
    int ddd;
    int cep_lo, cep_hi;     /* first five digits of the CEP range                           */
};
extern const char *const seed_first_names[];
extern const size_t seed_n_first_names;
extern const char *const seed_surnames[];
extern const size_t seed_n_surnames;
extern const struct seed_city seed_cities[];
extern const size_t seed_n_cities;
extern const char *const seed_street_kinds[];
extern const size_t seed_n_street_kinds;
extern const char *const seed_street_names[];
extern const size_t seed_n_street_names;
extern const char *const seed_company_words[];
extern const size_t seed_n_company_words;

/* ---- expressions (seed_expr.c) ---------------------------------------------------------- */

struct seed_expr;
struct seed_table;

/* Frame of one row being generated: its values so far and its ancestors. */
struct seed_frame {
    const struct seed_table *table;
    struct seed_value *vals;    /* table->n_cols values; only columns before the current one
                                   are filled                                               */
    uint64_t rowkey;
    int64_t row;                /* 1-based position in the whole table                        */
    int64_t ordinal;            /* 1-based position among the children of its parent row     */
    const struct seed_frame *parent;
};

/* Compiles text in the context of table t (of scenario tables[], index ti) where columns
 * [0, visible) of t are readable; parent.* columns are all readable. */
int seed_expr_compile(const char *text, const struct seed_table *tables, size_t ti,
                      size_t visible, struct seed_expr **out, struct pgsov_err *err);
void seed_expr_free(struct seed_expr *e);
/* Calls fn for every column e reads: depth 0 = the row's own table, 1 = its parent, ... */
typedef void (*seed_ref_fn)(void *ctx, int depth, int col);
void seed_expr_refs(const struct seed_expr *e, seed_ref_fn fn, void *ctx);
int seed_expr_eval(const struct seed_expr *e, const struct seed_frame *f, int32_t reference_date,
                   struct seed_value *out, struct pgsov_err *err);
/* Value as a boolean (NULL → false); -1 when not a boolean. */
int seed_value_truth(const struct seed_value *v, bool *out);
/* Formats a value as text (no quoting) into buf. Returns length. */
size_t seed_value_format(const struct seed_value *v, char *buf, size_t size);

/* ---- scenario ---------------------------------------------------------------------------- */

enum seed_gen {
    G_SEQUENCE, G_UUID, G_INT, G_NUMBER, G_ENUM, G_DATE, G_TIMESTAMP, G_EXPR, G_CONST,
    G_FIRST_NAME, G_LAST_NAME, G_NAME, G_COMPANY, G_CPF, G_CNPJ, G_RG, G_EMAIL, G_PHONE,
    G_CITY, G_UF, G_CEP, G_STREET, G_AMORTIZATION,
};

enum seed_dist { D_UNIFORM, D_NORMAL, D_LOGNORMAL };

enum seed_amort_field {
    AF_AMOUNT, AF_PRINCIPAL, AF_INTEREST, AF_BALANCE, AF_PMT, AF_TOTAL, AF_TOTAL_INTEREST,
};

struct seed_column {
    char *name;
    enum seed_gen gen;
    bool emit;
    int64_t null_ppm;           /* chance of NULL, parts per million                        */
    /* sequence */
    int64_t start, step;
    /* int, number (min/max at `scale`), date/timestamp offsets (min/max days) */
    int64_t min, max;
    int scale;
    enum seed_dist dist;
    double mean, sd, median, sigma;     /* in the column's unit (not scaled)                 */
    /* enum */
    struct seed_value *values;
    uint64_t *cumulative;       /* cumulative weights                                       */
    size_t n_values;
    /* expr (G_EXPR), date base (G_DATE / G_TIMESTAMP), amortization inputs */
    struct seed_expr *expr, *base, *principal, *rate, *term, *installment;
    enum seed_amort_field field;
    int source;                 /* same-table column index: name for email, city for uf/...  */
    char **domains;
    size_t n_domains;
    bool unique, masked, alphanumeric, mobile;
    struct seed_value constant;
};

enum seed_per_parent { PP_FIXED, PP_RANGE, PP_WEIGHTS, PP_EXPR };

struct seed_table {
    char *name;
    int parent;                 /* index in tables[], -1 for a root table                    */
    int depth;
    int64_t rows;               /* root tables                                               */
    enum seed_per_parent per_parent;
    int64_t pp_min, pp_max;
    int64_t *pp_values;
    uint64_t *pp_cumulative;
    size_t pp_n;
    struct seed_expr *pp_expr, *where;
    struct seed_column *cols;
    size_t n_cols;
    size_t *emit;               /* indices of emitted columns                                */
    size_t n_emit;
};

struct seed_scenario {
    char *name;
    int32_t reference_date;
    struct seed_table *tables;  /* in file order                                             */
    size_t n_tables;
    size_t *order;              /* load order: parents first                                 */
};

#endif

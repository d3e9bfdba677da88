/* seed_scenario.c — reads a scenario file (JSON, jansson) into struct seed_scenario and
 * validates it completely before anything is generated: unknown keys, wrong types, bad
 * ranges and dangling references are errors that name the JSON path, e.g.
 *   credito.json: tables[2].columns[4].weights[1]: expected a positive integer
 * The format is documented field by field in docs/seed.md. */
#include "seed_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

struct jctx {
    const char *file;
    struct pgsov_err *err;
    struct seed_table *tables;      /* being built; for expression compilation           */
};

__attribute__((format(printf, 3, 4)))
static int jfail(struct jctx *j, const char *path, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return pgsov_fail(j->err, "%s: %s: %s", j->file, path, msg);
}

/* snprintf for JSON paths: a path cut at 300 bytes is still a useful message. */
__attribute__((format(printf, 3, 4)))
static void pathf(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Every key of obj must be in allowed (NULL-terminated). */
static int check_keys(struct jctx *j, json_t *obj, const char *path, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, key) == 0)
                ok = 1;
        if (!ok) {
            char p[300];
            pathf(p, sizeof p, "%s.%s", path, key);
            return jfail(j, p, "unknown key");
        }
    }
    return 0;
}

static int get_int(struct jctx *j, json_t *obj, const char *path, const char *key, int64_t lo,
                   int64_t hi, int64_t dflt, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v))
        return jfail(j, p, "expected an integer");
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi)
        return jfail(j, p, "%lld outside %lld..%lld", (long long)x, (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int get_number(struct jctx *j, json_t *obj, const char *path, const char *key,
                      double dflt, bool required, double *out)
{
    json_t *v = json_object_get(obj, key);
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (!v) {
        if (required)
            return jfail(j, p, "required");
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v))
        return jfail(j, p, "expected a number");
    *out = json_number_value(v);
    return 0;
}

static int get_bool(struct jctx *j, json_t *obj, const char *path, const char *key, bool dflt,
                    bool *out)
{
    json_t *v = json_object_get(obj, key);
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return jfail(j, p, "expected true or false");
    *out = json_is_true(v);
    return 0;
}

/* String value, or dflt (may be NULL) when absent. */
static int get_string(struct jctx *j, json_t *obj, const char *path, const char *key,
                      const char *dflt, const char **out)
{
    json_t *v = json_object_get(obj, key);
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_string(v))
        return jfail(j, p, "expected a string");
    *out = json_string_value(v);
    return 0;
}

static int compile(struct jctx *j, json_t *obj, const char *path, const char *key,
                   const char *dflt, size_t ti, size_t visible, struct seed_expr **out)
{
    const char *text;
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    if (get_string(j, obj, path, key, dflt, &text) < 0)
        return -1;
    if (!text)
        return jfail(j, p, "required");
    struct pgsov_err e;
    if (seed_expr_compile(text, j->tables, ti, visible, out, &e) < 0)
        return jfail(j, p, "%s", e.msg);
    return 0;
}

/* A JSON scalar as a value (enum values, const). */
static int scalar_value(struct jctx *j, json_t *v, const char *path, struct seed_value *out)
{
    memset(out, 0, sizeof *out);
    if (json_is_null(v)) {
        out->kind = SV_NULL;
    } else if (json_is_string(v)) {
        if (json_string_length(v) >= SEED_TEXT_MAX)
            return jfail(j, path, "string longer than %d bytes", SEED_TEXT_MAX - 1);
        out->kind = SV_TEXT;
        memcpy(out->text, json_string_value(v), json_string_length(v) + 1);
    } else if (json_is_integer(v)) {
        out->kind = SV_NUM;
        out->i = json_integer_value(v);
    } else if (json_is_boolean(v)) {
        out->kind = SV_BOOL;
        out->i = json_is_true(v);
    } else if (json_is_real(v)) {
        out->kind = SV_NUM;
        int s;
        /* shortest scale that represents the literal as written */
        for (s = 0; s <= SEED_MAX_SCALE; s++) {
            int64_t m;
            if (seed_double_to_fixed(json_real_value(v), s, &m) == 0 &&
                (double)m / (double)seed_pow10[s] == json_real_value(v)) {
                out->i = m;
                out->scale = s;
                return 0;
            }
        }
        return jfail(j, path, "number needs more than %d decimal digits", SEED_MAX_SCALE);
    } else {
        return jfail(j, path, "expected a string, number, boolean or null");
    }
    return 0;
}

/* "weights": array of positive integers, n entries; absent → all 1. */
static int parse_weights(struct jctx *j, json_t *obj, const char *path, size_t n,
                         uint64_t **out)
{
    json_t *w = json_object_get(obj, "weights");
    char p[300];
    pathf(p, sizeof p, "%s.weights", path);
    if (w && (!json_is_array(w) || json_array_size(w) != n))
        return jfail(j, p, "expected an array of %zu positive integers (one per value)", n);
    uint64_t *cum = calloc(n ? n : 1, sizeof *cum);
    if (!cum)
        return jfail(j, p, "out of memory");
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t x = 1;
        if (w) {
            json_t *e = json_array_get(w, i);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > 1000000000) {
                free(cum);
                pathf(p, sizeof p, "%s.weights[%zu]", path, i);
                return jfail(j, p, "expected an integer 0..1000000000");
            }
            x = json_integer_value(e);
        }
        total += (uint64_t)x;
        cum[i] = total;
    }
    if (total == 0) {
        free(cum);
        return jfail(j, p, "weights sum to zero");
    }
    *out = cum;
    return 0;
}

static int same_table_column(struct jctx *j, json_t *obj, const char *path, const char *key,
                             const struct seed_table *t, size_t visible, bool required,
                             int *out)
{
    const char *name;
    char p[300];
    pathf(p, sizeof p, "%s.%s", path, key);
    *out = -1;
    if (get_string(j, obj, path, key, NULL, &name) < 0)
        return -1;
    if (!name)
        return required ? jfail(j, p, "required: the name of an earlier column") : 0;
    for (size_t i = 0; i < visible; i++)
        if (strcmp(t->cols[i].name, name) == 0) {
            *out = (int)i;
            return 0;
        }
    return jfail(j, p, "no earlier column named \"%s\" in this table", name);
}

static int valid_identifier(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

static const struct { const char *name; enum seed_gen gen; const char *const keys[12]; } gens[] = {
    { "sequence", G_SEQUENCE, { "start", "step" } },
    { "uuid", G_UUID, { 0 } },
    { "int", G_INT, { "min", "max", "dist", "mean", "sd", "median", "sigma" } },
    { "number", G_NUMBER, { "min", "max", "scale", "dist", "mean", "sd", "median", "sigma" } },
    { "money", G_NUMBER, { "min", "max", "dist", "mean", "sd", "median", "sigma" } },
    { "enum", G_ENUM, { "values", "weights" } },
    { "date", G_DATE, { "from", "to" } },
    { "timestamp", G_TIMESTAMP, { "from", "to", "from_hour", "to_hour" } },
    { "expr", G_EXPR, { "expr", "scale" } },
    { "const", G_CONST, { "value" } },
    { "first_name", G_FIRST_NAME, { 0 } },
    { "last_name", G_LAST_NAME, { 0 } },
    { "name", G_NAME, { 0 } },
    { "company", G_COMPANY, { 0 } },
    { "cpf", G_CPF, { "masked" } },
    { "cnpj", G_CNPJ, { "masked", "alphanumeric" } },
    { "rg", G_RG, { "masked" } },
    { "email", G_EMAIL, { "from", "domains", "unique" } },
    { "phone", G_PHONE, { "city", "mobile", "masked" } },
    { "city", G_CITY, { 0 } },
    { "uf", G_UF, { "city" } },
    { "cep", G_CEP, { "city", "masked" } },
    { "street", G_STREET, { 0 } },
    { "amortization", G_AMORTIZATION, { "principal", "rate", "term", "installment", "field" } },
};

static int parse_dist(struct jctx *j, json_t *obj, const char *path, struct seed_column *c,
                      double unit_min, double unit_max)
{
    const char *dist;
    char p[300];
    pathf(p, sizeof p, "%s.dist", path);
    if (get_string(j, obj, path, "dist", "uniform", &dist) < 0)
        return -1;
    if (strcmp(dist, "uniform") == 0) {
        c->dist = D_UNIFORM;
        if (json_object_get(obj, "mean") || json_object_get(obj, "sd") ||
            json_object_get(obj, "median") || json_object_get(obj, "sigma"))
            return jfail(j, path, "mean/sd/median/sigma need \"dist\": \"normal\" or \"lognormal\"");
    } else if (strcmp(dist, "normal") == 0) {
        c->dist = D_NORMAL;
        if (get_number(j, obj, path, "mean", 0, true, &c->mean) < 0 ||
            get_number(j, obj, path, "sd", 0, true, &c->sd) < 0)
            return -1;
        if (c->sd < 0)
            return jfail(j, path, "sd must be >= 0");
    } else if (strcmp(dist, "lognormal") == 0) {
        c->dist = D_LOGNORMAL;
        if (get_number(j, obj, path, "median", 0, true, &c->median) < 0 ||
            get_number(j, obj, path, "sigma", 0, true, &c->sigma) < 0)
            return -1;
        if (c->median <= 0 || c->sigma < 0)
            return jfail(j, path, "lognormal needs median > 0 and sigma >= 0");
    } else {
        return jfail(j, p, "unknown distribution \"%s\" (uniform, normal, lognormal)", dist);
    }
    (void)unit_min;
    (void)unit_max;
    return 0;
}

static int parse_column(struct jctx *j, json_t *obj, const char *path, struct seed_table *t,
                        size_t ti, size_t ci)
{
    struct seed_column *c = &t->cols[ci];
    const char *name, *gen;
    char p[300];
    if (!json_is_object(obj))
        return jfail(j, path, "expected an object");
    if (get_string(j, obj, path, "name", NULL, &name) < 0 ||
        get_string(j, obj, path, "gen", NULL, &gen) < 0)
        return -1;
    if (!name || !valid_identifier(name)) {
        pathf(p, sizeof p, "%s.name", path);
        return jfail(j, p, "required: a column name of 1..63 letters, digits and _");
    }
    for (size_t i = 0; i < ci; i++)
        if (strcmp(t->cols[i].name, name) == 0) {
            pathf(p, sizeof p, "%s.name", path);
            return jfail(j, p, "duplicate column \"%s\"", name);
        }
    if (!(c->name = xstrdup(name)))
        return jfail(j, path, "out of memory");
    pathf(p, sizeof p, "%s.gen", path);
    if (!gen)
        return jfail(j, p, "required: the generator");
    size_t g;
    for (g = 0; g < sizeof gens / sizeof gens[0]; g++)
        if (strcmp(gens[g].name, gen) == 0)
            break;
    if (g == sizeof gens / sizeof gens[0])
        return jfail(j, p, "unknown generator \"%s\" (see docs/seed.md)", gen);
    c->gen = gens[g].gen;
    const char *allowed[20] = { "name", "gen", "emit", "null_rate", "description" };
    size_t na = 5;
    for (size_t k = 0; k < 12 && gens[g].keys[k]; k++)
        allowed[na++] = gens[g].keys[k];
    allowed[na] = NULL;
    if (check_keys(j, obj, path, allowed) < 0)
        return -1;

    double null_rate;
    if (get_bool(j, obj, path, "emit", true, &c->emit) < 0 ||
        get_number(j, obj, path, "null_rate", 0, false, &null_rate) < 0)
        return -1;
    if (null_rate < 0 || null_rate > 1) {
        pathf(p, sizeof p, "%s.null_rate", path);
        return jfail(j, p, "expected a number 0..1");
    }
    c->null_ppm = (int64_t)(null_rate * 1e6 + 0.5);

    switch (c->gen) {
    case G_SEQUENCE:
        if (get_int(j, obj, path, "start", INT64_MIN / 4, INT64_MAX / 4, 1, &c->start) < 0 ||
            get_int(j, obj, path, "step", -1000000, 1000000, 1, &c->step) < 0)
            return -1;
        break;
    case G_INT:
        if (get_int(j, obj, path, "min", INT64_MIN / 4, INT64_MAX / 4, 0, &c->min) < 0 ||
            get_int(j, obj, path, "max", INT64_MIN / 4, INT64_MAX / 4, 100, &c->max) < 0 ||
            parse_dist(j, obj, path, c, 0, 0) < 0)
            return -1;
        if (c->min > c->max)
            return jfail(j, path, "min > max");
        break;
    case G_NUMBER: {
        int64_t scale = 2;
        if (strcmp(gen, "number") == 0 &&
            get_int(j, obj, path, "scale", 0, SEED_MAX_SCALE, 0, &scale) < 0)
            return -1;
        c->scale = (int)scale;
        double lo, hi;
        if (get_number(j, obj, path, "min", 0, true, &lo) < 0 ||
            get_number(j, obj, path, "max", 0, true, &hi) < 0 || parse_dist(j, obj, path, c, lo, hi) < 0)
            return -1;
        if (seed_double_to_fixed(lo, c->scale, &c->min) < 0 ||
            seed_double_to_fixed(hi, c->scale, &c->max) < 0 || c->min > c->max ||
            c->max > INT64_MAX / 4 || c->min < INT64_MIN / 4)
            return jfail(j, path, "min/max out of range or min > max");
        break;
    }
    case G_ENUM: {
        json_t *vals = json_object_get(obj, "values");
        pathf(p, sizeof p, "%s.values", path);
        if (!json_is_array(vals) || json_array_size(vals) == 0 || json_array_size(vals) > 10000)
            return jfail(j, p, "required: an array of 1..10000 values");
        c->n_values = json_array_size(vals);
        if (!(c->values = calloc(c->n_values, sizeof *c->values)))
            return jfail(j, p, "out of memory");
        for (size_t i = 0; i < c->n_values; i++) {
            pathf(p, sizeof p, "%s.values[%zu]", path, i);
            if (scalar_value(j, json_array_get(vals, i), p, &c->values[i]) < 0)
                return -1;
        }
        if (parse_weights(j, obj, path, c->n_values, &c->cumulative) < 0)
            return -1;
        break;
    }
    case G_DATE:
    case G_TIMESTAMP: {
        int64_t fh, th;
        if (compile(j, obj, path, "from", "reference_date", ti, ci, &c->base) < 0 ||
            compile(j, obj, path, "to", "reference_date", ti, ci, &c->expr) < 0 ||
            get_int(j, obj, path, "from_hour", 0, 23, 0, &fh) < 0 ||
            get_int(j, obj, path, "to_hour", 1, 24, 24, &th) < 0)
            return -1;
        if (fh >= th)
            return jfail(j, path, "from_hour must be below to_hour");
        c->min = fh;
        c->max = th;
        break;
    }
    case G_EXPR: {
        int64_t scale = -1;
        if (compile(j, obj, path, "expr", NULL, ti, ci, &c->expr) < 0 ||
            get_int(j, obj, path, "scale", -1, SEED_MAX_SCALE, -1, &scale) < 0)
            return -1;
        c->scale = (int)scale;
        break;
    }
    case G_CONST: {
        json_t *v = json_object_get(obj, "value");
        pathf(p, sizeof p, "%s.value", path);
        if (!v)
            return jfail(j, p, "required");
        if (scalar_value(j, v, p, &c->constant) < 0)
            return -1;
        break;
    }
    case G_CPF:
    case G_RG:
        if (get_bool(j, obj, path, "masked", false, &c->masked) < 0)
            return -1;
        break;
    case G_CNPJ:
        if (get_bool(j, obj, path, "masked", false, &c->masked) < 0 ||
            get_bool(j, obj, path, "alphanumeric", false, &c->alphanumeric) < 0)
            return -1;
        break;
    case G_EMAIL: {
        if (same_table_column(j, obj, path, "from", t, ci, true, &c->source) < 0 ||
            get_bool(j, obj, path, "unique", true, &c->unique) < 0)
            return -1;
        json_t *d = json_object_get(obj, "domains");
        pathf(p, sizeof p, "%s.domains", path);
        size_t n = d ? json_array_size(d) : 1;
        if (d && (!json_is_array(d) || n == 0 || n > 100))
            return jfail(j, p, "expected an array of 1..100 domain names");
        if (!(c->domains = calloc(n, sizeof *c->domains)))
            return jfail(j, p, "out of memory");
        c->n_domains = n;
        for (size_t i = 0; i < n; i++) {
            const char *s = d ? json_string_value(json_array_get(d, i)) : "example.com";
            if (!s || !*s || strlen(s) > 60 || strchr(s, '@') || strchr(s, ' ')) {
                pathf(p, sizeof p, "%s.domains[%zu]", path, i);
                return jfail(j, p, "expected a domain name");
            }
            if (!(c->domains[i] = xstrdup(s)))
                return jfail(j, p, "out of memory");
        }
        break;
    }
    case G_PHONE:
        if (same_table_column(j, obj, path, "city", t, ci, false, &c->source) < 0 ||
            get_bool(j, obj, path, "mobile", true, &c->mobile) < 0 ||
            get_bool(j, obj, path, "masked", false, &c->masked) < 0)
            return -1;
        break;
    case G_UF:
    case G_CEP:
        if (same_table_column(j, obj, path, "city", t, ci, true, &c->source) < 0 ||
            get_bool(j, obj, path, "masked", false, &c->masked) < 0)
            return -1;
        break;
    case G_AMORTIZATION: {
        static const char *const fields[] = { "amount", "principal", "interest", "balance",
                                              "pmt", "total", "total_interest" };
        const char *field;
        if (compile(j, obj, path, "principal", NULL, ti, ci, &c->principal) < 0 ||
            compile(j, obj, path, "rate", NULL, ti, ci, &c->rate) < 0 ||
            compile(j, obj, path, "term", NULL, ti, ci, &c->term) < 0 ||
            compile(j, obj, path, "installment", "ordinal", ti, ci, &c->installment) < 0 ||
            get_string(j, obj, path, "field", NULL, &field) < 0)
            return -1;
        pathf(p, sizeof p, "%s.field", path);
        if (!field)
            return jfail(j, p, "required: amount, principal, interest, balance, pmt, total or total_interest");
        size_t f;
        for (f = 0; f < sizeof fields / sizeof fields[0]; f++)
            if (strcmp(fields[f], field) == 0)
                break;
        if (f == sizeof fields / sizeof fields[0])
            return jfail(j, p, "unknown field \"%s\" (amount, principal, interest, balance, pmt, total, total_interest)", field);
        c->field = (enum seed_amort_field)f;
        break;
    }
    default:
        break;
    }
    if (c->gen == G_CITY && c->null_ppm)
        return jfail(j, path, "a city column cannot be null (uf/cep/phone depend on it)");
    return 0;
}

static int parse_per_parent(struct jctx *j, json_t *obj, const char *path, struct seed_table *t,
                            size_t ti)
{
    char p[300];
    pathf(p, sizeof p, "%s.per_parent", path);
    json_t *pp = json_object_get(obj, "per_parent");
    if (!pp)
        return jfail(j, p, "required for a table with a parent");
    if (json_is_integer(pp)) {
        t->per_parent = PP_FIXED;
        t->pp_min = json_integer_value(pp);
        if (t->pp_min < 0 || t->pp_min > 100000)
            return jfail(j, p, "expected 0..100000");
        return 0;
    }
    if (!json_is_object(pp))
        return jfail(j, p, "expected an integer or an object");
    static const char *const keys[] = { "min", "max", "values", "weights", "expr", NULL };
    if (check_keys(j, pp, p, keys) < 0)
        return -1;
    if (json_object_get(pp, "expr")) {
        t->per_parent = PP_EXPR;
        return compile(j, pp, p, "expr", NULL, ti, 0, &t->pp_expr);
    }
    json_t *vals = json_object_get(pp, "values");
    if (vals) {
        char vp[320];
        pathf(vp, sizeof vp, "%s.values", p);
        if (!json_is_array(vals) || json_array_size(vals) == 0 || json_array_size(vals) > 1000)
            return jfail(j, vp, "expected an array of 1..1000 counts");
        t->per_parent = PP_WEIGHTS;
        t->pp_n = json_array_size(vals);
        if (!(t->pp_values = calloc(t->pp_n, sizeof *t->pp_values)))
            return jfail(j, vp, "out of memory");
        for (size_t i = 0; i < t->pp_n; i++) {
            json_t *v = json_array_get(vals, i);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 100000) {
                pathf(vp, sizeof vp, "%s.values[%zu]", p, i);
                return jfail(j, vp, "expected a count 0..100000");
            }
            t->pp_values[i] = json_integer_value(v);
        }
        return parse_weights(j, pp, p, t->pp_n, &t->pp_cumulative);
    }
    t->per_parent = PP_RANGE;
    if (get_int(j, pp, p, "min", 0, 100000, 0, &t->pp_min) < 0 ||
        get_int(j, pp, p, "max", 0, 100000, -1, &t->pp_max) < 0)
        return -1;
    if (t->pp_max < 0)
        return jfail(j, p, "needs \"max\" (with \"min\"), \"values\" or \"expr\"");
    if (t->pp_min > t->pp_max)
        return jfail(j, p, "min > max");
    return 0;
}

static int valid_table_name(const char *s)
{
    /* schema.table or table; letters, digits, underscore: quoted as identifiers later, but
     * keeping names plain keeps file names and messages plain too */
    size_t n = strlen(s), dots = 0;
    if (n == 0 || n > 127)
        return 0;
    for (const char *p = s; *p; p++) {
        if (*p == '.') {
            if (p == s || !p[1] || p[1] == '.')
                return 0;
            dots++;
        } else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '_')) {
            return 0;
        }
    }
    return dots <= 1;
}

static int parse_table(struct jctx *j, json_t *obj, size_t ti, size_t n_tables)
{
    struct seed_table *t = &j->tables[ti];
    char path[64], p[300];
    pathf(path, sizeof path, "tables[%zu]", ti);
    if (!json_is_object(obj))
        return jfail(j, path, "expected an object");
    static const char *const keys[] = { "name", "rows", "parent", "per_parent", "where",
                                        "columns", "description", NULL };
    if (check_keys(j, obj, path, keys) < 0)
        return -1;
    const char *name, *parent;
    if (get_string(j, obj, path, "name", NULL, &name) < 0 ||
        get_string(j, obj, path, "parent", NULL, &parent) < 0)
        return -1;
    pathf(p, sizeof p, "%s.name", path);
    if (!name || !valid_table_name(name))
        return jfail(j, p, "required: a table name such as \"app.clients\" (letters, digits, _)");
    for (size_t i = 0; i < ti; i++)
        if (strcmp(j->tables[i].name, name) == 0)
            return jfail(j, p, "duplicate table \"%s\"", name);
    if (!(t->name = xstrdup(name)))
        return jfail(j, p, "out of memory");
    t->parent = -1;
    if (parent) {
        pathf(p, sizeof p, "%s.parent", path);
        for (size_t i = 0; i < ti; i++)
            if (strcmp(j->tables[i].name, parent) == 0)
                t->parent = (int)i;
        if (t->parent < 0)
            return jfail(j, p, "no earlier table named \"%s\" (list parents before children)", parent);
        t->depth = j->tables[t->parent].depth + 1;
        if (json_object_get(obj, "rows"))
            return jfail(j, path, "a child table has \"per_parent\", not \"rows\"");
        if (parse_per_parent(j, obj, path, t, ti) < 0)
            return -1;
        if (json_object_get(obj, "where") &&
            compile(j, obj, path, "where", NULL, ti, 0, &t->where) < 0)
            return -1;
    } else {
        if (json_object_get(obj, "per_parent") || json_object_get(obj, "where"))
            return jfail(j, path, "\"per_parent\" and \"where\" need a \"parent\"");
        if (get_int(j, obj, path, "rows", 0, 1000000000, -1, &t->rows) < 0)
            return -1;
        if (t->rows < 0) {
            pathf(p, sizeof p, "%s.rows", path);
            return jfail(j, p, "required for a table without a parent");
        }
    }
    (void)n_tables;
    json_t *cols = json_object_get(obj, "columns");
    pathf(p, sizeof p, "%s.columns", path);
    if (!json_is_array(cols) || json_array_size(cols) == 0 || json_array_size(cols) > 1000)
        return jfail(j, p, "required: an array of 1..1000 columns");
    t->n_cols = json_array_size(cols);
    if (!(t->cols = calloc(t->n_cols, sizeof *t->cols)) ||
        !(t->emit = calloc(t->n_cols, sizeof *t->emit)))
        return jfail(j, p, "out of memory");
    for (size_t ci = 0; ci < t->n_cols; ci++) {
        char cp[300];
        pathf(cp, sizeof cp, "%s.columns[%zu]", path, ci);
        if (parse_column(j, json_array_get(cols, ci), cp, t, ti, ci) < 0)
            return -1;
        if (t->cols[ci].emit)
            t->emit[t->n_emit++] = ci;
    }
    if (t->n_emit == 0)
        return jfail(j, p, "no column is emitted");
    return 0;
}

int seed_scenario_parse(const char *text, size_t len, const char *name,
                        struct seed_scenario **out, struct pgsov_err *err)
{
    *out = NULL;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return pgsov_fail(err, "%s:%d:%d: %s", name, je.line, je.column, je.text);
    struct seed_scenario *sc = calloc(1, sizeof *sc);
    struct jctx j = { .file = name, .err = err };
    int rc = -1;
    if (!sc) {
        pgsov_fail(err, "out of memory");
        goto done;
    }
    if (!(sc->name = xstrdup(name))) {
        pgsov_fail(err, "out of memory");
        goto done;
    }
    if (!json_is_object(root)) {
        jfail(&j, "$", "expected an object");
        goto done;
    }
    static const char *const keys[] = { "reference_date", "tables", "description", NULL };
    if (check_keys(&j, root, "$", keys) < 0)
        goto done;
    const char *ref;
    if (get_string(&j, root, "$", "reference_date", NULL, &ref) < 0)
        goto done;
    if (!ref) {
        jfail(&j, "reference_date", "required: a fixed \"YYYY-MM-DD\" (never the clock)");
        goto done;
    }
    struct pgsov_err de;
    if (seed_date_parse(ref, &sc->reference_date, &de) < 0) {
        jfail(&j, "reference_date", "%s", de.msg);
        goto done;
    }
    json_t *tables = json_object_get(root, "tables");
    if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > 200) {
        jfail(&j, "tables", "required: an array of 1..200 tables");
        goto done;
    }
    sc->n_tables = json_array_size(tables);
    if (!(sc->tables = calloc(sc->n_tables, sizeof *sc->tables)) ||
        !(sc->order = calloc(sc->n_tables, sizeof *sc->order))) {
        pgsov_fail(err, "out of memory");
        goto done;
    }
    j.tables = sc->tables;
    for (size_t i = 0; i < sc->n_tables; i++)
        if (parse_table(&j, json_array_get(tables, i), i, sc->n_tables) < 0)
            goto done;
    /* load order: by depth, file order within a depth (parents always come first) */
    size_t k = 0;
    for (int d = 0; k < sc->n_tables; d++)
        for (size_t i = 0; i < sc->n_tables; i++)
            if (sc->tables[i].depth == d)
                sc->order[k++] = i;
    rc = 0;
done:
    json_decref(root);
    if (rc < 0)
        seed_scenario_free(sc);
    else
        *out = sc;
    return rc;
}

int seed_scenario_load(const char *path, struct seed_scenario **out, struct pgsov_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return pgsov_fail(err, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (size_t)16 << 20) {
                free(buf);
                fclose(f);
                return pgsov_fail(err, "%s: larger than 16 MB", path);
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return pgsov_fail(err, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return pgsov_fail(err, "%s: read error", path);
    }
    const char *base = strrchr(path, '/');
    int rc = seed_scenario_parse(buf, len, base ? base + 1 : path, out, err);
    free(buf);
    return rc;
}

void seed_scenario_free(struct seed_scenario *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->n_tables; i++) {
        struct seed_table *t = &sc->tables[i];
        for (size_t c = 0; c < t->n_cols; c++) {
            struct seed_column *col = &t->cols[c];
            free(col->name);
            free(col->values);
            free(col->cumulative);
            seed_expr_free(col->expr);
            seed_expr_free(col->base);
            seed_expr_free(col->principal);
            seed_expr_free(col->rate);
            seed_expr_free(col->term);
            seed_expr_free(col->installment);
            for (size_t d = 0; d < col->n_domains; d++)
                free(col->domains[d]);
            free(col->domains);
        }
        free(t->cols);
        free(t->emit);
        free(t->name);
        free(t->pp_values);
        free(t->pp_cumulative);
        seed_expr_free(t->pp_expr);
        seed_expr_free(t->where);
    }
    free(sc->tables);
    free(sc->order);
    free(sc->name);
    free(sc);
}

size_t seed_table_count(const struct seed_scenario *sc)
{
    return sc->n_tables;
}

const char *seed_table_name(const struct seed_scenario *sc, size_t t)
{
    return sc->tables[sc->order[t]].name;
}

size_t seed_column_count(const struct seed_scenario *sc, size_t t)
{
    return sc->tables[sc->order[t]].n_emit;
}

const char *seed_column_name(const struct seed_scenario *sc, size_t t, size_t c)
{
    const struct seed_table *tb = &sc->tables[sc->order[t]];
    return tb->cols[tb->emit[c]].name;
}

bool seed_column_is_sequence(const struct seed_scenario *sc, size_t t, size_t c)
{
    const struct seed_table *tb = &sc->tables[sc->order[t]];
    return tb->cols[tb->emit[c]].gen == G_SEQUENCE;
}

bool seed_sequence_max(const struct seed_scenario *sc, size_t t, size_t c, uint64_t rows,
                       int64_t *out)
{
    const struct seed_table *tb = &sc->tables[sc->order[t]];
    const struct seed_column *col = &tb->cols[tb->emit[c]];
    int64_t span;
    if (col->gen != G_SEQUENCE || col->null_ppm != 0 || rows == 0 || rows > INT64_MAX)
        return false;
    if (col->step <= 0) {
        *out = col->start;
        return true;
    }
    return !__builtin_mul_overflow((int64_t)(rows - 1), col->step, &span) &&
           !__builtin_add_overflow(col->start, span, out);
}

/* seed_expr.c — the scenario files' small expression language, compiled once and evaluated
 * per row. Deliberately small:
 *
 *   literals    12   0.0189   'approved'   true   false   null
 *   names       col (an earlier column of the same row), parent.col, parent.parent.col,
 *               reference_date, ordinal (1-based among the parent's children), row (1-based
 *               in the whole table)
 *   operators   + - * /  == != < <= > >=  and or not  ( )
 *   functions   min(a, b, ...) max(a, b, ...) round(x [, digits]) add_months(date, n)
 *               if(cond, then, else) date('YYYY-MM-DD')
 *
 * Numbers are fixed-point decimals (int64 mantissa, up to 8 digits after the point): + − × are
 * exact, ÷ keeps 8 digits. Dates are days: date ± n, date − date (days). NULL propagates
 * through arithmetic and is false as a condition. */
#include "seed_internal.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum node_kind {
    N_LIT, N_REF, N_REFDATE, N_ORDINAL, N_ROW,
    N_ADD, N_SUB, N_MUL, N_DIV, N_NEG,
    N_EQ, N_NE, N_LT, N_LE, N_GT, N_GE, N_AND, N_OR, N_NOT,
    N_MIN, N_MAX, N_ROUND, N_ADD_MONTHS, N_IF, N_DATE,
};

#define MAX_ARGS 8

struct seed_expr {
    enum node_kind kind;
    struct seed_value lit;          /* N_LIT                                                */
    int depth, col;                 /* N_REF: 0 = this row, 1 = parent, ...                 */
    struct seed_expr *arg[MAX_ARGS];
    int n_args;
};

/* ---- parser ------------------------------------------------------------------------------ */

/* Bounds on an expression's tree: its parse, evaluation and free recurse along it. */
#define SEED_EXPR_MAX_DEPTH 64
#define SEED_EXPR_MAX_NODES 2000

struct parser {
    const char *s, *p;
    const struct seed_table *tables;
    size_t ti, visible;
    struct pgsov_err *err;
    int failed;
    int depth;                  /* nested unary operators, parentheses and call arguments */
    int nodes;
};

__attribute__((format(printf, 2, 3)))
static int perr(struct parser *ps, const char *fmt, ...)
{
    if (!ps->failed) {
        char what[160];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof what, fmt, ap);
        va_end(ap);
        pgsov_fail(ps->err, "%s (at offset %d of \"%s\")", what, (int)(ps->p - ps->s), ps->s);
    }
    ps->failed = 1;
    return -1;
}

static void skip_ws(struct parser *ps)
{
    while (isspace((unsigned char)*ps->p))
        ps->p++;
}

static int accept(struct parser *ps, const char *tok)
{
    skip_ws(ps);
    size_t n = strlen(tok);
    if (strncmp(ps->p, tok, n) != 0)
        return 0;
    if (isalpha((unsigned char)tok[0]) && (isalnum((unsigned char)ps->p[n]) || ps->p[n] == '_'))
        return 0;
    ps->p += n;
    return 1;
}

static struct seed_expr *node(struct parser *ps, enum node_kind k)
{
    if (++ps->nodes > SEED_EXPR_MAX_NODES) {
        perr(ps, "expression longer than %d terms", SEED_EXPR_MAX_NODES);
        return NULL;
    }
    struct seed_expr *e = calloc(1, sizeof *e);
    if (!e) {
        perr(ps, "%s", "out of memory");
        return NULL;
    }
    e->kind = k;
    return e;
}

static struct seed_expr *binary(struct parser *ps, enum node_kind k, struct seed_expr *l,
                                struct seed_expr *r)
{
    if (!l || !r) {
        seed_expr_free(l);
        seed_expr_free(r);
        return NULL;
    }
    struct seed_expr *e = node(ps, k);
    if (!e) {
        seed_expr_free(l);
        seed_expr_free(r);
        return NULL;
    }
    e->arg[0] = l;
    e->arg[1] = r;
    e->n_args = 2;
    return e;
}

static struct seed_expr *parse_or(struct parser *ps);

static int find_column(const struct seed_table *t, size_t visible, const char *name)
{
    for (size_t i = 0; i < visible && i < t->n_cols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return (int)i;
    return -1;
}

static struct seed_expr *parse_name(struct parser *ps)
{
    char name[64];
    size_t n = 0;
    int depth = 0;
    size_t ti = ps->ti, visible = ps->visible;
    for (;;) {
        n = 0;
        while ((isalnum((unsigned char)*ps->p) || *ps->p == '_') && n + 1 < sizeof name)
            name[n++] = *ps->p++;
        name[n] = '\0';
        if (strcmp(name, "parent") == 0 && *ps->p == '.') {
            ps->p++;
            if (ps->tables[ti].parent < 0) {
                perr(ps, "table %s has no parent", ps->tables[ti].name);
                return NULL;
            }
            ti = (size_t)ps->tables[ti].parent;
            visible = ps->tables[ti].n_cols;
            depth++;
            continue;
        }
        break;
    }
    if (depth == 0) {
        static const struct { const char *name; enum node_kind kind; } builtins[] = {
            { "reference_date", N_REFDATE }, { "ordinal", N_ORDINAL }, { "row", N_ROW },
        };
        for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++)
            if (strcmp(name, builtins[i].name) == 0)
                return node(ps, builtins[i].kind);
        if (strcmp(name, "true") == 0 || strcmp(name, "false") == 0 || strcmp(name, "null") == 0) {
            struct seed_expr *e = node(ps, N_LIT);
            if (e) {
                e->lit.kind = name[0] == 'n' ? SV_NULL : SV_BOOL;
                e->lit.i = name[0] == 't';
            }
            return e;
        }
    }
    int col = find_column(&ps->tables[ti], visible, name);
    if (col < 0) {
        if (depth == 0)
            perr(ps, "unknown name \"%s\" (columns must be defined before they are used)", name);
        else
            perr(ps, "unknown column \"%s\" in the parent table", name);
        return NULL;
    }
    struct seed_expr *e = node(ps, N_REF);
    if (e) {
        e->depth = depth;
        e->col = col;
    }
    return e;
}

static struct seed_expr *parse_call(struct parser *ps, enum node_kind k, int min_args,
                                    int max_args, const char *fname)
{
    struct seed_expr *e = node(ps, k);
    if (!e)
        return NULL;
    if (!accept(ps, ")")) {
        do {
            if (e->n_args == MAX_ARGS || e->n_args == max_args) {
                perr(ps, "too many arguments to %s()", fname);
                seed_expr_free(e);
                return NULL;
            }
            struct seed_expr *a = parse_or(ps);
            if (!a) {
                seed_expr_free(e);
                return NULL;
            }
            e->arg[e->n_args++] = a;
        } while (accept(ps, ","));
        if (!accept(ps, ")")) {
            perr(ps, "expected ')' to close %s(", fname);
            seed_expr_free(e);
            return NULL;
        }
    }
    if (e->n_args < min_args) {
        perr(ps, "too few arguments to %s()", fname);
        seed_expr_free(e);
        return NULL;
    }
    return e;
}

static struct seed_expr *parse_primary(struct parser *ps)
{
    skip_ws(ps);
    const char *p = ps->p;
    if (accept(ps, "(")) {
        struct seed_expr *e = parse_or(ps);
        if (e && !accept(ps, ")")) {
            seed_expr_free(e);
            perr(ps, "%s", "expected ')'");
            return NULL;
        }
        return e;
    }
    if (isdigit((unsigned char)*p)) {
        int64_t m = 0;
        int scale = 0, frac = 0;
        for (; isdigit((unsigned char)*ps->p) || (*ps->p == '.' && !frac); ps->p++) {
            if (*ps->p == '.') {
                frac = 1;
                continue;
            }
            if (m > (INT64_MAX - 9) / 10 || scale >= SEED_MAX_SCALE) {
                perr(ps, "%s", "number too long");
                return NULL;
            }
            m = m * 10 + (*ps->p - '0');
            scale += frac;
        }
        struct seed_expr *e = node(ps, N_LIT);
        if (e) {
            e->lit.kind = SV_NUM;
            e->lit.i = m;
            e->lit.scale = scale;
        }
        return e;
    }
    if (*p == '\'') {
        struct seed_expr *e = node(ps, N_LIT);
        if (!e)
            return NULL;
        e->lit.kind = SV_TEXT;
        size_t n = 0;
        ps->p++;
        while (*ps->p && *ps->p != '\'') {
            if (n + 1 >= SEED_TEXT_MAX) {
                seed_expr_free(e);
                perr(ps, "%s", "string literal too long");
                return NULL;
            }
            e->lit.text[n++] = *ps->p++;
        }
        if (*ps->p != '\'') {
            seed_expr_free(e);
            perr(ps, "%s", "unterminated string literal");
            return NULL;
        }
        ps->p++;
        return e;
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        static const struct { const char *name; enum node_kind kind; int min, max; } fns[] = {
            { "min", N_MIN, 1, MAX_ARGS }, { "max", N_MAX, 1, MAX_ARGS },
            { "round", N_ROUND, 1, 2 }, { "add_months", N_ADD_MONTHS, 2, 2 },
            { "if", N_IF, 3, 3 }, { "date", N_DATE, 1, 1 },
        };
        const char *q = p;
        while (isalnum((unsigned char)*q) || *q == '_')
            q++;
        const char *after = q;
        while (isspace((unsigned char)*after))
            after++;
        if (*after == '(') {
            for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
                if (strlen(fns[i].name) == (size_t)(q - p) && strncmp(p, fns[i].name, (size_t)(q - p)) == 0) {
                    ps->p = after + 1;
                    return parse_call(ps, fns[i].kind, fns[i].min, fns[i].max, fns[i].name);
                }
            char fname[64];
            snprintf(fname, sizeof fname, "%.*s", (int)(q - p), p);
            perr(ps, "unknown function %s()", fname);
            return NULL;
        }
        return parse_name(ps);
    }
    perr(ps, "%s", *p ? "unexpected character" : "unexpected end of expression");
    return NULL;
}

static struct seed_expr *parse_unary_at(struct parser *ps);

/* Every level of nesting passes here (a '(' or a call argument reparses from parse_or). */
static struct seed_expr *parse_unary(struct parser *ps)
{
    if (ps->depth >= SEED_EXPR_MAX_DEPTH) {
        perr(ps, "expression nested more than %d deep", SEED_EXPR_MAX_DEPTH);
        return NULL;
    }
    ps->depth++;
    struct seed_expr *e = parse_unary_at(ps);
    ps->depth--;
    return e;
}

static struct seed_expr *parse_unary_at(struct parser *ps)
{
    if (accept(ps, "-")) {
        struct seed_expr *a = parse_unary(ps), *e;
        if (!a)
            return NULL;
        if (!(e = node(ps, N_NEG))) {
            seed_expr_free(a);
            return NULL;
        }
        e->arg[0] = a;
        e->n_args = 1;
        return e;
    }
    if (accept(ps, "not")) {
        struct seed_expr *a = parse_unary(ps), *e;
        if (!a)
            return NULL;
        if (!(e = node(ps, N_NOT))) {
            seed_expr_free(a);
            return NULL;
        }
        e->arg[0] = a;
        e->n_args = 1;
        return e;
    }
    return parse_primary(ps);
}

static struct seed_expr *parse_mul(struct parser *ps)
{
    struct seed_expr *l = parse_unary(ps);
    while (l) {
        if (accept(ps, "*"))
            l = binary(ps, N_MUL, l, parse_unary(ps));
        else if (accept(ps, "/"))
            l = binary(ps, N_DIV, l, parse_unary(ps));
        else
            break;
    }
    return l;
}

static struct seed_expr *parse_add(struct parser *ps)
{
    struct seed_expr *l = parse_mul(ps);
    while (l) {
        if (accept(ps, "+"))
            l = binary(ps, N_ADD, l, parse_mul(ps));
        else if (accept(ps, "-"))
            l = binary(ps, N_SUB, l, parse_mul(ps));
        else
            break;
    }
    return l;
}

static struct seed_expr *parse_cmp(struct parser *ps)
{
    static const struct { const char *tok; enum node_kind kind; } ops[] = {
        { "==", N_EQ }, { "!=", N_NE }, { "<=", N_LE }, { ">=", N_GE }, { "<", N_LT }, { ">", N_GT },
    };
    struct seed_expr *l = parse_add(ps);
    if (!l)
        return NULL;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (accept(ps, ops[i].tok))
            return binary(ps, ops[i].kind, l, parse_add(ps));
    return l;
}

static struct seed_expr *parse_and(struct parser *ps)
{
    struct seed_expr *l = parse_cmp(ps);
    while (l && accept(ps, "and"))
        l = binary(ps, N_AND, l, parse_cmp(ps));
    return l;
}

static struct seed_expr *parse_or(struct parser *ps)
{
    struct seed_expr *l = parse_and(ps);
    while (l && accept(ps, "or"))
        l = binary(ps, N_OR, l, parse_and(ps));
    return l;
}

int seed_expr_compile(const char *text, const struct seed_table *tables, size_t ti,
                      size_t visible, struct seed_expr **out, struct pgsov_err *err)
{
    struct parser ps = { .s = text, .p = text, .tables = tables, .ti = ti, .visible = visible,
                         .err = err };
    *out = NULL;
    struct seed_expr *e = parse_or(&ps);
    if (!e)
        return -1;
    skip_ws(&ps);
    if (*ps.p) {
        perr(&ps, "%s", "unexpected text after the expression");
        seed_expr_free(e);
        return -1;
    }
    *out = e;
    return 0;
}

void seed_expr_free(struct seed_expr *e)
{
    if (!e)
        return;
    for (int i = 0; i < e->n_args; i++)
        seed_expr_free(e->arg[i]);
    free(e);
}

void seed_expr_refs(const struct seed_expr *e, seed_ref_fn fn, void *ctx)
{
    if (!e)
        return;
    if (e->kind == N_REF)
        fn(ctx, e->depth, e->col);
    for (int i = 0; i < e->n_args; i++)
        seed_expr_refs(e->arg[i], fn, ctx);
}

/* ---- evaluation ----------------------------------------------------------------------------- */

static void set_num(struct seed_value *v, int64_t m, int scale)
{
    v->kind = SV_NUM;
    v->i = m;
    v->scale = scale;
    v->aux = 0;
    v->text[0] = '\0';
}

static void set_date(struct seed_value *v, int64_t days)
{
    v->kind = SV_DATE;
    v->i = days;
    v->scale = 0;
    v->aux = 0;
    v->text[0] = '\0';
}

static void set_bool(struct seed_value *v, bool b)
{
    v->kind = SV_BOOL;
    v->i = b;
    v->scale = 0;
    v->aux = 0;
    v->text[0] = '\0';
}

static const char *kind_name(enum seed_kind k)
{
    switch (k) {
    case SV_NULL: return "null";
    case SV_NUM: return "number";
    case SV_DATE: return "date";
    case SV_TEXT: return "text";
    case SV_BOOL: return "boolean";
    }
    return "?";
}

static int align(const struct seed_value *a, const struct seed_value *b, int64_t *x, int64_t *y,
                 int *scale, struct pgsov_err *err)
{
    int s = a->scale > b->scale ? a->scale : b->scale;
    if (__builtin_mul_overflow(a->i, seed_pow10[s - a->scale], x) ||
        __builtin_mul_overflow(b->i, seed_pow10[s - b->scale], y))
        return pgsov_fail(err, "numeric overflow");
    *scale = s;
    return 0;
}

/* Integral day count from a number (rounded). */
static int64_t as_days(const struct seed_value *v)
{
    return seed_rescale(v->i, v->scale, 0);
}

static int compare(const struct seed_value *a, const struct seed_value *b, int *out,
                   struct pgsov_err *err)
{
    if (a->kind == SV_NUM && b->kind == SV_NUM) {
        int64_t x = 0, y = 0;
        int s = 0;
        if (align(a, b, &x, &y, &s, err) < 0)
            return -1;
        *out = x < y ? -1 : x > y;
        return 0;
    }
    if (a->kind != b->kind)
        return pgsov_fail(err, "cannot compare %s with %s", kind_name(a->kind), kind_name(b->kind));
    if (a->kind == SV_TEXT) {
        int c = strcmp(a->text, b->text);
        *out = c < 0 ? -1 : c > 0;
    } else {
        *out = a->i < b->i ? -1 : a->i > b->i;
    }
    return 0;
}

int seed_value_truth(const struct seed_value *v, bool *out)
{
    if (v->kind == SV_NULL) {
        *out = false;
        return 0;
    }
    if (v->kind != SV_BOOL)
        return -1;
    *out = v->i != 0;
    return 0;
}

static int eval(const struct seed_expr *e, const struct seed_frame *f, int32_t ref,
                struct seed_value *out, struct pgsov_err *err);

static int arith(enum node_kind k, const struct seed_value *a, const struct seed_value *b,
                 struct seed_value *out, struct pgsov_err *err)
{
    if (a->kind == SV_NULL || b->kind == SV_NULL) {
        out->kind = SV_NULL;
        return 0;
    }
    if (a->kind == SV_DATE || b->kind == SV_DATE) {
        int64_t day;
        if (k == N_ADD && a->kind == SV_DATE && b->kind == SV_NUM)
            day = a->i + as_days(b);
        else if (k == N_ADD && a->kind == SV_NUM && b->kind == SV_DATE)
            day = b->i + as_days(a);
        else if (k == N_SUB && a->kind == SV_DATE && b->kind == SV_NUM)
            day = a->i - as_days(b);
        else if (k == N_SUB && a->kind == SV_DATE && b->kind == SV_DATE) {
            set_num(out, a->i - b->i, 0);
            return 0;
        } else
            return pgsov_fail(err, "cannot combine %s and %s with that operator",
                              kind_name(a->kind), kind_name(b->kind));
        /* a day count beyond years 1..9999 is an error, not a wrapped year (the operands are
         * bounded days and a days count far below INT64_MAX, so the sum itself cannot wrap) */
        if (day < SEED_DAY_MIN || day > SEED_DAY_MAX)
            return pgsov_fail(err, "date arithmetic leaves years 1..9999");
        set_date(out, day);
        return 0;
    }
    if (a->kind != SV_NUM || b->kind != SV_NUM)
        return pgsov_fail(err, "arithmetic on %s and %s", kind_name(a->kind), kind_name(b->kind));
    int64_t x = 0, y = 0, r;
    int s = 0;
    switch (k) {
    case N_ADD:
    case N_SUB:
        if (align(a, b, &x, &y, &s, err) < 0)
            return -1;
        if (k == N_ADD ? __builtin_add_overflow(x, y, &r) : __builtin_sub_overflow(x, y, &r))
            return pgsov_fail(err, "numeric overflow");
        set_num(out, r, s);
        return 0;
    case N_MUL: {
        __int128 p = (__int128)a->i * b->i;
        s = a->scale + b->scale;
        if (s > SEED_MAX_SCALE) {
            __int128 d = seed_pow10[s - SEED_MAX_SCALE];
            p = p >= 0 ? (p + d / 2) / d : -((-p + d / 2) / d);
            s = SEED_MAX_SCALE;
        }
        if (p > INT64_MAX || p < INT64_MIN)
            return pgsov_fail(err, "numeric overflow");
        set_num(out, (int64_t)p, s);
        return 0;
    }
    case N_DIV: {
        if (b->i == 0)
            return pgsov_fail(err, "division by zero");
        s = SEED_MAX_SCALE;
        __int128 num = (__int128)a->i * seed_pow10[s + b->scale - a->scale], den = b->i;
        if (den < 0) {
            num = -num;
            den = -den;
        }
        __int128 q = num >= 0 ? (num + den / 2) / den : -((-num + den / 2) / den);
        if (q > INT64_MAX || q < INT64_MIN)
            return pgsov_fail(err, "numeric overflow");
        set_num(out, (int64_t)q, s);
        return 0;
    }
    default:
        return pgsov_fail(err, "internal: bad arithmetic node");
    }
}

static int eval(const struct seed_expr *e, const struct seed_frame *f, int32_t ref,
                struct seed_value *out, struct pgsov_err *err)
{
    struct seed_value a, b;
    switch (e->kind) {
    case N_LIT:
        seed_value_copy(out, &e->lit);
        return 0;
    case N_REF: {
        const struct seed_frame *g = f;
        for (int d = 0; d < e->depth; d++)
            g = g->parent;
        seed_value_copy(out, &g->vals[e->col]);
        return 0;
    }
    case N_REFDATE:
        set_date(out, ref);
        return 0;
    case N_ORDINAL:
        set_num(out, f->ordinal, 0);
        return 0;
    case N_ROW:
        set_num(out, f->row, 0);
        return 0;
    case N_ADD: case N_SUB: case N_MUL: case N_DIV:
        if (eval(e->arg[0], f, ref, &a, err) < 0 || eval(e->arg[1], f, ref, &b, err) < 0)
            return -1;
        return arith(e->kind, &a, &b, out, err);
    case N_NEG:
        if (eval(e->arg[0], f, ref, &a, err) < 0)
            return -1;
        if (a.kind == SV_NULL) {
            out->kind = SV_NULL;
            return 0;
        }
        if (a.kind != SV_NUM)
            return pgsov_fail(err, "cannot negate a %s", kind_name(a.kind));
        if (a.i == INT64_MIN)
            return pgsov_fail(err, "numeric overflow");
        set_num(out, -a.i, a.scale);
        return 0;
    case N_EQ: case N_NE: case N_LT: case N_LE: case N_GT: case N_GE: {
        if (eval(e->arg[0], f, ref, &a, err) < 0 || eval(e->arg[1], f, ref, &b, err) < 0)
            return -1;
        if (a.kind == SV_NULL || b.kind == SV_NULL) {
            out->kind = SV_NULL;
            return 0;
        }
        int c;
        if (compare(&a, &b, &c, err) < 0)
            return -1;
        bool r = e->kind == N_EQ ? c == 0 : e->kind == N_NE ? c != 0 : e->kind == N_LT ? c < 0
               : e->kind == N_LE ? c <= 0 : e->kind == N_GT ? c > 0 : c >= 0;
        set_bool(out, r);
        return 0;
    }
    case N_AND: case N_OR: case N_NOT: {
        bool x = false, y = false;
        if (eval(e->arg[0], f, ref, &a, err) < 0)
            return -1;
        if (seed_value_truth(&a, &x) < 0)
            return pgsov_fail(err, "expected a condition, got a %s", kind_name(a.kind));
        if (e->kind == N_NOT) {
            set_bool(out, !x);
            return 0;
        }
        if ((e->kind == N_AND && !x) || (e->kind == N_OR && x)) {
            set_bool(out, x);
            return 0;
        }
        if (eval(e->arg[1], f, ref, &b, err) < 0)
            return -1;
        if (seed_value_truth(&b, &y) < 0)
            return pgsov_fail(err, "expected a condition, got a %s", kind_name(b.kind));
        set_bool(out, y);
        return 0;
    }
    case N_MIN: case N_MAX:
        if (eval(e->arg[0], f, ref, out, err) < 0)
            return -1;
        for (int i = 1; i < e->n_args; i++) {
            if (eval(e->arg[i], f, ref, &a, err) < 0)
                return -1;
            if (a.kind == SV_NULL || out->kind == SV_NULL) {
                out->kind = SV_NULL;
                continue;
            }
            int c;
            if (compare(out, &a, &c, err) < 0)
                return -1;
            if (e->kind == N_MIN ? c > 0 : c < 0)
                seed_value_copy(out, &a);
        }
        return 0;
    case N_ROUND: {
        int64_t digits = 0;
        if (eval(e->arg[0], f, ref, &a, err) < 0)
            return -1;
        if (e->n_args > 1) {
            if (eval(e->arg[1], f, ref, &b, err) < 0)
                return -1;
            if (b.kind != SV_NUM || b.scale != 0 || b.i < 0 || b.i > SEED_MAX_SCALE)
                return pgsov_fail(err, "round(): digits must be an integer 0..%d", SEED_MAX_SCALE);
            digits = b.i;
        }
        if (a.kind == SV_NULL) {
            out->kind = SV_NULL;
            return 0;
        }
        if (a.kind != SV_NUM)
            return pgsov_fail(err, "round() of a %s", kind_name(a.kind));
        int64_t m;
        if (digits > a.scale) {
            if (__builtin_mul_overflow(a.i, seed_pow10[digits - a.scale], &m))
                return pgsov_fail(err, "numeric overflow");
        } else {
            m = seed_rescale(a.i, a.scale, (int)digits);
        }
        set_num(out, m, (int)digits);
        return 0;
    }
    case N_ADD_MONTHS:
        if (eval(e->arg[0], f, ref, &a, err) < 0 || eval(e->arg[1], f, ref, &b, err) < 0)
            return -1;
        if (a.kind == SV_NULL || b.kind == SV_NULL) {
            out->kind = SV_NULL;
            return 0;
        }
        if (a.kind != SV_DATE || b.kind != SV_NUM || as_days(&b) > 12000 || as_days(&b) < -12000)
            return pgsov_fail(err, "add_months(date, months) takes a date and a small number");
        set_date(out, seed_add_months((int32_t)a.i, (int)as_days(&b)));
        return 0;
    case N_IF: {
        bool c;
        if (eval(e->arg[0], f, ref, &a, err) < 0)
            return -1;
        if (seed_value_truth(&a, &c) < 0)
            return pgsov_fail(err, "if(): expected a condition, got a %s", kind_name(a.kind));
        return eval(e->arg[c ? 1 : 2], f, ref, out, err);
    }
    case N_DATE: {
        int32_t d;
        if (eval(e->arg[0], f, ref, &a, err) < 0)
            return -1;
        if (a.kind != SV_TEXT)
            return pgsov_fail(err, "date() takes a 'YYYY-MM-DD' string");
        if (seed_date_parse(a.text, &d, err) < 0)
            return -1;
        set_date(out, d);
        return 0;
    }
    }
    return pgsov_fail(err, "internal: bad expression node");
}

int seed_expr_eval(const struct seed_expr *e, const struct seed_frame *f, int32_t reference_date,
                   struct seed_value *out, struct pgsov_err *err)
{
    return eval(e, f, reference_date, out, err);
}

/* Decimal digits of v into buf (no terminator); returns the count. */
static size_t put_u64(char *buf, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static void put_2(char *buf, int v)
{
    buf[0] = (char)('0' + v / 10 % 10);
    buf[1] = (char)('0' + v % 10);
}

size_t seed_value_format(const struct seed_value *v, char *buf, size_t size)
{
    /* hand-rolled: this runs once per field of every row, and snprintf dominated */
    char tmp[48];
    size_t n = 0;
    const char *src = tmp;
    switch (v->kind) {
    case SV_NULL:
        break;
    case SV_NUM: {
        uint64_t mag = v->i < 0 ? (uint64_t)0 - (uint64_t)v->i : (uint64_t)v->i;
        if (v->i < 0)
            tmp[n++] = '-';
        if (v->scale <= 0) {
            n += put_u64(tmp + n, mag);
        } else {
            uint64_t p = (uint64_t)seed_pow10[v->scale], frac = mag % p;
            n += put_u64(tmp + n, mag / p);
            tmp[n++] = '.';
            for (int k = v->scale - 1; k >= 0; k--) {
                tmp[n + (size_t)k] = (char)('0' + frac % 10);
                frac /= 10;
            }
            n += (size_t)v->scale;
        }
        break;
    }
    case SV_DATE: {
        int y, m, d;
        seed_civil_from_days((int32_t)v->i, &y, &m, &d);
        if (y < 0 || y > 9999) {
            n = (size_t)snprintf(tmp, sizeof tmp, "%d-%02d-%02d", y, m, d);
            break;
        }
        put_2(tmp, y / 100);
        put_2(tmp + 2, y % 100);
        tmp[4] = '-';
        put_2(tmp + 5, m);
        tmp[7] = '-';
        put_2(tmp + 8, d);
        n = 10;
        break;
    }
    case SV_TEXT:
        src = v->text;
        n = strlen(v->text);
        break;
    case SV_BOOL:
        src = v->i ? "true" : "false";
        n = strlen(src);
        break;
    }
    if (size == 0)
        return 0;
    if (n >= size)
        n = size - 1;
    memcpy(buf, src, n);
    buf[n] = '\0';
    return n;
}

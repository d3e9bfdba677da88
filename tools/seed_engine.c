/* seed_engine.c — turns a parsed scenario into rows, one table at a time, streaming.
 *
 * A table's rows come from walking its ancestor chain: every root row, then each root row's
 * children, and so on down to the table asked for. Ancestor rows are regenerated from their
 * position (their row keys), never stored, so memory is one row per level whatever the row
 * count. Every column draws from its own stream: key = SHA-256(seed, table, column), substream
 * = the row key; the number of children of a row draws from (table, "#count"). That is what
 * makes values survive edits to unrelated columns and tables.
 *
 * Also here: the generators themselves and CSV / COPY text encoding. */
#include "seed_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct col_state {
    struct seed_key key, null_key;
    uint64_t perm_a, perm_b;            /* unique documents: x → (a·x + b) mod space         */
    struct seed_installment *schedule;  /* amortization: the current contract's schedule   */
    int64_t s_principal, s_rate;
    int s_rate_scale, s_term;
    bool s_valid;
};

struct level {
    const struct seed_table *table;
    size_t table_index;
    struct seed_key count_key;
    struct col_state *cols;
    struct seed_value *vals;
    bool *needed;           /* columns this walk reads (all of them at the emitted level)   */
    int64_t counter;
};

struct walk {
    const struct seed_scenario *sc;
    const struct seed_run *run;
    struct level levels[64];
    int n_levels;
    seed_line_fn fn;
    void *ctx;
    char *line;
    size_t line_cap;
    uint64_t rows;
    struct pgsov_err *err;
    int64_t day_min, day_max;           /* 0001-01-01 and 9999-12-31: dates COPY binary sends */
};

/* ---- generators ------------------------------------------------------------------------------ */

static void set_text(struct seed_value *v, const char *s)
{
    v->kind = SV_TEXT;
    v->aux = 0;
    pgsov_strlcpy(v->text, s, sizeof v->text);
}

static void set_num(struct seed_value *v, int64_t m, int scale)
{
    v->kind = SV_NUM;
    v->i = m;
    v->scale = scale;
    v->aux = 0;
}

static size_t pick_weighted(struct seed_rng *r, const uint64_t *cum, size_t n)
{
    uint64_t x = seed_rng_below(r, cum[n - 1]);
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {               /* first index with cum > x */
        size_t mid = (lo + hi) / 2;
        if (cum[mid] > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* A draw from the column's distribution, as a mantissa at the column's scale, clamped to
 * [min, max]. Uniform draws are integer; normal/lognormal go through a double once. */
static int64_t draw_number(const struct seed_column *c, struct seed_rng *r, int scale)
{
    if (c->dist == D_UNIFORM)
        return seed_rng_range(r, c->min, c->max);
    double x = c->dist == D_NORMAL ? c->mean + c->sd * seed_rng_normal(r)
                                   : c->median * seed_exp(c->sigma * seed_rng_normal(r));
    int64_t m;
    if (seed_double_to_fixed(x, scale, &m) < 0)
        m = x > 0 ? c->max : c->min;
    return m < c->min ? c->min : m > c->max ? c->max : m;
}

static const struct seed_city *city_of(const struct seed_value *vals, int source,
                                       struct seed_rng *r)
{
    if (source >= 0 && vals[source].kind == SV_TEXT && vals[source].aux > 0 &&
        (size_t)vals[source].aux <= seed_n_cities)
        return &seed_cities[vals[source].aux - 1];
    if (source >= 0 && vals[source].kind == SV_TEXT)
        for (size_t i = 0; i < seed_n_cities; i++)
            if (strcmp(seed_cities[i].name, vals[source].text) == 0)
                return &seed_cities[i];
    return &seed_cities[seed_rng_below(r, seed_n_cities)];
}

static uint64_t permute(const struct col_state *cs, int64_t row, uint64_t space)
{
    /* an affine bijection of [0, space): distinct rows get distinct values */
    unsigned __int128 x = (unsigned __int128)cs->perm_a * (uint64_t)(row - 1) + cs->perm_b;
    return (uint64_t)(x % space);
}

static uint64_t gcd_u64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t coprime_multiplier(uint64_t seed, uint64_t space)
{
    /* a multiplier coprime with space makes x → a·x + b a bijection of [0, space) */
    uint64_t a = (seed % (space - 1)) + 1;
    while (gcd_u64(a, space) != 1)
        a = a % (space - 1) + 1;
    return a;
}

static int gen_amortization(struct walk *w, const struct seed_column *c, struct col_state *cs,
                            const struct seed_frame *f, struct seed_value *out)
{
    int32_t ref = w->sc->reference_date;
    struct seed_value p, r, n, k;
    if (seed_expr_eval(c->principal, f, ref, &p, w->err) < 0 ||
        seed_expr_eval(c->rate, f, ref, &r, w->err) < 0 ||
        seed_expr_eval(c->term, f, ref, &n, w->err) < 0 ||
        seed_expr_eval(c->installment, f, ref, &k, w->err) < 0)
        return -1;
    if (p.kind != SV_NUM || r.kind != SV_NUM || n.kind != SV_NUM || k.kind != SV_NUM)
        return pgsov_fail(w->err, "amortization: principal, rate, term and installment must be numbers");
    int64_t cents = seed_rescale(p.i, p.scale, 2), term = seed_rescale(n.i, n.scale, 0),
            num = seed_rescale(k.i, k.scale, 0);
    if (term < 1 || term > SEED_MAX_TERM)
        return pgsov_fail(w->err, "amortization: term %lld outside 1..%d", (long long)term, SEED_MAX_TERM);
    if (!cs->schedule && !(cs->schedule = calloc(SEED_MAX_TERM, sizeof *cs->schedule)))
        return pgsov_fail(w->err, "out of memory");
    if (!cs->s_valid || cs->s_principal != cents || cs->s_rate != r.i ||
        cs->s_rate_scale != r.scale || cs->s_term != term) {
        if (seed_amortize(cents, r.i, r.scale, (int)term, cs->schedule, w->err) < 0)
            return -1;
        cs->s_valid = true;
        cs->s_principal = cents;
        cs->s_rate = r.i;
        cs->s_rate_scale = r.scale;
        cs->s_term = (int)term;
    }
    const struct seed_installment *s = cs->schedule;
    int64_t v = 0;
    switch (c->field) {
    case AF_TOTAL:
    case AF_TOTAL_INTEREST:
        for (int64_t i = 0; i < term; i++)
            v += c->field == AF_TOTAL ? s[i].amount : s[i].interest;
        break;
    case AF_PMT:
        v = s[0].amount;
        break;
    default:
        if (num < 1 || num > term)
            return pgsov_fail(w->err, "amortization: installment %lld outside 1..%lld",
                              (long long)num, (long long)term);
        v = c->field == AF_AMOUNT ? s[num - 1].amount
          : c->field == AF_PRINCIPAL ? s[num - 1].principal
          : c->field == AF_INTEREST ? s[num - 1].interest : s[num - 1].balance_after;
    }
    set_num(out, v, 2);
    return 0;
}

static int gen_column(struct walk *w, struct level *lv, size_t ci, const struct seed_frame *f)
{
    const struct seed_column *c = &lv->table->cols[ci];
    struct col_state *cs = &lv->cols[ci];
    struct seed_value *out = &lv->vals[ci];
    struct seed_rng r;
    int32_t ref = w->sc->reference_date;
    char buf[SEED_TEXT_MAX];

    out->kind = SV_NULL;
    out->aux = 0;
    out->scale = 0;
    if (c->null_ppm) {
        struct seed_rng nr;
        seed_rng_init(&nr, &cs->null_key, f->rowkey);
        if ((int64_t)seed_rng_below(&nr, 1000000) < c->null_ppm)
            return 0;
    }
    /* generators that draw nothing skip the stream set-up (a tenth of the run time) */
    if (c->gen != G_SEQUENCE && c->gen != G_EXPR && c->gen != G_CONST && c->gen != G_AMORTIZATION)
        seed_rng_init(&r, &cs->key, f->rowkey);
    else
        memset(&r, 0, sizeof r);

    switch (c->gen) {
    case G_SEQUENCE:
        set_num(out, c->start + (f->row - 1) * c->step, 0);
        return 0;
    case G_UUID: {
        uint64_t hi = seed_rng_next(&r), lo = seed_rng_next(&r);
        hi = (hi & ~0xF000ULL) | 0x4000ULL;                     /* version 4 */
        lo = (lo & 0x3FFFFFFFFFFFFFFFULL) | 0x8000000000000000ULL; /* RFC 4122 variant */
        snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
                 (unsigned long long)(hi >> 32), (unsigned long long)((hi >> 16) & 0xFFFF),
                 (unsigned long long)(hi & 0xFFFF), (unsigned long long)(lo >> 48),
                 (unsigned long long)(lo & 0xFFFFFFFFFFFFULL));
        set_text(out, buf);
        return 0;
    }
    case G_INT:
        set_num(out, draw_number(c, &r, 0), 0);
        return 0;
    case G_NUMBER:
        set_num(out, draw_number(c, &r, c->scale), c->scale);
        return 0;
    case G_ENUM:
        seed_value_copy(out, &c->values[pick_weighted(&r, c->cumulative, c->n_values)]);
        return 0;
    case G_CONST:
        seed_value_copy(out, &c->constant);
        return 0;
    case G_DATE:
    case G_TIMESTAMP: {
        struct seed_value a, b;
        if (seed_expr_eval(c->base, f, ref, &a, w->err) < 0 ||
            seed_expr_eval(c->expr, f, ref, &b, w->err) < 0)
            return -1;
        if (a.kind == SV_NULL || b.kind == SV_NULL)
            return 0;
        if (a.kind != SV_DATE || b.kind != SV_DATE)
            return pgsov_fail(w->err, "\"from\" and \"to\" must be dates");
        int64_t d = a.i <= b.i ? seed_rng_range(&r, a.i, b.i) : b.i;
        if (c->gen == G_DATE) {
            out->kind = SV_DATE;
            out->i = d;
            return 0;
        }
        int64_t sec = seed_rng_range(&r, c->min * 3600, c->max * 3600 - 1);
        /* an explicit offset: the same text means the same instant on every server */
        struct seed_value day = { .kind = SV_DATE, .i = d };
        size_t n = seed_value_format(&day, buf, sizeof buf);
        const int parts[3] = { (int)(sec / 3600), (int)(sec / 60 % 60), (int)(sec % 60) };
        for (int k = 0; k < 3; k++) {
            buf[n++] = k ? ':' : ' ';
            buf[n++] = (char)('0' + parts[k] / 10);
            buf[n++] = (char)('0' + parts[k] % 10);
        }
        memcpy(buf + n, "-03", 4);
        set_text(out, buf);
        out->aux = SEED_AUX_INSTANT;
        out->i = d * 86400 + sec - SEED_TS_OFFSET_SECONDS;
        return 0;
    }
    case G_EXPR:
        if (seed_expr_eval(c->expr, f, ref, out, w->err) < 0)
            return -1;
        if (c->scale >= 0 && out->kind == SV_NUM) {
            if (c->scale >= out->scale) {
                if (__builtin_mul_overflow(out->i, seed_pow10[c->scale - out->scale], &out->i))
                    return pgsov_fail(w->err, "%s.%s: numeric overflow at scale %d",
                                      lv->table->name, c->name, c->scale);
            } else
                out->i = seed_rescale(out->i, out->scale, c->scale);
            out->scale = c->scale;
        }
        return 0;
    case G_FIRST_NAME:
        set_text(out, seed_first_names[seed_rng_below(&r, seed_n_first_names)]);
        return 0;
    case G_LAST_NAME:
        set_text(out, seed_surnames[seed_rng_below(&r, seed_n_surnames)]);
        return 0;
    case G_NAME: {
        const char *first = seed_first_names[seed_rng_below(&r, seed_n_first_names)];
        const char *s1 = seed_surnames[seed_rng_below(&r, seed_n_surnames)];
        const char *s2 = seed_surnames[seed_rng_below(&r, seed_n_surnames)];
        if (seed_rng_below(&r, 100) < 65 && strcmp(s1, s2) != 0)
            snprintf(buf, sizeof buf, "%s %s %s", first, s1, s2);
        else
            snprintf(buf, sizeof buf, "%s %s", first, s2);
        set_text(out, buf);
        return 0;
    }
    case G_COMPANY: {
        static const char *const kinds[] = { "Ltda", "S.A.", "ME", "EIRELI" };
        snprintf(buf, sizeof buf, "%s %s %s",
                 seed_surnames[seed_rng_below(&r, seed_n_surnames)],
                 seed_company_words[seed_rng_below(&r, seed_n_company_words)],
                 kinds[seed_rng_below(&r, 4)]);
        set_text(out, buf);
        return 0;
    }
    case G_CPF: {
        char base[10], cpf[12];
        /* the x-th base that is not a repeated digit (111111111 and the like are
         * arithmetically valid but rejected by every real validator) */
        uint64_t x = permute(cs, f->row, 1000000000ULL - 10);
        snprintf(base, sizeof base, "%09llu",
                 (unsigned long long)((x / 111111110) * 111111111 + 1 + x % 111111110));
        seed_cpf_complete(base, cpf);
        if (c->masked)
            snprintf(buf, sizeof buf, "%.3s.%.3s.%.3s-%.2s", cpf, cpf + 3, cpf + 6, cpf + 9);
        else
            snprintf(buf, sizeof buf, "%s", cpf);
        set_text(out, buf);
        return 0;
    }
    case G_CNPJ: {
        char base[13], cnpj[15];
        static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
        if (c->alphanumeric) {
            uint64_t x = permute(cs, f->row, 2821109907456ULL);  /* 36^8 roots */
            for (int i = 7; i >= 0; i--) {
                base[i] = alnum[x % 36];
                x /= 36;
            }
            for (int i = 8; i < 12; i++)
                base[i] = alnum[seed_rng_below(&r, 36)];
            if (memcmp(base + 8, "0000", 4) == 0)
                base[11] = '1';                             /* branch 0000 does not exist */
        } else {
            snprintf(base, sizeof base, "%08llu%04d",
                     (unsigned long long)permute(cs, f->row, 100000000ULL),
                     seed_rng_below(&r, 10) < 8 ? 1 : (int)seed_rng_range(&r, 2, 40));
        }
        if (seed_cnpj_complete(base, cnpj) < 0)
            return pgsov_fail(w->err, "internal: bad CNPJ base");
        if (c->masked)
            snprintf(buf, sizeof buf, "%.2s.%.3s.%.3s/%.4s-%.2s", cnpj, cnpj + 2, cnpj + 5,
                     cnpj + 8, cnpj + 12);
        else
            snprintf(buf, sizeof buf, "%s", cnpj);
        set_text(out, buf);
        return 0;
    }
    case G_RG: {
        /* SP-style: 8 digits and a mod-11 check character (10 → X) */
        char d[9];
        snprintf(d, sizeof d, "%08llu", (unsigned long long)seed_rng_range(&r, 10000000, 69999999));
        int sum = 0;
        for (int i = 0; i < 8; i++)
            sum += (d[i] - '0') * (i + 2);
        int dv = 11 - sum % 11;                 /* 10 → X, 11 → 0 */
        char check = dv == 10 ? 'X' : dv == 11 ? '0' : (char)('0' + dv);
        if (c->masked)
            snprintf(buf, sizeof buf, "%.2s.%.3s.%.3s-%c", d, d + 2, d + 5, check);
        else
            snprintf(buf, sizeof buf, "%s%c", d, check);
        set_text(out, buf);
        return 0;
    }
    case G_EMAIL: {
        const struct seed_value *src = &lv->vals[c->source];
        if (src->kind != SV_TEXT)
            return 0;                           /* no name, no e-mail */
        char folded[SEED_TEXT_MAX], local[SEED_TEXT_MAX];
        seed_ascii_fold(src->text, folded, sizeof folded);
        /* first word and last word of the name: "maria.lima" */
        char *first = folded, *last = strrchr(folded, ' ');
        char *sp = strchr(folded, ' ');
        if (sp)
            *sp = '\0';
        last = last ? last + 1 : NULL;
        size_t n = 0;
        for (const char *p = first; *p && n + 1 < 64; p++)
            if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
                local[n++] = *p;
        static const char seps[] = { '.', '_', '.' };
        if (last && *last) {
            local[n++] = seps[seed_rng_below(&r, 3)];
            for (const char *p = last; *p && n + 1 < 128; p++)
                if ((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
                    local[n++] = *p;
        }
        local[n] = '\0';
        if (n == 0)
            snprintf(local, sizeof local, "user");
        const char *domain = c->domains[seed_rng_below(&r, c->n_domains)];
        char num[24] = "";
        if (c->unique)
            snprintf(num, sizeof num, "%lld", (long long)f->row);
        /* local part ≤ 127, number ≤ 20, domain ≤ 60 (checked when parsed): fits; cut
         * rather than overflow all the same */
        size_t len = 0;
        const char *parts[4] = { local, num, "@", domain };
        for (int k = 0; k < 4; k++)
            for (const char *p = parts[k]; *p && len + 1 < sizeof buf; p++)
                buf[len++] = *p;
        buf[len] = '\0';
        set_text(out, buf);
        return 0;
    }
    case G_PHONE: {
        const struct seed_city *city = city_of(lv->vals, c->source, &r);
        long long num = c->mobile ? 900000000LL + seed_rng_range(&r, 60000000, 99999999)
                                  : seed_rng_range(&r, 20000000, 59999999);
        if (c->masked) {
            if (c->mobile)
                snprintf(buf, sizeof buf, "(%d) %05lld-%04lld", city->ddd, num / 10000, num % 10000);
            else
                snprintf(buf, sizeof buf, "(%d) %04lld-%04lld", city->ddd, num / 10000, num % 10000);
        } else {
            snprintf(buf, sizeof buf, "55%d%lld", city->ddd, num);
        }
        set_text(out, buf);
        return 0;
    }
    case G_CITY: {
        size_t i = seed_rng_below(&r, seed_n_cities);
        set_text(out, seed_cities[i].name);
        out->aux = (int)i + 1;
        return 0;
    }
    case G_UF:
        set_text(out, city_of(lv->vals, c->source, &r)->uf);
        return 0;
    case G_CEP: {
        const struct seed_city *city = city_of(lv->vals, c->source, &r);
        int prefix = (int)seed_rng_range(&r, city->cep_lo, city->cep_hi);
        int suffix = (int)seed_rng_range(&r, 0, 999);
        if (c->masked)
            snprintf(buf, sizeof buf, "%05d-%03d", prefix, suffix);
        else
            snprintf(buf, sizeof buf, "%05d%03d", prefix, suffix);
        set_text(out, buf);
        return 0;
    }
    case G_STREET: {
        const char *kind = seed_street_kinds[seed_rng_below(&r, seed_n_street_kinds)];
        const char *name = seed_street_names[seed_rng_below(&r, seed_n_street_names)];
        int number = (int)seed_rng_range(&r, 1, 3999);
        if (seed_rng_below(&r, 100) < 30)
            snprintf(buf, sizeof buf, "%s %s, %d, apto %d", kind, name, number,
                     (int)seed_rng_range(&r, 1, 30) * 100 + (int)seed_rng_range(&r, 1, 8));
        else
            snprintf(buf, sizeof buf, "%s %s, %d", kind, name, number);
        set_text(out, buf);
        return 0;
    }
    case G_AMORTIZATION:
        return gen_amortization(w, c, cs, f, out);
    }
    return pgsov_fail(w->err, "internal: unknown generator");
}

/* ---- encoding -------------------------------------------------------------------------------- */

static int line_reserve(struct walk *w, size_t need)
{
    if (need <= w->line_cap)
        return 0;
    size_t cap = w->line_cap ? w->line_cap : 1024;
    while (cap < need)
        cap *= 2;
    char *nl = realloc(w->line, cap);
    if (!nl)
        return pgsov_fail(w->err, "out of memory");
    w->line = nl;
    w->line_cap = cap;
    return 0;
}

/* Appends field text to the line in the run's format; returns the new length or -1. */
static long append_field(struct walk *w, size_t len, const struct seed_value *v, bool first)
{
    char text[SEED_TEXT_MAX + 64];
    size_t n = seed_value_format(v, text, sizeof text);
    if (line_reserve(w, len + 2 * n + 8) < 0)
        return -1;
    char *o = w->line + len;
    if (!first)
        *o++ = w->run->format == SEED_FORMAT_CSV ? ',' : '\t';
    if (w->run->format == SEED_FORMAT_COPY_TEXT) {
        if (v->kind == SV_NULL) {
            *o++ = '\\';
            *o++ = 'N';
        } else {
            for (size_t i = 0; i < n; i++) {
                char ch = text[i];
                switch (ch) {
                case '\\': *o++ = '\\'; *o++ = '\\'; break;
                case '\t': *o++ = '\\'; *o++ = 't'; break;
                case '\n': *o++ = '\\'; *o++ = 'n'; break;
                case '\r': *o++ = '\\'; *o++ = 'r'; break;
                default: *o++ = ch;
                }
            }
        }
    } else if (v->kind != SV_NULL) {
        /* RFC 4180: quote when the field holds a comma, quote or line break; empty text
         * is quoted so it differs from NULL (PostgreSQL's CSV reading agrees) */
        bool quote = n == 0 || strpbrk(text, ",\"\r\n") != NULL;
        if (quote)
            *o++ = '"';
        for (size_t i = 0; i < n; i++) {
            if (text[i] == '"')
                *o++ = '"';
            *o++ = text[i];
        }
        if (quote)
            *o++ = '"';
    }
    return (long)(o - w->line);
}

/* ---- COPY binary ------------------------------------------------------------------------------
 * PostgreSQL's binary input for each type (numeric_recv, date_recv, timestamptz_recv, ...)
 * without the text parsing: the server's time per row drops by about a third. Every value is
 * sent only when its binary form means exactly what its text would; otherwise the generation
 * stops with SEED_NOT_BINARY and the loader falls back to text for the table. */

#define PG_EPOCH_DAYS 10957                         /* 2000-01-01 in days since 1970-01-01 */
#define PG_EPOCH_SECONDS ((int64_t)PG_EPOCH_DAYS * 86400)

static char *put_be16(char *o, uint16_t v)
{
    o[0] = (char)(v >> 8);
    o[1] = (char)v;
    return o + 2;
}

static char *put_be32(char *o, uint32_t v)
{
    for (int k = 3; k >= 0; k--, v >>= 8)
        o[k] = (char)v;
    return o + 4;
}

static char *put_be64(char *o, uint64_t v)
{
    for (int k = 7; k >= 0; k--, v >>= 8)
        o[k] = (char)v;
    return o + 8;
}

/* numeric_recv's layout: ndigits, weight, sign, dscale, then base-10000 digits, most
 * significant first; value = Σ digit[k] · 10000^(weight − k). Leading and trailing zero
 * digits are left out, as the server stores them. dscale = the value's scale, so "12.50"
 * and 12.50 keep the same display scale (the column's typmod then rounds both alike). */
static char *put_numeric(char *o, int64_t m, int scale)
{
    uint64_t mag = m < 0 ? (uint64_t)0 - (uint64_t)m : (uint64_t)m;
    uint64_t p = (uint64_t)seed_pow10[scale];
    uint64_t ip = mag / p, frac = mag % p;
    uint16_t digits[12];
    int nd = 0, ni = 0, nf = (scale + 3) / 4;
    uint16_t groups[5];
    for (uint64_t x = ip; x; x /= 10000)
        groups[ni++] = (uint16_t)(x % 10000);
    for (int k = ni - 1; k >= 0; k--)
        digits[nd++] = groups[k];
    uint64_t fracpad = frac * (uint64_t)seed_pow10[4 * nf - scale];
    for (int k = nf - 1; k >= 0; k--)
        digits[nd++] = (uint16_t)(fracpad / (uint64_t)seed_pow10[4 * k] % 10000);
    int weight = ni - 1, first = 0;
    while (first < nd && digits[first] == 0) {
        first++;
        weight--;
    }
    while (nd > first && digits[nd - 1] == 0)
        nd--;
    if (nd == first)
        weight = 0;
    o = put_be32(o, (uint32_t)(8 + 2 * (nd - first)));
    o = put_be16(o, (uint16_t)(nd - first));
    o = put_be16(o, (uint16_t)(int16_t)weight);
    o = put_be16(o, m < 0 && nd > first ? 0x4000 : 0x0000);
    o = put_be16(o, (uint16_t)scale);
    for (int k = first; k < nd; k++)
        o = put_be16(o, digits[k]);
    return o;
}

static int hex_value(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* One field (length word and bytes) at o; NULL when v has no exact binary form for type
 * (*why says why). o must have room for 4 + SEED_TEXT_MAX + 64 bytes. */
static char *put_binary_field(const struct walk *w, char *o, const struct seed_value *v,
                              enum seed_pgtype type, const char **why)
{
    if (v->kind == SV_NULL)
        return put_be32(o, 0xFFFFFFFFu);
    switch (type) {
    case SEED_PG_TEXT: {
        char text[SEED_TEXT_MAX + 64];
        size_t n = seed_value_format(v, text, sizeof text);
        o = put_be32(o, (uint32_t)n);
        memcpy(o, text, n);
        return o + n;
    }
    case SEED_PG_INT2:
    case SEED_PG_INT4:
    case SEED_PG_INT8: {
        int64_t lim = type == SEED_PG_INT2 ? INT16_MAX : type == SEED_PG_INT4 ? INT32_MAX : INT64_MAX;
        if (v->kind != SV_NUM || v->scale != 0) {
            *why = "not an integer";
            return NULL;
        }
        if (v->i > lim || v->i < -lim - 1) {
            *why = "out of the column type's range";
            return NULL;
        }
        if (type == SEED_PG_INT2) {
            o = put_be32(o, 2);
            return put_be16(o, (uint16_t)(int16_t)v->i);
        }
        if (type == SEED_PG_INT4) {
            o = put_be32(o, 4);
            return put_be32(o, (uint32_t)(int32_t)v->i);
        }
        o = put_be32(o, 8);
        return put_be64(o, (uint64_t)v->i);
    }
    case SEED_PG_NUMERIC:
        if (v->kind != SV_NUM || v->scale < 0 || v->scale > 12) {
            *why = "not a number";
            return NULL;
        }
        return put_numeric(o, v->i, v->scale);
    case SEED_PG_DATE:
        if (v->kind != SV_DATE) {
            *why = "not a date";
            return NULL;
        }
        if (v->i < w->day_min || v->i > w->day_max) {
            *why = "date outside years 1..9999";
            return NULL;
        }
        o = put_be32(o, 4);
        return put_be32(o, (uint32_t)(int32_t)(v->i - PG_EPOCH_DAYS));
    case SEED_PG_TIMESTAMP:
    case SEED_PG_TIMESTAMPTZ: {
        if (v->kind != SV_TEXT || v->aux != SEED_AUX_INSTANT) {
            *why = "not a generated timestamp";
            return NULL;
        }
        /* timestamp (without time zone) input ignores the "-03": local wall time */
        int64_t local = v->i + SEED_TS_OFFSET_SECONDS;
        int64_t day = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
        if (day < w->day_min || day > w->day_max) {
            *why = "timestamp outside years 1..9999";
            return NULL;
        }
        int64_t secs = (type == SEED_PG_TIMESTAMP ? local : v->i) - PG_EPOCH_SECONDS;
        o = put_be32(o, 8);
        return put_be64(o, (uint64_t)(secs * 1000000));
    }
    case SEED_PG_BOOL:
        if (v->kind != SV_BOOL) {
            *why = "not a boolean";
            return NULL;
        }
        o = put_be32(o, 1);
        *o = v->i ? 1 : 0;
        return o + 1;
    case SEED_PG_UUID: {
        /* only the canonical 8-4-4-4-12 spelling the uuid generator writes */
        const char *t = v->text;
        unsigned char bytes[16];
        if (v->kind != SV_TEXT || strlen(t) != 36) {
            *why = "not a UUID";
            return NULL;
        }
        for (int i = 0, b = 0; i < 36; ) {
            if (i == 8 || i == 13 || i == 18 || i == 23) {
                if (t[i++] != '-') {
                    *why = "not a UUID";
                    return NULL;
                }
                continue;
            }
            int hi = hex_value(t[i]), lo = hex_value(t[i + 1]);
            if (hi < 0 || lo < 0) {
                *why = "not a UUID";
                return NULL;
            }
            bytes[b++] = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        o = put_be32(o, 16);
        memcpy(o, bytes, 16);
        return o + 16;
    }
    case SEED_PG_OTHER:
        break;
    }
    *why = "no binary encoding for the column's type";
    return NULL;
}

static int emit_row_binary(struct walk *w, const struct level *lv)
{
    const struct seed_table *t = lv->table;
    if (!w->run->types)
        return pgsov_fail(w->err, "internal: COPY binary without column types");
    if (line_reserve(w, 2 + t->n_emit * (4 + SEED_TEXT_MAX + 64)) < 0)
        return -1;
    char *o = put_be16(w->line, (uint16_t)t->n_emit);
    for (size_t k = 0; k < t->n_emit; k++) {
        const char *why = "";
        const struct seed_value *v = &lv->vals[t->emit[k]];
        char *next = put_binary_field(w, o, v, w->run->types[k], &why);
        if (!next) {
            char text[SEED_TEXT_MAX + 64];
            seed_value_format(v, text, sizeof text);
            pgsov_fail(w->err, "table %s, column %s, row %llu: value \"%.60s\": %s",
                       t->name, t->cols[t->emit[k]].name, (unsigned long long)w->rows + 1,
                       text, why);
            return SEED_NOT_BINARY;
        }
        o = next;
    }
    w->rows++;
    return w->fn ? w->fn(w->ctx, w->line, (size_t)(o - w->line), w->err) : 0;
}

static int emit_row(struct walk *w, const struct level *lv)
{
    if (w->run->format == SEED_FORMAT_COPY_BINARY)
        return emit_row_binary(w, lv);
    long len = 0;
    for (size_t k = 0; k < lv->table->n_emit; k++) {
        len = append_field(w, (size_t)len, &lv->vals[lv->table->emit[k]], k == 0);
        if (len < 0)
            return -1;
    }
    if (line_reserve(w, (size_t)len + 3) < 0)
        return -1;
    if (w->run->format == SEED_FORMAT_CSV)
        w->line[len++] = '\r';
    w->line[len++] = '\n';
    w->line[len] = '\0';
    w->rows++;
    return w->fn ? w->fn(w->ctx, w->line, (size_t)len, w->err) : 0;
}

/* ---- the walk ----------------------------------------------------------------------------------- */

static int with_context(struct walk *w, const struct level *lv, const char *what)
{
    char msg[sizeof w->err->msg];
    pgsov_strlcpy(msg, w->err->msg, sizeof msg);
    return pgsov_fail(w->err, "%s: table %s, %s: %s", w->sc->name, lv->table->name, what, msg);
}

static int child_count(struct walk *w, struct level *lv, const struct seed_frame *parent,
                       int64_t *out)
{
    const struct seed_table *t = lv->table;
    struct seed_frame probe = { .table = t, .vals = lv->vals, .rowkey = parent->rowkey,
                                .row = 0, .ordinal = 0, .parent = parent };
    *out = 0;
    if (t->where) {
        struct seed_value v;
        bool ok;
        if (seed_expr_eval(t->where, &probe, w->sc->reference_date, &v, w->err) < 0)
            return with_context(w, lv, "where");
        if (seed_value_truth(&v, &ok) < 0) {
            pgsov_fail(w->err, "not a condition");
            return with_context(w, lv, "where");
        }
        if (!ok)
            return 0;
    }
    struct seed_rng r;
    seed_rng_init(&r, &lv->count_key, parent->rowkey);
    switch (t->per_parent) {
    case PP_FIXED:
        *out = t->pp_min;
        return 0;
    case PP_RANGE:
        *out = seed_rng_range(&r, t->pp_min, t->pp_max);
        return 0;
    case PP_WEIGHTS:
        *out = t->pp_values[pick_weighted(&r, t->pp_cumulative, t->pp_n)];
        return 0;
    case PP_EXPR: {
        struct seed_value v;
        if (seed_expr_eval(t->pp_expr, &probe, w->sc->reference_date, &v, w->err) < 0)
            return with_context(w, lv, "per_parent.expr");
        if (v.kind == SV_NULL)
            return 0;
        int64_t n = v.kind == SV_NUM ? seed_rescale(v.i, v.scale, 0) : -1;
        if (n < 0 || n > 100000) {
            pgsov_fail(w->err, "count must be a number 0..100000");
            return with_context(w, lv, "per_parent.expr");
        }
        *out = n;
        return 0;
    }
    }
    return 0;
}

static int walk_level(struct walk *w, int level, const struct seed_frame *parent)
{
    struct level *lv = &w->levels[level];
    int64_t n;
    if (!parent) {
        double scaled = (double)lv->table->rows * w->run->scale;
        n = scaled <= 0 ? 0 : scaled > 2e9 ? 2000000000 : (int64_t)(scaled + 0.5);
    } else if (child_count(w, lv, parent, &n) < 0) {
        return -1;
    }
    for (int64_t j = 0; j < n; j++) {
        struct seed_frame f = {
            .table = lv->table,
            .vals = lv->vals,
            .rowkey = parent ? seed_mix64(parent->rowkey ^ seed_mix64((uint64_t)j + 1))
                             : seed_mix64((uint64_t)j),
            .row = ++lv->counter,
            .ordinal = j + 1,
            .parent = parent,
        };
        for (size_t c = 0; c < lv->table->n_cols; c++)
            if (!lv->needed[c])
                lv->vals[c].kind = SV_NULL;
            else if (gen_column(w, lv, c, &f) < 0) {
                char what[100];
                snprintf(what, sizeof what, "column %s", lv->table->cols[c].name);
                return with_context(w, lv, what);
            }
        int rc = level == w->n_levels - 1 ? emit_row(w, lv) : walk_level(w, level + 1, &f);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- which ancestor columns a walk needs ---------------------------------------------------------
 * An ancestor row is regenerated only to give its descendants what they read; a column
 * nobody below reads (a client's name and address while walking to payments) is skipped.
 * Skipping changes no value: every column draws from its own stream. Levels are marked
 * bottom-up; within a level, columns only read earlier columns, so one pass from the last
 * column to the first closes the same-row dependencies. */

struct mark_ctx {
    struct walk *w;
    int level;
};

static void mark_ref(void *ctx, int depth, int col)
{
    struct mark_ctx *m = ctx;
    int target = m->level - depth;
    if (target >= 0 && col >= 0 && (size_t)col < m->w->levels[target].table->n_cols)
        m->w->levels[target].needed[col] = true;
}

static void mark_needed(struct walk *w)
{
    int last = w->n_levels - 1;
    for (size_t c = 0; c < w->levels[last].table->n_cols; c++)
        w->levels[last].needed[c] = true;
    for (int l = last; l >= 0; l--) {
        struct level *lv = &w->levels[l];
        const struct seed_table *t = lv->table;
        struct mark_ctx m = { w, l };
        seed_expr_refs(t->where, mark_ref, &m);
        seed_expr_refs(t->pp_expr, mark_ref, &m);
        for (size_t c = t->n_cols; c-- > 0;) {
            if (!lv->needed[c])
                continue;
            const struct seed_column *col = &t->cols[c];
            const struct seed_expr *uses[] = { col->expr, col->base, col->principal, col->rate,
                                               col->term, col->installment };
            for (size_t k = 0; k < sizeof uses / sizeof uses[0]; k++)
                seed_expr_refs(uses[k], mark_ref, &m);
            bool has_source = col->gen == G_EMAIL || col->gen == G_PHONE || col->gen == G_UF ||
                              col->gen == G_CEP;
            if (has_source && col->source >= 0 && (size_t)col->source < t->n_cols)
                lv->needed[col->source] = true;
        }
    }
}

int seed_generate(const struct seed_scenario *sc, size_t t, const struct seed_run *run,
                  seed_line_fn fn, void *ctx, uint64_t *rows_out, struct pgsov_err *err)
{
    if (t >= sc->n_tables)
        return pgsov_fail(err, "no table %zu", t);
    struct walk w = { .sc = sc, .run = run, .fn = fn, .ctx = ctx, .err = err };
    /* chain from the root down to the table asked for */
    size_t chain[64];
    int depth = 0;
    for (int ti = (int)sc->order[t]; ti >= 0; ti = sc->tables[ti].parent) {
        if (depth == 64)
            return pgsov_fail(err, "tables nested deeper than 64 levels");
        chain[depth++] = (size_t)ti;
    }
    w.n_levels = depth;
    w.day_min = seed_days_from_civil(1, 1, 1);
    w.day_max = seed_days_from_civil(9999, 12, 31);
    int rc = -1;
    for (int l = 0; l < depth; l++) {
        struct level *lv = &w.levels[l];
        lv->table_index = chain[depth - 1 - l];
        lv->table = &sc->tables[lv->table_index];
        seed_key_derive(run->seed, lv->table->name, "#count", &lv->count_key);
        lv->cols = calloc(lv->table->n_cols, sizeof *lv->cols);
        lv->vals = calloc(lv->table->n_cols, sizeof *lv->vals);
        lv->needed = calloc(lv->table->n_cols, sizeof *lv->needed);
        if (!lv->cols || !lv->vals || !lv->needed) {
            pgsov_fail(err, "out of memory");
            goto done;
        }
        for (size_t c = 0; c < lv->table->n_cols; c++) {
            struct col_state *cs = &lv->cols[c];
            seed_key_derive(run->seed, lv->table->name, lv->table->cols[c].name, &cs->key);
            cs->null_key = cs->key;
            cs->null_key.k[0] ^= 0x6E756C6C6E756C6CULL;     /* "nullnull" */
            cs->null_key.k[2] ^= 0x6E756C6C6E756C6CULL;
            uint64_t space = lv->table->cols[c].alphanumeric ? 2821109907456ULL
                           : lv->table->cols[c].gen == G_CNPJ ? 100000000ULL
                           : 1000000000ULL - 10;
            cs->perm_a = coprime_multiplier(cs->key.k[1], space);
            cs->perm_b = cs->key.k[2] % space;
        }
    }
    mark_needed(&w);
    rc = walk_level(&w, 0, NULL);
    if (rows_out)
        *rows_out = w.rows;
done:
    for (int l = 0; l < depth; l++) {
        if (w.levels[l].cols)
            for (size_t c = 0; c < w.levels[l].table->n_cols; c++)
                free(w.levels[l].cols[c].schedule);
        free(w.levels[l].cols);
        free(w.levels[l].vals);
        free(w.levels[l].needed);
    }
    free(w.line);
    return rc;
}

enum seed_pgtype seed_pgtype_from_oid(unsigned oid)
{
    switch (oid) {
    case 16: return SEED_PG_BOOL;
    case 20: return SEED_PG_INT8;
    case 21: return SEED_PG_INT2;
    case 23: return SEED_PG_INT4;
    case 25: case 1042: case 1043: return SEED_PG_TEXT;     /* text, bpchar, varchar */
    case 1082: return SEED_PG_DATE;
    case 1114: return SEED_PG_TIMESTAMP;
    case 1184: return SEED_PG_TIMESTAMPTZ;
    case 1700: return SEED_PG_NUMERIC;
    case 2950: return SEED_PG_UUID;
    default: return SEED_PG_OTHER;
    }
}

int seed_header(const struct seed_scenario *sc, size_t t, char *buf, size_t size)
{
    size_t len = 0;
    const struct seed_table *tb = &sc->tables[sc->order[t]];
    for (size_t k = 0; k < tb->n_emit; k++) {
        int n = snprintf(buf + len, size - len, "%s%s", k ? "," : "", tb->cols[tb->emit[k]].name);
        if (n < 0 || (size_t)n >= size - len)
            return -1;
        len += (size_t)n;
    }
    if (len + 3 > size)
        return -1;
    memcpy(buf + len, "\r\n", 3);
    return (int)(len + 2);
}

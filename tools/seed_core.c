/* seed_core.c — the arithmetic under `pgsov seed`: keyed random streams, distributions,
 * calendar dates, French amortisation, CPF/CNPJ check digits and ASCII folding.
 * Pure and deterministic: integer arithmetic wherever a value is stored, IEEE-754 basic
 * operations plus our own exp/log where a distribution needs them (libm's transcendental
 * functions may differ in the last bit between versions; these do not). */
#include "seed_internal.h"

#include <math.h>
#include <string.h>

#include <openssl/evp.h>

const int64_t seed_pow10[19] = {
    1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL, 10000000LL, 100000000LL,
    1000000000LL, 10000000000LL, 100000000000LL, 1000000000000LL, 10000000000000LL,
    100000000000000LL, 1000000000000000LL, 10000000000000000LL, 100000000000000000LL,
    1000000000000000000LL,
};

/* ---- streams -------------------------------------------------------------------------- */

uint64_t seed_mix64(uint64_t x)
{
    /* SplitMix64's finaliser */
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

static uint64_t load_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void seed_key_derive(uint64_t seed, const char *table, const char *column, struct seed_key *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char s[8];
    for (int i = 0; i < 8; i++)
        s[i] = (unsigned char)(seed >> (8 * i));
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
             EVP_DigestUpdate(ctx, s, sizeof s) &&
             EVP_DigestUpdate(ctx, table, strlen(table) + 1) &&
             EVP_DigestUpdate(ctx, column, strlen(column) + 1) &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* SHA-256 cannot fail short of memory exhaustion inside OpenSSL; fall back to a
         * mix that is still a function of the same inputs rather than continuing with
         * garbage. */
        uint64_t h = seed_mix64(seed);
        for (const char *p = table; *p; p++)
            h = seed_mix64(h ^ (unsigned char)*p);
        h = seed_mix64(h ^ 0xFF);
        for (const char *p = column; *p; p++)
            h = seed_mix64(h ^ (unsigned char)*p);
        for (int i = 0; i < 4; i++)
            out->k[i] = h = seed_mix64(h + (uint64_t)i);
        return;
    }
    for (int i = 0; i < 4; i++)
        out->k[i] = load_le64(md + 8 * i);
}

void seed_rng_init(struct seed_rng *r, const struct seed_key *key, uint64_t rowkey)
{
    uint64_t x = seed_mix64(rowkey);
    for (int i = 0; i < 4; i++)
        r->s[i] = seed_mix64(key->k[i] ^ (x + 0x632BE59BD9B4E019ULL * (uint64_t)(i + 1)));
    if ((r->s[0] | r->s[1] | r->s[2] | r->s[3]) == 0)
        r->s[0] = 1;
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t seed_rng_next(struct seed_rng *r)
{
    /* xoshiro256** */
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint64_t seed_rng_below(struct seed_rng *r, uint64_t n)
{
    if (n <= 1)
        return 0;
    /* Lemire's multiply-shift with rejection: unbiased */
    unsigned __int128 m = (unsigned __int128)seed_rng_next(r) * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            m = (unsigned __int128)seed_rng_next(r) * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

int64_t seed_rng_range(struct seed_rng *r, int64_t lo, int64_t hi)
{
    if (hi <= lo)
        return lo;
    uint64_t span = (uint64_t)hi - (uint64_t)lo + 1;   /* 0 means the full 2^64 range */
    uint64_t v = span == 0 ? seed_rng_next(r) : seed_rng_below(r, span);
    return (int64_t)((uint64_t)lo + v);
}

double seed_rng_unit(struct seed_rng *r)
{
    return (double)(seed_rng_next(r) >> 11) * 0x1.0p-53;
}

#define LN2 0.6931471805599453094

double seed_log(double x)
{
    if (!(x > 0))
        return -INFINITY;
    int e;
    double m = frexp(x, &e);            /* exact: x = m · 2^e, m in [0.5, 1) */
    if (m < 0.70710678118654752440) {
        m *= 2.0;
        e -= 1;
    }
    /* log(m) = 2·atanh(s), s = (m−1)/(m+1), |s| < 0.172 */
    double s = (m - 1.0) / (m + 1.0), s2 = s * s, term = s, sum = 0.0;
    for (int k = 1; k < 40; k += 2) {
        sum += term / k;
        term *= s2;
    }
    return 2.0 * sum + e * LN2;
}

double seed_exp(double x)
{
    if (x > 700)
        return INFINITY;
    if (x < -700)
        return 0.0;
    double kf = floor(x / LN2 + 0.5);
    double r = x - kf * LN2;            /* |r| <= ln2/2 */
    double sum = 1.0, term = 1.0;
    for (int i = 1; i < 25; i++) {
        term *= r / i;
        sum += term;
    }
    return ldexp(sum, (int)kf);        /* exact scaling by a power of two */
}

double seed_rng_normal(struct seed_rng *r)
{
    /* Marsaglia's polar method: needs only log and sqrt (sqrt is exact in IEEE-754) */
    for (;;) {
        double u = 2.0 * seed_rng_unit(r) - 1.0, v = 2.0 * seed_rng_unit(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0)
            return u * sqrt(-2.0 * seed_log(s) / s);
    }
}

int seed_double_to_fixed(double x, int scale, int64_t *out)
{
    if (scale < 0 || scale > SEED_MAX_SCALE || x != x)
        return -1;
    double y = x * (double)seed_pow10[scale];
    if (!(y < 9.2e18 && y > -9.2e18))
        return -1;
    *out = y >= 0 ? (int64_t)floor(y + 0.5) : -(int64_t)floor(-y + 0.5);
    return 0;
}

int64_t seed_rescale(int64_t m, int from_scale, int to_scale)
{
    if (to_scale >= from_scale)
        return m * seed_pow10[to_scale - from_scale];
    int64_t p = seed_pow10[from_scale - to_scale];
    int64_t q = m / p, rem = m % p;
    if (rem < 0)
        rem = -rem;
    if (2 * rem >= p)
        q += m < 0 ? -1 : 1;
    return q;
}

/* ---- dates ---------------------------------------------------------------------------- */

/* Howard Hinnant's days_from_civil / civil_from_days. */
int32_t seed_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void seed_civil_from_days(int32_t z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int yy = yoe + era * 400;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = yy + (*m <= 2);
}

static int month_days(int y, int m)
{
    static const int len[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return len[m - 1];
}

int seed_date_parse(const char *s, int32_t *days, struct pgsov_err *err)
{
    int y, m, d, n = 0;
    if (strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 ||
        s[4] != '-' || s[7] != '-')
        return pgsov_fail(err, "\"%s\" is not a date: expected YYYY-MM-DD", s);
    if (y < 1900 || y > 2999 || m < 1 || m > 12 || d < 1 || d > month_days(y, m))
        return pgsov_fail(err, "\"%s\" is not a valid calendar date", s);
    *days = seed_days_from_civil(y, m, d);
    return 0;
}

int32_t seed_add_months(int32_t days, int n)
{
    int y, m, d;
    seed_civil_from_days(days, &y, &m, &d);
    int total = y * 12 + (m - 1) + n;
    int ny = total >= 0 ? total / 12 : -((-total + 11) / 12);
    int nm = total - ny * 12 + 1;
    int last = month_days(ny, nm);
    return seed_days_from_civil(ny, nm, d > last ? last : d);
}

/* ---- amortisation ----------------------------------------------------------------------- */

static double pow_int(double q, int n)
{
    double result = 1.0;
    while (n > 0) {
        if (n & 1)
            result *= q;
        q *= q;
        n >>= 1;
    }
    return result;
}

int seed_amortize(int64_t principal, int64_t rate_m, int rate_scale, int n,
                  struct seed_installment *out, struct pgsov_err *err)
{
    if (n < 1 || n > SEED_MAX_TERM)
        return pgsov_fail(err, "amortization: term %d outside 1..%d", n, SEED_MAX_TERM);
    if (principal <= 0 || principal > 100000000000000LL)
        return pgsov_fail(err, "amortization: principal %lld cents outside 1..10^14",
                          (long long)principal);
    if (rate_m < 0 || rate_scale < 0 || rate_scale > 18 || rate_m > seed_pow10[rate_scale])
        return pgsov_fail(err, "amortization: monthly rate outside 0..1");
    int64_t pmt;
    if (rate_m == 0) {
        pmt = principal / n;
    } else {
        double i = (double)rate_m / (double)seed_pow10[rate_scale];
        double qn = pow_int(1.0 + i, n);
        if (seed_double_to_fixed((double)principal * i * qn / (qn - 1.0), 0, &pmt) < 0)
            return pgsov_fail(err, "amortization: installment out of range");
    }
    int64_t balance = principal;
    for (int k = 0; k < n; k++) {
        __int128 num = (__int128)balance * rate_m, p = seed_pow10[rate_scale];
        int64_t interest = (int64_t)((num + p / 2) / p);
        int64_t part = k < n - 1 ? pmt - interest : balance;
        if (part < 0)
            part = 0;
        if (part > balance)
            part = balance;
        balance -= part;
        out[k].principal = part;
        out[k].interest = interest;
        out[k].amount = part + interest;
        out[k].balance_after = balance;
    }
    return 0;
}

/* ---- documents ---------------------------------------------------------------------------- */

static int mod11_digit(const char *s, size_t len, int first_weight, int max_weight)
{
    /* weights from the right: 2, 3, ..., max_weight, then 2 again (CNPJ) or keep counting
     * (CPF, max_weight large enough never to wrap) */
    int sum = 0, w = first_weight;
    for (size_t i = len; i-- > 0;) {
        sum += (s[i] - '0') * w;
        w = w == max_weight ? 2 : w + 1;
    }
    int r = sum % 11;
    return r < 2 ? 0 : 11 - r;
}

void seed_cpf_complete(const char base9[9], char out[12])
{
    memcpy(out, base9, 9);
    out[9] = (char)('0' + mod11_digit(out, 9, 2, 100));
    out[10] = (char)('0' + mod11_digit(out, 10, 2, 100));
    out[11] = '\0';
}

int seed_cnpj_complete(const char base12[12], char out[15])
{
    for (int i = 0; i < 12; i++) {
        char c = base12[i];
        if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z')))
            return -1;
    }
    memcpy(out, base12, 12);
    out[12] = (char)('0' + mod11_digit(out, 12, 2, 9));
    out[13] = (char)('0' + mod11_digit(out, 13, 2, 9));
    out[14] = '\0';
    return 0;
}

/* ---- text ----------------------------------------------------------------------------------- */

size_t seed_ascii_fold(const char *in, char *out, size_t size)
{
    /* Latin-1 supplement U+00C0..U+00FF → base letter (0: drop) */
    static const char latin1[64] = "AAAAAAACEEEEIIII" "DNOOOOO\0OUUUUY\0s"
                                   "aaaaaaaceeeeiiii" "dnooooo\0ouuuuy\0y";
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)in;
    while (*p && n + 1 < size) {
        char c = 0;
        if (*p < 0x80) {
            c = (char)*p++;
        } else if (*p == 0xC3 && p[1] >= 0x80 && p[1] <= 0xBF) {
            c = latin1[p[1] - 0x80];
            p += 2;
        } else {
            p++;
            while ((*p & 0xC0) == 0x80)
                p++;
        }
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (c)
            out[n++] = c;
    }
    if (size > 0)
        out[n] = '\0';
    return n;
}

/* users.h — who may log in to the proxy itself, and how (the users file), plus the login
 * failure back-off table.
 * Pure: no I/O beyond reading the file in users_load(); no clock (time is passed in).
 *
 * Users file, one entry per line (docs/auth.md):
 *   alice    SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>   password (SCRAM verifier)
 *   deploy   cert                                                 client certificate
 *   local    trust                                                no check (proxy decides where)
 *   certmap  "CI Runner 7"  deploy                                certificate CN -> cert user
 * A loaded set is immutable: share it read-only between threads; reload builds a new one. */
#ifndef PGSOV_USERS_H
#define PGSOV_USERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pgsov/err.h"
#include "pgsov/scram_verifier.h"

struct sockaddr;

enum user_method { USER_SCRAM, USER_CERT, USER_TRUST };

struct user_entry {
    char name[SCRAM_NAME_MAX + 1];
    enum user_method method;
    struct scram_verifier verifier;   /* USER_SCRAM only */
    unsigned line;                    /* where it was defined, for messages */
};

struct users;

/* Reads the users file. Refuses a file that others can read or write (it holds verifiers).
 * On error returns -1 with "path:line: reason" (never the verifier text). */
int users_load(const char *path, struct users **out, struct pgsov_err *err);

/* Same from memory; origin names the text in messages. */
int users_parse(const char *text, size_t len, const char *origin, struct users **out,
                struct pgsov_err *err);

/* The user's entry, or NULL when unknown (then run a mock SCRAM exchange, see scram.h). */
const struct user_entry *users_find(const struct users *u, const char *name);

/* True when a client certificate whose subject CN is cn[0..cn_len) may log in as user: the
 * user is declared "cert" and either the CN equals the name or a certmap line maps this CN
 * to it. A CN with an embedded NUL never matches. */
bool users_cert_allows(const struct users *u, const char *cn, size_t cn_len, const char *user);

size_t users_count(const struct users *u);
void users_free(struct users *u);

/* ---- failure back-off ----
 * Per source, failures less than window_ms apart add up; the first free_failures cost nothing,
 * then each one doubles the delay from base_ms up to cap_ms. A fixed number of slots (8-way
 * buckets, keyed hash, least-recently-failed evicted): memory never grows. Not thread-safe:
 * one table per worker, or a lock around it. */
struct backoff_policy {
    unsigned free_failures;    /* e.g. 3 */
    unsigned base_ms;          /* e.g. 250 */
    unsigned cap_ms;           /* e.g. 10000 */
    unsigned window_ms;        /* e.g. 300000: quiet this long and the count starts over */
};
#define BACKOFF_POLICY_DEFAULT { 3, 250, 10000, 300000 }
#define BACKOFF_KEY_LEN 16

struct backoff;

/* slots: rounded up to a multiple of 8, at least 8. seed keys the bucket hash (random per
 * process) so that nobody can aim many addresses at one bucket to evict someone else. */
struct backoff *backoff_new(size_t slots, const struct backoff_policy *p, uint64_t seed,
                            struct pgsov_err *err);

/* Records a failed login and returns how long to hold back the failure answer (ms). */
unsigned backoff_failure(struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN],
                         uint64_t now_ms);

/* The delay a new attempt from this source would face now (0 when below free_failures). */
unsigned backoff_delay(const struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN],
                       uint64_t now_ms);

/* A successful login forgets the source's failures. */
void backoff_success(struct backoff *b, const unsigned char key[BACKOFF_KEY_LEN]);

void backoff_free(struct backoff *b);

/* The key of a source address: IPv4 as v4-mapped IPv6; IPv6 cut to its /64 (one host usually
 * owns a whole /64). Other families: all zero. */
void backoff_key_from_sockaddr(const struct sockaddr *sa, unsigned char key[BACKOFF_KEY_LEN]);

#endif

/* passwd.c — `pgsov passwd USER`: make a users-file line with a SCRAM-SHA-256 verifier.
 * Reads the password from the terminal without echo (asked twice), or one line from stdin
 * when stdin is not a terminal or --stdin is given. Prints "USER SCRAM-SHA-256$...".
 * The password is never printed, logged or kept after the verifier is made. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pgsov/scram_verifier.h"
#include "tools.h"

#define PASSWORD_MAX 1024

static void passwd_usage(FILE *out)
{
    fprintf(out,
            "usage: pgsov passwd [--stdin] [--iterations N] USER\n"
            "\n"
            "Prints a users-file line for pgsov-proxy's own authentication:\n"
            "  USER SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\n"
            "Append it to the file named by users_file in proxy.ini (mode 0600 or 0640). The\n"
            "verifier has PostgreSQL's format: one copied from pg_authid.rolpassword works too.\n"
            "\n"
            "  --stdin          read the password as one line from standard input (the default\n"
            "                   when standard input is not a terminal); otherwise it is asked\n"
            "                   for twice on the terminal, without echo\n"
            "  --iterations N   PBKDF2 iteration count, 1..%d (default %d, as PostgreSQL)\n"
            "\n"
            "The salt is %d random bytes. Passwords are used as raw bytes: ASCII passwords\n"
            "match PostgreSQL exactly; see docs/auth.md about non-ASCII ones.\n",
            SCRAM_MAX_ITERATIONS, SCRAM_DEFAULT_ITERATIONS, SCRAM_DEFAULT_SALT_LEN);
}

/* Reads one line (without its newline) into buf. Returns the length, -1 on EOF/error, -2 when
 * the line is too long. */
static long read_line(FILE *in, char *buf, size_t size)
{
    size_t n = 0;
    int ch;
    while ((ch = getc(in)) != EOF && ch != '\n') {
        if (n + 1 >= size) {
            while ((ch = getc(in)) != EOF && ch != '\n')
                ;
            return -2;
        }
        buf[n++] = (char)ch;
    }
    if (ch == EOF && n == 0)
        return -1;
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

/* Prompts on stderr and reads with echo off; restores the terminal whatever happens. */
static long read_hidden(const char *prompt, char *buf, size_t size)
{
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) != 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= (tcflag_t)~(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    fputs(prompt, stderr);
    fflush(stderr);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
        return -1;
    long n = read_line(stdin, buf, size);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return n;
}

int cmd_passwd(int argc, char **argv)
{
    static const struct option opts[] = {
        { "stdin", no_argument, NULL, 's' },
        { "iterations", required_argument, NULL, 'i' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    bool from_stdin = false;
    unsigned long iterations = SCRAM_DEFAULT_ITERATIONS;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "si:h", opts, NULL)) != -1) {
        switch (ch) {
        case 's': from_stdin = true; break;
        case 'i': {
            char *end;
            errno = 0;
            iterations = strtoul(optarg, &end, 10);
            if (errno || *end || optarg[0] == '-' || optarg[0] == '\0' || iterations < 1 ||
                iterations > SCRAM_MAX_ITERATIONS) {
                fprintf(stderr, "pgsov passwd: --iterations must be 1..%d\n",
                        SCRAM_MAX_ITERATIONS);
                return 2;
            }
            break;
        }
        case 'h': passwd_usage(stdout); return 0;
        default: passwd_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        passwd_usage(stderr);
        return 2;
    }
    const char *user = argv[optind];
    struct pgsov_err err;
    if (scram_user_name_check(user, &err) < 0) {
        fprintf(stderr, "pgsov passwd: %s\n", err.msg);
        return 2;
    }
    if (iterations < SCRAM_DEFAULT_ITERATIONS)
        fprintf(stderr, "pgsov passwd: warning: %lu iterations is below PostgreSQL's default "
                        "%d and makes guessing the password from a stolen file cheaper\n",
                iterations, SCRAM_DEFAULT_ITERATIONS);

    char pw[PASSWORD_MAX + 2], again[PASSWORD_MAX + 2];
    long n;
    int rc = 1;
    bool tty = !from_stdin && isatty(STDIN_FILENO);
    if (tty) {
        n = read_hidden("Password: ", pw, sizeof pw);
        if (n >= 0) {
            long m = read_hidden("Repeat password: ", again, sizeof again);
            if (m != n || memcmp(pw, again, (size_t)n) != 0) {
                fprintf(stderr, "pgsov passwd: the passwords do not match\n");
                goto out;
            }
        }
    } else {
        n = read_line(stdin, pw, sizeof pw);
    }
    if (n == -2) {
        fprintf(stderr, "pgsov passwd: password longer than %d bytes\n", PASSWORD_MAX);
        goto out;
    }
    if (n < 0) {
        fprintf(stderr, "pgsov passwd: no password read%s\n", tty ? "" : " from standard input");
        goto out;
    }
    if (n == 0) {
        fprintf(stderr, "pgsov passwd: refusing an empty password\n");
        goto out;
    }
    if (memchr(pw, '\0', (size_t)n)) {
        fprintf(stderr, "pgsov passwd: the password contains a NUL byte, which PostgreSQL "
                        "clients cannot send\n");
        goto out;
    }
    if (!scram_password_prep(pw, (size_t)n))
        fprintf(stderr, "pgsov passwd: note: the password is not printable ASCII; it is used "
                        "as raw bytes without SASLprep normalization (see docs/auth.md)\n");

    struct scram_verifier v;
    char text[256];
    if (scram_verifier_generate(pw, (size_t)n, (unsigned)iterations, &v, &err) < 0 ||
        scram_verifier_format(&v, text, sizeof text, &err) < 0) {
        fprintf(stderr, "pgsov passwd: %s\n", err.msg);
        OPENSSL_cleanse(&v, sizeof v);
        goto out;
    }
    printf("%s %s\n", user, text);
    rc = fflush(stdout) == 0 ? 0 : 1;
    OPENSSL_cleanse(&v, sizeof v);
    OPENSSL_cleanse(text, sizeof text);
out:
    OPENSSL_cleanse(pw, sizeof pw);
    OPENSSL_cleanse(again, sizeof again);
    return rc;
}

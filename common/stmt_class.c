/* stmt_class.c — names and sets of statement classes (see stmt_class.h). Pure. */
#include "pgsov/stmt_class.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const class_names[CLASS__COUNT] = {
    [CLASS_READ] = "read",
    [CLASS_WRITE] = "write",
    [CLASS_DDL] = "ddl",
    [CLASS_ROLE] = "role",
    [CLASS_FUNCTION] = "function",
    [CLASS_PRIVILEGED] = "privileged",
    [CLASS_TRANSACTION] = "transaction",
    [CLASS_SESSION] = "session",
    [CLASS_MAINTENANCE] = "maintenance",
    [CLASS_UNKNOWN] = "unknown",
};

const char *stmt_class_name(enum stmt_class c)
{
    return (unsigned)c < CLASS__COUNT ? class_names[c] : "invalid";
}

int stmt_class_from_name(const char *name, enum stmt_class *out)
{
    for (int c = 0; c < CLASS__COUNT; c++) {
        if (strcasecmp(name, class_names[c]) == 0) {
            *out = (enum stmt_class)c;
            return 0;
        }
    }
    return -1;
}

int class_set_parse(const char *list, class_set *out, struct pgsov_err *err)
{
    class_set set = 0;
    const char *p = list;
    if (!list || !*list)
        return pgsov_fail(err, "empty class list");
    bool expect_item = true;            /* at the start, and after every comma */
    while (*p) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == ',') {
            if (expect_item)
                return pgsov_fail(err, "empty item in class list \"%s\"", list);
            expect_item = true;
            p++;
            continue;
        }
        if (!*p)
            break;
        expect_item = false;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        char word[32];
        size_t len = (size_t)(p - start);
        if (len >= sizeof word)
            return pgsov_fail(err, "unknown statement class \"%.*s\"", (int)len, start);
        memcpy(word, start, len);
        word[len] = '\0';
        enum stmt_class c;
        if (strcasecmp(word, "all") == 0)
            set |= CLASS_SET_ALL & ~CLASS_BIT(CLASS_UNKNOWN);
        else if (strcasecmp(word, "default") == 0)
            set |= CLASS_SET_DEFAULT;
        else if (strcasecmp(word, "none") == 0)
            ;
        else if (stmt_class_from_name(word, &c) == 0)
            set |= CLASS_BIT(c);
        else
            return pgsov_fail(err, "unknown statement class \"%s\" (known: read, write, ddl, role, "
                              "function, privileged, transaction, session, maintenance, unknown, "
                              "all, default, none)", word);
    }
    if (expect_item)
        return pgsov_fail(err, "empty item in class list \"%s\"", list);
    *out = set;
    return 0;
}

void class_set_format(class_set set, char *buf, size_t size)
{
    size_t used = 0;
    if (size == 0)
        return;
    buf[0] = '\0';
    for (int c = 0; c < CLASS__COUNT; c++) {
        if (!(set & CLASS_BIT(c)))
            continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", class_names[c]);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
    if (used == 0)
        snprintf(buf, size, "none");
}

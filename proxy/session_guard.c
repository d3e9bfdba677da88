/* session_guard.c — the statement guard's side of one session (see session_int.h): each Query,
 * Parse and FunctionCall classified against the session's rule (guard.c does the parsing and
 * the verdict cache), SQL-level PREPARE names remembered so EXECUTE takes their class, refused
 * messages replaced by a marked statement that makes the server fail at exactly that point, the
 * server's marked error swapped for the proxy's own, and one audit line per refusal and per
 * allowed ddl/role/privileged statement. What it does not do: move bytes (session.c relays). */
#include "session_int.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "pgsov/guard.h"
#include "pgsov/log.h"
#include "pgsov/wire.h"

static struct prepared_name *find_prepared(struct session *s, const char *name)
{
    for (struct prepared_name *p = s->prepared; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static void remember_prepared(struct session *s, const char *name, class_set classes)
{
    struct prepared_name *p = find_prepared(s, name);
    if (!p) {
        if (s->n_prepared >= MAX_PREPARED_NAMES)
            return;   /* EXECUTE of an unrecorded name stays unknown: fail closed */
        p = calloc(1, sizeof *p);
        if (!p)
            return;
        snprintf(p->name, sizeof p->name, "%s", name);
        p->next = s->prepared;
        s->prepared = p;
        s->n_prepared++;
    }
    p->classes = classes;
}

static void forget_prepared(struct session *s, const char *name)
{
    for (struct prepared_name **pp = &s->prepared; *pp;) {
        if (!*name || strcmp((*pp)->name, name) == 0) {
            struct prepared_name *dead = *pp;
            *pp = dead->next;
            free(dead);
            s->n_prepared--;
        } else {
            pp = &(*pp)->next;
        }
    }
}

static const char *class_label(enum stmt_class c)
{
    switch (c) {
    case CLASS_DDL: return "DDL";
    case CLASS_ROLE: return "role or privilege change";
    case CLASS_FUNCTION: return "function call";
    case CLASS_PRIVILEGED: return "privileged statement";
    case CLASS_WRITE: return "write";
    case CLASS_READ: return "read";
    case CLASS_TRANSACTION: return "transaction control";
    case CLASS_SESSION: return "session statement";
    case CLASS_MAINTENANCE: return "maintenance statement";
    default: return "unclassified statement";
    }
}

static const char *class_hint(enum stmt_class c)
{
    switch (c) {
    case CLASS_DDL:
        return "Schema changes go through `pgsov migrate` from an approved source.";
    case CLASS_ROLE:
        return "Role and privilege changes go through `pgsov migrate` from an approved source.";
    case CLASS_PRIVILEGED:
        return "This statement can change who you are or reach outside the database; grant class "
               "privileged only to trusted sources.";
    case CLASS_UNKNOWN:
        return "pgsov could not classify this SQL; a rule must grant class unknown to let it through.";
    default:
        return NULL;
    }
}

static void audit_statement(struct session *s, const char *event, enum stmt_class c, class_set classes,
                            const char *sql)
{
    char id[24], rule_at[300], tlsbuf[300], cls[200];
    id_text(s, id, sizeof id);
    snprintf(rule_at, sizeof rule_at, "%s:%d", s->rule->file, s->rule->line);
    class_set_format(classes, cls, sizeof cls);
    json_t *a = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "event", event,
                          "session", id, "environment", s->env_name, "user", s->user,
                          "upstream_user", s->upstream_user, "source", s->source,
                          "tls", tls_text(s, tlsbuf, sizeof tlsbuf), "class", stmt_class_name(c),
                          "classes", cls, "rule", rule_at);
    if (!a)
        return;
    /* Never the literal values: the normalized text and its fingerprint only. */
    char *norm = sql ? guard_normalize(sql) : NULL;
    char *fp = sql ? guard_fingerprint(sql) : NULL;
    json_object_set_new(a, "statement", norm ? json_string(norm) : json_null());
    json_object_set_new(a, "fingerprint", fp ? json_string(fp) : json_null());
    free(norm);
    free(fp);
    audit_write(a);
}

/* Queues a refusal; the caller writes its marked statement with write_substitute() once
 * everything before the refused message has gone to the server. */
static void queue_refusal(struct session *s, char type, const char *message, const char *detail,
                          const char *hint)
{
    uint32_t seq = ++s->refusal_seq;
    struct refusal *r = calloc(1, sizeof *r);
    if (r) {
        r->seq = seq;
        /* A Query or FunctionCall is its own unit (already counted in pending_ready); a Parse
         * belongs to the unit its batch's coming Sync closes. */
        r->unit = s->ready_received + s->pending_ready + (type == 'P' ? 1 : 0);
        r->message = strdup(message);
        r->detail = detail ? strdup(detail) : NULL;
        r->hint = hint ? strdup(hint) : NULL;
        if (s->refusals_tail)
            s->refusals_tail->next = r;
        else
            s->refusals = r;
        s->refusals_tail = r;
        s->n_refusals++;
    }
}

/* The statement that makes the server fail where the refused message stood: a cast that fails
 * at parse analysis, marked with the session's nonce and the refusal's number. */
void session_guard_substitute(struct session *s, char type)
{
    struct evbuffer *out = bufferevent_get_output(s->server);
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT 'pgsov:refused:%s:%u'::pg_catalog.int4", s->nonce, s->refusal_seq);
    if (type == 'P')
        wire_parse_message(out, REFUSAL_STMT_NAME, sql);
    else
        wire_query(out, sql);   /* Query and FunctionCall: both end in ReadyForQuery */
}

/* Decides one SQL-carrying message. Returns true to forward it unchanged; false when it has
 * queued a refusal (the caller then writes the substitute in the message's place). */
bool session_guard_message(struct session *s, char type, const char *sql, size_t sql_len,
                           uint32_t fn_oid)
{
    const struct rule *r = s->rule;
    char msg[400], detail[400];
    class_set classes;
    enum stmt_class worst;
    struct guard_verdict v;
    bool lexing = false;

    if (type == 'F') {
        worst = guard_classify_function_call(fn_oid);
        classes = CLASS_BIT(worst);
        memset(&v, 0, sizeof v);
    } else {
        guard_classify(worker_guard(s->w), sql, sql_len, &v);
        if (v.execute_name[0]) {
            struct prepared_name *p = find_prepared(s, v.execute_name);
            if (p)
                guard_resolve_execute(&v, p->classes);
        }
        classes = v.classes;
        worst = v.worst;
        lexing = v.lexing_change;
    }

    /* The guard reads SQL with the lexing settings the server last reported. A statement still
     * in flight (a pipelined Query, or an earlier message of this extended batch) may change
     * them before the server parses this text, and only a backslash reads differently then:
     * a multibyte character's trailing byte is never a quote, ';', '$' or comment marker in
     * any client encoding PostgreSQL accepts, and a Query string is parsed whole before any
     * of it runs. So a text with a backslash waits for nothing: it is refused while anything
     * that could change the settings is in flight. */
    uint32_t others_in_flight = s->pending_ready - (type == 'Q' || type == 'F' ? 1 : 0);
    if (type != 'F' && (others_in_flight > 0 || s->batch_open) && memchr(sql, '\\', sql_len)) {
        snprintf(msg, sizeof msg, "pgsov: statement refused for user \"%s\" in environment \"%s\": "
                 "it contains a backslash and was pipelined behind unfinished statements",
                 s->user, s->env_name);
        audit_statement(s, "refused", CLASS_UNKNOWN, CLASS_BIT(CLASS_UNKNOWN), sql);
        queue_refusal(s, type, msg, "A statement still running could change "
                           "standard_conforming_strings or client_encoding, and with them what a "
                           "backslash means; the guard cannot know how the server will read this text.",
                           "Send it after the previous results have arrived, or pass the value as a parameter.");
        return false;
    }
    if (s->lexing_unsafe || lexing) {
        snprintf(msg, sizeof msg, "pgsov: statement refused for user \"%s\" in environment \"%s\": "
                 "it changes how SQL is read", s->user, s->env_name);
        snprintf(detail, sizeof detail, "%s. The statement guard reads SQL with "
                 "standard_conforming_strings = on and client_encoding = UTF8.",
                 s->lexing_unsafe ? s->lexing_reason : "This statement changes standard_conforming_strings or client_encoding");
        audit_statement(s, "refused", worst, classes, type == 'F' ? NULL : sql);
        queue_refusal(s, type, msg, detail, "Keep the defaults for these settings in sessions that go through pgsov.");
        return false;
    }
    class_set denied = classes & ~r->classes;
    if (denied) {
        enum stmt_class bad = guard_worst_class(denied);
        char granted[200];
        class_set_format(r->classes, granted, sizeof granted);
        snprintf(msg, sizeof msg, "pgsov: %s refused for user \"%s\" in environment \"%s\" (%s:%d)",
                 class_label(bad), s->user, s->env_name, r->file, r->line);
        if (bad == CLASS_UNKNOWN && v.reason[0])
            snprintf(detail, sizeof detail, "The rule grants %s; this SQL is unknown: %s.", granted, v.reason);
        else
            snprintf(detail, sizeof detail, "The rule grants %s; this SQL is %s.", granted, stmt_class_name(bad));
        const char *hint = class_hint(bad);
        char generic[300];
        if (!hint) {
            snprintf(generic, sizeof generic, "Grant class %s in %s:%d if this source should run it.",
                     stmt_class_name(bad), r->file, r->line);
            hint = generic;
        }
        char id[24];
        id_text(s, id, sizeof id);
        log_event(LOG_WARN, "statement_refused", "session", id, "user", s->user,
                  "upstream_user", s->upstream_user, "env", s->env_name, "class", stmt_class_name(bad), NULL);
        audit_statement(s, "refused", bad, classes, type == 'F' ? NULL : sql);
        queue_refusal(s, type, msg, detail, hint);
        return false;
    }
    if (type != 'F') {
        if (v.prepare_name[0])
            remember_prepared(s, v.prepare_name, v.prepare_classes);
        if (v.deallocate)
            forget_prepared(s, v.deallocate_name);
    }
    if (classes & (CLASS_BIT(CLASS_DDL) | CLASS_BIT(CLASS_PRIVILEGED) | CLASS_BIT(CLASS_ROLE)))
        audit_statement(s, "allowed", worst, classes, type == 'F' ? NULL : sql);
    return true;
}

/* Swaps a marked server error for the refusal it stands for. Returns true when handled. */
static void refusal_free(struct refusal *r)
{
    free(r->message);
    free(r->detail);
    free(r->hint);
    free(r);
}

/* Takes the oldest refusal off the queue. */
static void refusal_pop(struct session *s)
{
    struct refusal *r = s->refusals;
    s->refusals = r->next;
    if (!s->refusals)
        s->refusals_tail = NULL;
    s->n_refusals--;
    refusal_free(r);
}

void session_guard_ready(struct session *s)
{
    while (s->refusals && s->refusals->unit <= s->ready_received)
        refusal_pop(s);
}

bool session_guard_replace_error(struct session *s, const uint8_t *body, uint32_t len, struct evbuffer *out)
{
    struct wire_error_fields f;
    if (wire_parse_error(body, len, &f) != 0 || !f.message)
        return false;
    char mark[64];
    snprintf(mark, sizeof mark, "pgsov:refused:%s:", s->nonce);
    const char *at = strstr(f.message, mark);
    if (!at)
        return false;
    uint32_t seq = (uint32_t)strtoul(at + strlen(mark), NULL, 10);
    /* Refusals older than seq were skipped by the server (an earlier error in their batch). */
    while (s->refusals && s->refusals->seq < seq)
        refusal_pop(s);
    if (!s->refusals || s->refusals->seq != seq) {
        /* Its text could not be kept (out of memory): still a refusal, never the marker. */
        wire_error_response(out, "ERROR", "42501", "pgsov: statement refused", NULL, NULL);
        return true;
    }
    struct refusal *r = s->refusals;
    wire_error_response(out, "ERROR", "42501", r->message, r->detail, r->hint);
    refusal_pop(s);
    return true;
}

void session_guard_free(struct session *s)
{
    while (s->refusals)
        refusal_pop(s);
    while (s->prepared) {
        struct prepared_name *p = s->prepared;
        s->prepared = p->next;
        free(p);
    }
}

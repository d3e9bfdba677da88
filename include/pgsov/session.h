/* session.h — one client connection and its upstream: startup → TLS → route → upstream
 * connect → auth → relay → close. The session owns both bufferevents; the worker owns the
 * session list. Everything here runs on the worker's event-loop thread. */
#ifndef PGSOV_SESSION_H
#define PGSOV_SESSION_H

#include <sys/socket.h>

struct worker;
struct session;

/* Takes ownership of fd (an accepted, non-blocking socket). */
void session_accept(struct worker *w, int fd, const struct sockaddr *addr, socklen_t len);

/* SIGTERM: close now if idle outside a transaction, else after the transaction ends. */
void session_drain(struct session *s);

/* Shutdown timeout or SIGINT: close now with FATAL 57P01. */
void session_terminate(struct session *s);

/* Intrusive list links used by the worker. */
struct session *session_next(struct session *s);
void session_link(struct session **head, struct session *s);
void session_unlink(struct session **head, struct session *s);

#endif

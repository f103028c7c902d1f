/* A byte stream to Redis: a TCP or unix socket, with TLS (OpenSSL) on top when the address
 * asks for it (rediss://). It is the layer under both of our Redis clients, the blocking
 * sb_redis_t (redis.c) and the gateway's async sb_aredis_t (gateway/aredis.c), which keep
 * hiredis for RESP only: hiredis's reader parses replies, hiredis's formatter or our encoder
 * writes commands. hiredis 0.14 has no TLS and does its own read()/write() on the fd inside
 * redisContext / redisAsyncContext, so we use neither context for I/O.
 *
 * Design
 *  - sb_conn_open() resolves the host, makes a non-blocking socket and starts connect();
 *    sb_conn_handshake() then finishes the TCP connect and the TLS handshake one step at a
 *    time, saying which readiness of the fd it waits for. The same object thus serves a
 *    blocking caller (sb_conn_connect: poll() against a deadline, so a handshake never hangs)
 *    and an event loop (the gateway polls the fd for what *want says).
 *  - Once up, sb_conn_read / sb_conn_write move bytes: read()/write() on the fd for plain
 *    TCP (no extra cost: the same system calls hiredis made), SSL_read/SSL_write for TLS.
 *    "Would block" comes back as 0 bytes with *want saying which readiness to wait for (TLS
 *    may need to read in order to write and the reverse). A blocking caller switches the fd
 *    to blocking with a timeout (sb_conn_set_blocking); 0 then means the timeout passed.
 *  - Decrypted bytes can wait inside OpenSSL where poll() cannot see them: sb_conn_pending()
 *    counts them, and an event loop that reads until *want is set drains them.
 *  - Trust: SSL_VERIFY_PEER against tls.ca_file (else the system store), and the name checked
 *    with X509_VERIFY_PARAM_set1_host (or set1_ip_asc for an IP literal). A failed check reads
 *    "TLS: certificate verify failed: <X509_verify_cert_error_string()>" ("certificate has
 *    expired", "hostname mismatch", "unable to get local issuer certificate", ...).
 *
 * Where Sentinel plugs in: the address given to sb_conn_open() is final. A resolver that
 * finds the master another way (asking Sentinels) fills host/port of an sb_redis_addr_t and
 * passes it here; the callers that do this are sb_redis_connect() (blocking, redis.c) and
 * sb_aredis_connect() (async, gateway/aredis.c), which both call sb_conn_open() once per
 * attempt. TLS options travel with the address, so TLS to the master needs nothing more.
 *
 * Not thread-safe: one owner at a time. Errors are SB_E* codes plus a sentence in the
 * caller's buffer (open, handshake) or in the connection (sb_conn_error, after I/O). */
#ifndef SB_CONN_H
#define SB_CONN_H

#include <stddef.h>
#include <sys/types.h>
#include "switchboard/config.h"

typedef struct sb_conn sb_conn_t;

enum { SB_CONN_WANT_READ = 1, SB_CONN_WANT_WRITE = 2 };

/* Starts connecting to addr (TCP, unix socket; TLS when addr->tls.enabled). Resolving the
 * host blocks (getaddrinfo); nothing else does. Returns the connection (caller frees with
 * sb_conn_free) or NULL with the reason in err (unknown host, refused at once, a TLS file
 * OpenSSL cannot load, out of memory). */
sb_conn_t *sb_conn_open(const sb_redis_addr_t *addr, char *err, size_t errlen);
/* Advances the TCP connect and then the TLS handshake. Returns 0 once the connection is
 * ready for sb_conn_read/write; 1 with *want set while in progress (wait for that readiness
 * of the fd and call again); SB_EREDIS with the reason in err on failure (refused, reset,
 * certificate checks). It has no clock: the caller bounds the time it waits. */
int sb_conn_handshake(sb_conn_t *c, int *want, char *err, size_t errlen);
/* sb_conn_open + sb_conn_handshake, waiting with poll() until done or timeout_ms passed
 * ("timed out connecting" / "TLS handshake timed out"). NULL with the reason in err. */
sb_conn_t *sb_conn_connect(const sb_redis_addr_t *addr, int timeout_ms, char *err,
                           size_t errlen);
void sb_conn_free(sb_conn_t *c); /* closes the socket (TLS: without waiting); NULL is fine */

int sb_conn_fd(const sb_conn_t *c);
int sb_conn_is_tls(const sb_conn_t *c);
/* Makes the fd blocking, with SO_RCVTIMEO/SO_SNDTIMEO of timeout_ms (0: none). Returns 0 or
 * SB_ERR. */
int sb_conn_set_blocking(sb_conn_t *c, int timeout_ms);

/* Reads up to len bytes. Returns > 0 bytes read; 0 with *want set when nothing can be read
 * now (on a blocking fd: the timeout passed); -1 when the connection is closed or broken
 * (sb_conn_error says why; the connection is then useless). */
ssize_t sb_conn_read(sb_conn_t *c, void *buf, size_t len, int *want);
/* Writes up to len bytes, the same contract. A TLS write that returned 0 must be repeated
 * with the same bytes first (more may follow them), as OpenSSL requires. */
ssize_t sb_conn_write(sb_conn_t *c, const void *buf, size_t len, int *want);
/* Decrypted bytes held inside OpenSSL, readable without waiting (0 for plain sockets). */
size_t sb_conn_pending(const sb_conn_t *c);
/* Why the last read/write failed ("connection closed by server", a TLS alert, ...). */
const char *sb_conn_error(const sb_conn_t *c);

#endif

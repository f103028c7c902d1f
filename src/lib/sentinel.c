/* Finding the master through Redis Sentinel (sentinel.h).
 *
 * Resolution walks the comma-separated Sentinel list in order. Each Sentinel gets its own
 * short-lived blocking client (sb_redis_t on conn.h, so plain TCP or TLS as the address says)
 * with SB_SENTINEL_TIMEOUT_MS for the connect and for each command; the master it names is
 * then checked with ROLE on another short-lived client (AUTH with the master's credentials
 * first). Nothing is kept between calls: a resolution is
 * rare (connect, reconnect, failover) and must never trust what it learnt before. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "switchboard/error.h"
#include "switchboard/fmt.h"
#include "switchboard/redis.h"
#include "switchboard/sentinel.h"

int sb_sentinel_enabled(const sb_redis_addr_t *a) { return a && a->sentinels && *a->sentinels; }

int sb_sentinel_list_check(const char *list, char *err, size_t errlen) {
    char host[SB_SENTINEL_HOST_MAX];
    int port, rc, i = 0;
    if (!list || !*list) {
        snprintf(err, errlen, "expected host:port entries separated by commas");
        return SB_EINVAL;
    }
    while ((rc = sb_fmt_hostport_nth(list, i++, host, sizeof host, &port, err, errlen)) == 1) {}
    return rc < 0 ? SB_EINVAL : SB_OK;
}

/* A short-lived client of host:port on the project's connection layer (conn.h), so TLS to
 * the Sentinels and to the master works like TLS anywhere else: a's TLS settings (CA, client
 * certificate, SNI, insecure) apply when a's scheme is rediss://. AUTH with password (and
 * user) when set. Connect and every command are bounded by SB_SENTINEL_TIMEOUT_MS. NULL with
 * the reason in err. */
static sb_redis_t *sb_sentinel_open(const sb_redis_addr_t *a, const char *host, int port,
                                    const char *user, const char *password, char *err,
                                    size_t errlen) {
    sb_redis_addr_t to;
    sb_redis_addr_init(&to);
    to.host = (char *)host;
    to.port = port;
    to.user = (char *)user;
    to.password = (char *)password;
    to.tls = a->tls;
    char why[256];
    sb_redis_t *r = sb_redis_create(&to, "sentinel");
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sb_redis_set_connect_timeout(r, SB_SENTINEL_TIMEOUT_MS);
    sb_redis_set_timeout(r, SB_SENTINEL_TIMEOUT_MS);
    if (sb_redis_connect(r, why, sizeof why) == SB_OK) return r;
    snprintf(err, errlen, "%s:%d: %s", host, port, why);
    sb_redis_free(r);
    return NULL;
}

/* Runs one command on a fresh client and returns its reply (NULL with err). */
static redisReply *sb_sentinel_ask(const sb_redis_addr_t *a, const char *host, int port,
                                   const char *user, const char *password, const char *cmd,
                                   const char *arg, char *err, size_t errlen) {
    sb_redis_t *c = sb_sentinel_open(a, host, port, user, password, err, errlen);
    if (!c) return NULL;
    redisReply *r = arg ? sb_redis_cmd(c, cmd, arg) : sb_redis_cmd(c, cmd);
    if (!r) snprintf(err, errlen, "%s:%d: no reply to %.40s", host, port, cmd);
    else if (r->type == REDIS_REPLY_ERROR) snprintf(err, errlen, "%s:%d: %s", host, port, r->str);
    sb_redis_free(c);
    if (r && r->type == REDIS_REPLY_ERROR) {
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* One Sentinel's answer about where master is: 1 with host/port, 0 with the reason in err. */
static int sb_sentinel_named(const sb_redis_addr_t *a, const char *shost, int sport, char *host,
                             size_t hostlen, int *port, char *err, size_t errlen) {
    redisReply *r = sb_sentinel_ask(a, shost, sport, NULL, a->sentinel_password,
                                    "SENTINEL get-master-addr-by-name %s", a->sentinel_master,
                                    err, errlen);
    long v = 0;
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             r->element[0]->type == REDIS_REPLY_STRING &&
             r->element[1]->type == REDIS_REPLY_STRING &&
             sb_fmt_parse_long(r->element[1]->str, 1, 65535, &v) == SB_OK;
    if (ok) snprintf(host, hostlen, "%s", r->element[0]->str);
    else if (r) snprintf(err, errlen, "Sentinel %s:%d does not know a master named '%s'", shost,
                         sport, a->sentinel_master);
    if (r) freeReplyObject(r);
    *port = (int)v;
    return ok;
}

/* Asks one Sentinel where master is, then checks ROLE there. Returns 1 with host/port of a
 * confirmed master, 0 with the reason in err. */
static int sb_sentinel_ask_master(const sb_redis_addr_t *a, const char *shost, int sport,
                                  char *host, size_t hostlen, int *port, char *err,
                                  size_t errlen) {
    if (!sb_sentinel_named(a, shost, sport, host, hostlen, port, err, errlen)) return 0;
    redisReply *r = sb_sentinel_ask(a, host, *port, a->user, a->password, "ROLE", NULL, err,
                                    errlen);
    int ok = r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
         r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "master");
    if (r && !ok && /* (a message cut at errlen is fine) */
        snprintf(err, errlen, "%s:%d, named by Sentinel %s:%d, is not a master (ROLE: %s)", host,
                 *port, shost, sport,
                 r->elements > 0 && r->element[0]->type == REDIS_REPLY_STRING
                     ? r->element[0]->str : "?") < 0)
        err[0] = '\0';
    if (r) freeReplyObject(r);
    return ok;
}

/* 1 when the Sentinel at host:port answers PING (err otherwise). */
static int sb_sentinel_alive(const sb_redis_addr_t *a, const char *host, int port, char *err,
                             size_t errlen) {
    redisReply *r = sb_sentinel_ask(a, host, port, NULL, a->sentinel_password, "PING", NULL,
                                    err, errlen);
    if (r) freeReplyObject(r);
    return r != NULL;
}

/* target := a plain TCP address host:port with the credentials the server needs. */
static int sb_sentinel_target(const sb_redis_addr_t *a, const char *host, int port,
                              sb_redis_addr_t *target) {
    sb_redis_addr_t plain = *a;
    plain.host = (char *)host;
    plain.port = port;
    plain.unix_path = NULL;
    plain.sentinels = plain.sentinel_master = plain.sentinel_password = NULL;
    if (!a->sentinel_master) { /* the Sentinel itself */
        plain.user = NULL;
        plain.password = a->sentinel_password;
        plain.db = 0;
    }
    return sb_redis_addr_copy(target, &plain);
}

int sb_sentinel_resolve(const sb_redis_addr_t *a, sb_redis_addr_t *target, char *err,
                        size_t errlen) {
    char shost[SB_SENTINEL_HOST_MAX], host[SB_SENTINEL_HOST_MAX], why[300] = "";
    int sport, port, rc;
    for (int i = 0; (rc = sb_fmt_hostport_nth(a->sentinels, i, shost, sizeof shost, &sport, why,
                                          sizeof why)) == 1; i++) {
        int found = a->sentinel_master
                        ? sb_sentinel_ask_master(a, shost, sport, host, sizeof host, &port, why,
                                                 sizeof why)
                        : sb_sentinel_alive(a, shost, sport, why, sizeof why);
        if (!found) continue;
        return a->sentinel_master ? sb_sentinel_target(a, host, port, target)
                                  : sb_sentinel_target(a, shost, sport, target);
    }
    if (a->sentinel_master)
        snprintf(err, errlen, "no Sentinel gave a reachable master '%s' (last: %s)",
                 a->sentinel_master, why);
    else
        snprintf(err, errlen, "no Sentinel answered (last: %s)", why);
    return SB_EREDIS;
}

/* ---- survey (doctor) ------------------------------------------------------------------------ */

/* The value of field name in the flat field/value array of SENTINEL master ("" if absent). */
static const char *sb_sentinel_field(const redisReply *r, const char *name) {
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        if (r->element[i]->type == REDIS_REPLY_STRING && !strcmp(r->element[i]->str, name) &&
            r->element[i + 1]->type == REDIS_REPLY_STRING)
            return r->element[i + 1]->str;
    return "";
}

/* What the Sentinel at host:port knows of the master (SENTINEL master NAME) into out. */
static void sb_sentinel_survey_master(const sb_redis_addr_t *a, const char *host, int port,
                                      sb_sentinel_survey_t *out) {
    redisReply *r = sb_sentinel_ask(a, host, port, NULL, a->sentinel_password,
                                    "SENTINEL master %s", a->sentinel_master, out->err,
                                    sizeof out->err);
    out->num_slaves = atol(sb_sentinel_field(r, "num-slaves"));
    out->num_other_sentinels = atol(sb_sentinel_field(r, "num-other-sentinels"));
    out->quorum = atol(sb_sentinel_field(r, "quorum"));
    snprintf(out->flags, sizeof out->flags, "%s", sb_sentinel_field(r, "flags"));
    if (r) freeReplyObject(r);
}

/* The ROLE of the master the Sentinels named (out->master, host:port) into out->role. */
static void sb_sentinel_survey_role(const sb_redis_addr_t *a, const char *host, int port,
                                    sb_sentinel_survey_t *out) {
    redisReply *r = sb_sentinel_ask(a, host, port, a->user, a->password, "ROLE", NULL, out->err,
                                    sizeof out->err);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        snprintf(out->role, sizeof out->role, "%s", r->element[0]->str);
    if (r) freeReplyObject(r);
}

int sb_sentinel_survey(const sb_redis_addr_t *a, sb_sentinel_survey_t *out) {
    char shost[SB_SENTINEL_HOST_MAX], host[SB_SENTINEL_HOST_MAX], first[SB_SENTINEL_HOST_MAX];
    int sport, port, fport = 0;
    memset(out, 0, sizeof *out);
    if (!sb_sentinel_enabled(a) || !a->sentinel_master) return SB_EINVAL;
    for (int i = 0; sb_fmt_hostport_nth(a->sentinels, i, shost, sizeof shost, &sport, out->err,
                                    sizeof out->err) == 1; i++) {
        out->total++;
        if (!sb_sentinel_named(a, shost, sport, host, sizeof host, &port, out->err,
                               sizeof out->err))
            continue;
        if (out->reachable++ == 0) {
            snprintf(first, sizeof first, "%s", host);
            fport = port;
            sb_sentinel_survey_master(a, shost, sport, out);
        }
        out->agree += !strcmp(host, first) && port == fport;
    }
    if (!out->reachable) return SB_EREDIS;
    snprintf(out->master, sizeof out->master, "%s:%d", first, fport);
    char why[sizeof out->err];
    snprintf(why, sizeof why, "%s", out->err);
    out->err[0] = '\0';
    sb_sentinel_survey_role(a, first, fport, out);
    if (!out->err[0]) snprintf(out->err, sizeof out->err, "%s", why);
    return SB_OK;
}

int sb_sentinel_switch_parse(const char *payload, const char *master, char *host,
                             size_t hostlen, int *port) {
    char name[256], oldip[SB_SENTINEL_HOST_MAX], newip[SB_SENTINEL_HOST_MAX];
    int oldport, newport;
    if (!payload || !master ||
        sscanf(payload, "%255s %255s %d %255s %d", name, oldip, &oldport, newip, &newport) != 5)
        return 0;
    if (strcmp(name, master) != 0 || newport < 1 || newport > 65535) return 0;
    snprintf(host, hostlen, "%s", newip);
    *port = newport;
    return 1;
}

int sb_sentinel_readonly(const redisReply *reply) {
    return reply && reply->type == REDIS_REPLY_ERROR && reply->str &&
           strncmp(reply->str, "READONLY", 8) == 0;
}

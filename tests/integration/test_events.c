/* Integration tests of the event bus (events.h) against a private redis-server: the envelope,
 * consuming as a group with ack-after-success, retries, XAUTOCLAIM of a dead consumer's
 * entries, dead-lettering, idempotency, trimming, request/response, replay, reconnects and
 * the job lifecycle audit trail. Every wait is on an observable event (a handler call, a
 * Redis state), bounded by a deadline; none is a fixed sleep. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_test_expect.h"
#include "sb_test_redis.h"
#include "switchboard/switchboard.h"

#define WAIT_MS 10000 /* deadline for any awaited event */

static sb_test_redis_t g_redis; /* the test binary's private server */

/* ---- helpers ----------------------------------------------------------------------------- */

typedef struct {
    int calls;                  /* handler invocations */
    int fail_first;             /* RETRY on the first n calls */
    int always_fail;            /* RETRY every time */
    long long last_deliveries;  /* ev->deliveries of the last call */
    char ids[64][SB_EVENT_ID_LEN];
    int respond;                /* answer requests with {"echo": data} */
    struct sb_consumer *rival;  /* on the first call, poll this consumer (see the tests) */
    int rival_takes;            /* ... until it handled this many (0: see keep_ms) */
    struct sb_consumer *self;   /* the consumer running this handler, for sb_consumer_keep */
    int keep_ms;                /* on the first call, work this long calling sb_consumer_keep */
    int kept;                   /* what sb_consumer_keep returned last on the first call */
} rec_t;

static void rival_takes_over(struct sb_consumer *rival, int n);
static void work_and_keep(rec_t *rc);

static sb_event_verdict_t rec_handler(const sb_event_t *ev, sb_redis_t *r, void *user,
                                      char *why, size_t whylen) {
    rec_t *rc = user;
    if (rc->calls < 64) snprintf(rc->ids[rc->calls], SB_EVENT_ID_LEN, "%s", ev->event_id);
    rc->calls++;
    rc->last_deliveries = ev->deliveries;
    if (rc->rival && rc->calls == 1) {
        if (rc->keep_ms) work_and_keep(rc);
        else rival_takes_over(rc->rival, rc->rival_takes);
        if (rc->self) rc->kept = sb_consumer_keep(rc->self);
        if (rc->self && rc->kept != 1) {
            snprintf(why, whylen, "entry lost");
            return SB_EVENT_RETRY;
        }
    }
    if (rc->always_fail || rc->calls <= rc->fail_first) {
        snprintf(why, whylen, "test failure");
        return SB_EVENT_RETRY;
    }
    if (rc->respond && sb_event_response_stream(ev)) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToObject(o, "echo", cJSON_Duplicate(ev->data, 1));
        char *text = sb_json_print(o);
        int ok = sb_events_respond(r, ev, text) == SB_OK;
        free(text);
        cJSON_Delete(o);
        if (!ok) return SB_EVENT_RETRY;
    }
    return SB_EVENT_ACK;
}

static sb_consumer_t *consumer(const char *type, const char *name, int min_idle_ms,
                               int max_deliveries, int idem_ttl, rec_t *rec) {
    sb_consumer_opts_t o;
    char err[128];
    sb_consumer_opts_init(&o);
    o.consumer = name;
    o.block_ms = 50;
    o.min_idle_ms = min_idle_ms;
    o.max_deliveries = max_deliveries;
    o.idempotency_ttl_s = idem_ttl;
    sb_consumer_t *c = sb_consumer_create(&g_redis.addr, &o, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(sb_consumer_subscribe(c, type, rec_handler, rec), SB_OK);
    return c;
}

/* What a test waits for, read from the consumer's counters. */
static unsigned long long m_handled(const sb_consumer_stats_t *s) { return s->handled; }
static unsigned long long m_retried(const sb_consumer_stats_t *s) { return s->retried; }
static unsigned long long m_dead(const sb_consumer_stats_t *s) { return s->dead; }
static unsigned long long m_settled(const sb_consumer_stats_t *s) {
    return s->handled + s->dead + s->duplicates; /* entries done with, one way or another */
}

/* Polls c until metric(stats) >= want or WAIT_MS passed; leaves the counters in *st. */
static void poll_until(sb_consumer_t *c, sb_consumer_stats_t *st,
                       unsigned long long (*metric)(const sb_consumer_stats_t *),
                       unsigned long long want) {
    int64_t deadline = sb_mono_ms() + WAIT_MS;
    do {
        sb_consumer_poll(c, NULL);
        sb_consumer_stats(c, st);
    } while (metric(st) < want && sb_mono_ms() < deadline);
}

/* The number of entries pending in the group (XPENDING's summary form). */
static long long pending(sb_redis_t *r, const char *key) {
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_ARRAY, "XPENDING %s %s", key, SB_EVENTS_GROUP);
    assert_true(rep->elements >= 1);
    assert_int_equal(rep->element[0]->type, REDIS_REPLY_INTEGER);
    long long v = rep->element[0]->integer;
    freeReplyObject(rep);
    return v;
}

static void publish(sb_redis_t *r, const char *type, const char *data, char *eid, char *sid) {
    assert_int_equal(sb_events_publish(r, type, data, NULL, eid, sid), SB_OK);
}

/* Reads up to n new entries as consumer `name` without acknowledging them: a consumer that
 * died mid-batch. */
static void read_and_die(sb_redis_t *r, const char *key, const char *name, int n) {
    sb_expect_ok(r, "XGROUP CREATE %s %s 0 MKSTREAM", key, SB_EVENTS_GROUP);
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_ARRAY,
                                      "XREADGROUP GROUP %s %s COUNT %d STREAMS %s >",
                                      SB_EVENTS_GROUP, name, n, key);
    assert_int_equal((int)rep->element[0]->element[1]->elements, n);
    freeReplyObject(rep);
}

/* Every test's setup and teardown: an empty server with default settings. */
#define WITH_RESET(test) cmocka_unit_test_setup_teardown(test, reset, reset)
static int reset(void **state) {
    (void)state;
    return sb_test_redis_reset(&g_redis);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_envelope_fields(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    char eid[SB_EVENT_ID_LEN], sid[SB_STREAM_ID_LEN];
    publish(r, "task.created", "{\"task_id\":\"t-1\"}", eid, sid);
    assert_int_equal(strlen(eid), 36);
    assert_int_equal(eid[14], '4'); /* UUID v4 */
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_ARRAY, "XRANGE agent:stream:task.created - +");
    assert_int_equal((int)rep->elements, 1);
    const redisReply *f = rep->element[0]->element[1];
    assert_int_equal((int)f->elements, 8); /* exactly the seed's four fields */
    assert_string_equal(f->element[0]->str, "event_id");
    assert_string_equal(f->element[1]->str, eid);
    assert_string_equal(f->element[2]->str, "event_type");
    assert_string_equal(f->element[3]->str, "task.created");
    assert_string_equal(f->element[4]->str, "timestamp");
    int64_t ms;
    assert_int_equal(sb_iso8601_parse(f->element[5]->str, &ms), SB_OK);
    assert_string_equal(f->element[6]->str, "data");
    assert_string_equal(f->element[7]->str, "{\"task_id\":\"t-1\"}");
    freeReplyObject(rep);
    /* bad input changes nothing */
    assert_int_equal(sb_events_publish(r, "task.created", "{nope", NULL, NULL, NULL), SB_EINVAL);
    assert_int_equal(sb_events_publish(r, "bad type", "{}", NULL, NULL, NULL), SB_EINVAL);
    /* a correlation id is a fifth field */
    sb_publish_opts_t po = {.correlation_id = "corr-1"};
    assert_int_equal(sb_events_publish(r, "task.created", "{}", &po, NULL, NULL), SB_OK);
    rep = sb_expect_reply(r, REDIS_REPLY_ARRAY, "XREVRANGE agent:stream:task.created + - COUNT 1");
    assert_int_equal((int)rep->element[0]->element[1]->elements, 10);
    assert_string_equal(rep->element[0]->element[1]->element[9]->str, "corr-1");
    freeReplyObject(rep);
    sb_expect_int(r, 2, "XLEN agent:stream:task.created");
    sb_redis_free(r);
}

static void test_publish_consume_ack(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    char eids[3][SB_EVENT_ID_LEN];
    for (int i = 0; i < 3; i++) publish(r, "task.created", "{\"n\":1}", eids[i], NULL);
    rec_t rec = {0};
    sb_consumer_t *c = consumer("task.created", "c1", 30000, 5, 0, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_handled, 3);
    assert_int_equal(rec.calls, 3);
    for (int i = 0; i < 3; i++) assert_string_equal(rec.ids[i], eids[i]); /* in order */
    assert_int_equal(rec.last_deliveries, 1);
    assert_int_equal(pending(r, "agent:stream:task.created"), 0);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_retry_acks_only_after_success(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    publish(r, "task.retry", "{}", NULL, NULL);
    rec_t rec = {.fail_first = 2};
    sb_consumer_t *c = consumer("task.retry", "c1", 30, 5, 0, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_retried, 1);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(pending(r, "agent:stream:task.retry"), 1); /* failed: not acknowledged */
    poll_until(c, &st, m_handled, 1);
    assert_int_equal(rec.calls, 3);
    assert_int_equal(rec.last_deliveries, 3);
    assert_int_equal((int)st.retried, 2);
    assert_int_equal(pending(r, "agent:stream:task.retry"), 0);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_claims_dead_consumers_entries(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    for (int i = 0; i < 4; i++) publish(r, "task.claim", "{}", NULL, NULL);
    read_and_die(r, "agent:stream:task.claim", "dead-1", 3);
    rec_t rec = {0};
    sb_consumer_t *c = consumer("task.claim", "survivor", 50, 5, 0, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_handled, 4);
    assert_int_equal((int)st.handled, 4);
    assert_int_equal((int)st.claimed, 3);
    assert_int_equal(pending(r, "agent:stream:task.claim"), 0);
    sb_consumer_free(c);
    sb_redis_free(r);
}

/* While our first handler overruns min_idle_ms without keeping its entry, a rival claims
 * entries of ours until it handled n. */
static void rival_takes_over(struct sb_consumer *rival, int n) {
    sb_consumer_stats_t st;
    poll_until(rival, &st, m_handled, (unsigned long long)n);
}

/* A long handler: works for keep_ms, calling sb_consumer_keep between the rival's polls. */
static void work_and_keep(rec_t *rc) {
    int64_t end = sb_mono_ms() + rc->keep_ms;
    while (sb_mono_ms() < end && (rc->kept = sb_consumer_keep(rc->self)) == 1)
        sb_consumer_poll(rc->rival, NULL);
}

static void test_batch_entry_taken_over_is_skipped(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    for (int i = 0; i < 2; i++) publish(r, "task.slow", "{}", NULL, NULL);
    rec_t rival_rec = {0}, rec = {0};
    sb_consumer_t *rival = consumer("task.slow", "rival", 50, 5, 0, &rival_rec);
    sb_consumer_t *c = consumer("task.slow", "slow", 50, 5, 0, &rec);
    rec.rival = rival;
    rec.rival_takes = 2;
    sb_consumer_stats_t st;
    poll_until(c, &st, m_handled, 1);
    /* the rival ran both; we ran the first (it overran: at-least-once) but not the second,
     * which had been taken over while it waited in our batch */
    assert_int_equal(rival_rec.calls, 2);
    assert_int_equal(rec.calls, 1);
    sb_consumer_poll(c, NULL);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(pending(r, "agent:stream:task.slow"), 0);
    sb_consumer_free(c);
    sb_consumer_free(rival);
    sb_redis_free(r);
}

/* A handler running 2.5 times min_idle_ms keeps its entry and the one waiting behind it in
 * its batch: the rival polling all along claims neither, and each is handled once, on its
 * first delivery. */
static void test_long_handler_keeps_its_entry(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    publish(r, "task.long", "{}", NULL, NULL);
    publish(r, "task.long", "{}", NULL, NULL);
    rec_t rival_rec = {0}, rec = {0};
    sb_consumer_t *rival = consumer("task.long", "rival", 1000, 5, 0, &rival_rec);
    sb_consumer_t *c = consumer("task.long", "worker", 1000, 5, 0, &rec);
    rec.rival = rival;
    rec.self = c;
    rec.keep_ms = 2500;
    assert_int_equal(sb_consumer_keep_every_ms(c), 250);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_handled, 2); /* the worker reads first: the rival finds nothing new */
    assert_int_equal(rec.kept, 1);
    assert_int_equal(rec.calls, 2);
    assert_int_equal((int)rec.last_deliveries, 1);
    assert_int_equal((int)st.retried, 0);
    sb_consumer_stats(rival, &st);
    assert_int_equal((int)st.claimed, 0);
    assert_int_equal(rival_rec.calls, 0);
    assert_int_equal(pending(r, "agent:stream:task.long"), 0);
    assert_int_equal(sb_consumer_keep(c), SB_EINVAL); /* outside a handler */
    sb_consumer_free(c);
    sb_consumer_free(rival);
    sb_redis_free(r);
}

/* A handler that stalls past min_idle_ms without keeping its entry loses it, and
 * sb_consumer_keep says so: the rival handles it, we do not ack it. */
static void test_keep_reports_a_lost_entry(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    publish(r, "task.lost", "{}", NULL, NULL);
    rec_t rival_rec = {0}, rec = {0};
    sb_consumer_t *rival = consumer("task.lost", "rival", 50, 5, 0, &rival_rec);
    sb_consumer_t *c = consumer("task.lost", "stalled", 50, 5, 0, &rec);
    rec.rival = rival;
    rec.rival_takes = 1;
    rec.self = c;
    sb_consumer_stats_t st;
    poll_until(c, &st, m_retried, 1);
    assert_int_equal(rec.kept, 0);
    assert_int_equal(rec.calls, 1);
    assert_int_equal(rival_rec.calls, 1);
    assert_int_equal((int)rival_rec.last_deliveries, 2);
    assert_int_equal((int)st.handled, 0);
    assert_int_equal(pending(r, "agent:stream:task.lost"), 0); /* acked by the rival */
    sb_consumer_free(c);
    sb_consumer_free(rival);
    sb_redis_free(r);
}

static void test_dead_letter_after_max_deliveries(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    char eid[SB_EVENT_ID_LEN];
    publish(r, "task.poison", "{\"p\":1}", eid, NULL);
    rec_t rec = {.always_fail = 1};
    sb_consumer_t *c = consumer("task.poison", "c1", 20, 3, 0, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_dead, 1);
    assert_int_equal((int)st.dead, 1);
    assert_int_equal(rec.calls, 3); /* the handler ran max_deliveries times, no more */
    assert_int_equal(pending(r, "agent:stream:task.poison"), 0);
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_ARRAY,
                                      "XRANGE agent:stream:dead:task.poison - +");
    assert_int_equal((int)rep->elements, 1);
    const redisReply *f = rep->element[0]->element[1];
    int seen = 0;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const char *k = f->element[i]->str, *v = f->element[i + 1]->str;
        if (!strcmp(k, "event_id")) seen += !strcmp(v, eid);
        if (!strcmp(k, "data")) seen += !strcmp(v, "{\"p\":1}");
        if (!strcmp(k, "deliveries")) seen += !strcmp(v, "4");
        if (!strcmp(k, "reason")) seen += strstr(v, "max 3") != NULL;
        if (!strcmp(k, "source_stream")) seen += !strcmp(v, "agent:stream:task.poison");
    }
    assert_int_equal(seen, 5);
    freeReplyObject(rep);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_malformed_entries_are_dead_lettered(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    sb_expect_type(r, REDIS_REPLY_STRING, "XADD agent:stream:task.bad * event_id x event_type "
                                          "task.bad timestamp t data {not-json");
    sb_expect_type(r, REDIS_REPLY_STRING, "XADD agent:stream:task.bad * something else");
    publish(r, "task.bad", "{}", NULL, NULL); /* a good one after them still flows */
    rec_t rec = {0};
    sb_consumer_t *c = consumer("task.bad", "c1", 30000, 5, 0, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_settled, 3);
    assert_int_equal((int)st.malformed, 2);
    assert_int_equal((int)st.dead, 2);
    assert_int_equal(rec.calls, 1);
    sb_expect_int(r, 2, "XLEN agent:stream:dead:task.bad");
    assert_int_equal(pending(r, "agent:stream:task.bad"), 0);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_idempotency_by_event_id(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    /* the same event published twice (a publisher retrying) runs once */
    sb_publish_opts_t po = {.event_id = "11111111-1111-4111-8111-111111111111"};
    assert_int_equal(sb_events_publish(r, "task.idem", "{}", &po, NULL, NULL), SB_OK);
    assert_int_equal(sb_events_publish(r, "task.idem", "{}", &po, NULL, NULL), SB_OK);
    /* a consumer crashed after marking an event processed but before XACK */
    char eid[SB_EVENT_ID_LEN], key[128];
    publish(r, "task.idem", "{}", eid, NULL);
    read_and_die(r, "agent:stream:task.idem", "dead-1", 3);
    snprintf(key, sizeof key, "agent:events:processed:%s:%s", SB_EVENTS_GROUP, eid);
    sb_expect_ok(r, "SET %s 1 EX 60", key);
    rec_t rec = {0};
    sb_consumer_t *c = consumer("task.idem", "survivor", 30, 5, 600, &rec);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_settled, 3);
    assert_int_equal(rec.calls, 1);
    assert_string_equal(rec.ids[0], "11111111-1111-4111-8111-111111111111");
    assert_int_equal((int)st.duplicates, 2);
    assert_int_equal(pending(r, "agent:stream:task.idem"), 0);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_trimming_bounds_the_stream(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    sb_publish_opts_t po = {.maxlen = 100};
    for (int i = 0; i < 2000; i++)
        assert_int_equal(sb_events_publish(r, "task.trim", "{}", &po, NULL, NULL), SB_OK);
    long long n = sb_query_int(r, "XLEN agent:stream:task.trim");
    /* MAXLEN ~ trims whole nodes (100 entries each by default): about 100, never unbounded */
    assert_true(n >= 100 && n <= 300);
    sb_redis_free(r);
}

typedef struct {
    rec_t rec;
    atomic_int stop;
} responder_t;

static void *responder_main(void *arg) {
    responder_t *rs = arg;
    sb_consumer_t *c = consumer("document.process", "responder", 30000, 5, 0, &rs->rec);
    sb_consumer_run(c, &rs->stop);
    sb_consumer_free(c);
    return NULL;
}

static void test_request_response(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    responder_t rs = {.rec = {.respond = 1}};
    atomic_init(&rs.stop, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, responder_main, &rs), 0);
    char *reply = NULL, err[256];
    int rc = sb_events_request(r, "document.process", "{\"doc_id\":\"456\"}", WAIT_MS, NULL,
                               &reply, err, sizeof err);
    assert_int_equal(rc, SB_OK);
    cJSON *doc = sb_json_parse(reply, strlen(reply));
    assert_non_null(doc);
    const cJSON *echo = sb_json_obj(doc, "echo");
    assert_string_equal(sb_json_str(echo, "doc_id"), "456");
    assert_non_null(strstr(sb_json_str(echo, "response_stream"), "agent:stream:response:"));
    /* the requester deleted its response stream */
    sb_expect_len(r, 0, "KEYS agent:stream:response:*");
    cJSON_Delete(doc);
    free(reply);
    atomic_store(&rs.stop, 1);
    pthread_join(t, NULL);
    /* nobody answers: a timeout, not a hang */
    int64_t t0 = sb_mono_ms();
    rc = sb_events_request(r, "nobody.listens", "{}", 300, NULL, &reply, err, sizeof err);
    assert_int_equal(rc, SB_ETIMEOUT);
    assert_null(reply);
    assert_true(sb_mono_ms() - t0 >= 300);
    assert_int_equal(sb_events_request(r, "x", "[1]", 100, NULL, &reply, err, sizeof err),
                     SB_EINVAL);
    sb_redis_free(r);
}

typedef struct {
    int n;
    char ids[16][SB_STREAM_ID_LEN];
} seen_t;

static int collect(const sb_event_t *ev, void *user) {
    seen_t *s = user;
    if (s->n < 16) snprintf(s->ids[s->n], SB_STREAM_ID_LEN, "%s", ev->id);
    s->n++;
    return 0;
}

static void test_replay_by_id_and_time(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    char sids[6][SB_STREAM_ID_LEN], from[SB_STREAM_ID_LEN];
    for (int i = 0; i < 6; i++) publish(r, "task.replay", "{}", NULL, sids[i]);
    seen_t s = {0};
    assert_int_equal(sb_events_replay(r, "task.replay", sids[2], 0, collect, &s), 4);
    assert_string_equal(s.ids[0], sids[2]);
    assert_string_equal(s.ids[3], sids[5]);
    memset(&s, 0, sizeof s);
    assert_int_equal(sb_events_replay(r, "task.replay", "-", 2, collect, &s), 2);
    /* by time: every entry at or after the 4th entry's millisecond, given as ISO 8601 */
    long long ms = atoll(sids[3]);
    char iso[SB_ISO_LEN];
    sb_iso8601(ms, iso);
    assert_int_equal(sb_events_parse_from(iso, from), SB_OK);
    int want = 0;
    for (int i = 0; i < 6; i++) want += atoll(sids[i]) >= ms;
    memset(&s, 0, sizeof s);
    assert_int_equal(sb_events_replay(r, "task.replay", from, 0, collect, &s), want);
    /* the accepted --from forms */
    assert_int_equal(sb_events_parse_from("1731304200000", from), SB_OK);
    assert_string_equal(from, "1731304200000-0");
    assert_int_equal(sb_events_parse_from("1731304200000-7", from), SB_OK);
    assert_string_equal(from, "1731304200000-7");
    assert_int_equal(sb_events_parse_from("2024-11-11T05:50:00.123456+00:00", from), SB_OK);
    assert_string_equal(from, "1731304200123-0");
    assert_int_equal(sb_events_parse_from("yesterday", from), SB_EINVAL);
    sb_redis_free(r);
}

static void test_consumer_survives_redis_restart(void **state) {
    (void)state;
    rec_t rec = {0};
    sb_consumer_t *c = consumer("task.restart", "c1", 30000, 5, 0, &rec);
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    publish(r, "task.restart", "{}", NULL, NULL);
    sb_consumer_stats_t st;
    poll_until(c, &st, m_handled, 1);
    assert_int_equal(rec.calls, 1);
    /* Redis dies and comes back empty: the consumer reconnects and recreates its group */
    assert_int_equal(sb_test_redis_restart(&g_redis), 0);
    sb_redis_free(r);
    r = sb_test_redis_client(&g_redis);
    sb_consumer_poll(c, NULL); /* notices the loss */
    publish(r, "task.restart", "{}", NULL, NULL);
    poll_until(c, &st, m_handled, 2);
    assert_int_equal((int)st.handled, 2);
    sb_consumer_free(c);
    sb_redis_free(r);
}

static void test_job_created_audit_event(void **state) {
    (void)state;
    sb_redis_t *r = sb_test_redis_client(&g_redis);
    char id[SB_JOB_ID_LEN], err[128];
    sb_user_t user = {.public_key = "GXHEXYVepv5EQnhq9VYVWkvW6QDMRj4QZA2B2mmKpCzq"};
    cJSON *payload = cJSON_Parse("{\"amount\":1000}");
    assert_int_equal(sb_job_enqueue(r, "rebalance", &user, payload, id, err, sizeof err), SB_OK);
    cJSON_Delete(payload);
    redisReply *rep = sb_expect_reply(r, REDIS_REPLY_ARRAY, "XRANGE agent:stream:job.created - +");
    assert_int_equal((int)rep->elements, 1);
    sb_event_t ev;
    cJSON *data = NULL;
    char why[128];
    assert_int_equal(sb_event_from_reply(&ev, "agent:stream:job.created", rep->element[0], &data,
                                         why, sizeof why), SB_OK);
    assert_string_equal(ev.event_type, "job.created");
    assert_string_equal(sb_json_str(data, "jobId"), id);
    assert_string_equal(sb_json_str(data, "type"), "rebalance");
    assert_string_equal(sb_json_str(data, "userId"), user.public_key);
    cJSON_Delete(data);
    freeReplyObject(rep);
    sb_redis_free(r);
}

int main(void) {
    if (sb_test_redis_start(&g_redis) != 0) {
        fprintf(stderr, "could not start redis-server\n");
        return 1;
    }
    signal(SIGPIPE, SIG_IGN); /* a write to a dead Redis must fail, not kill us */
    sb_log_set_level(SB_LOG_ERROR);
    struct CMUnitTest tests[] = {
        WITH_RESET(test_envelope_fields),
        WITH_RESET(test_publish_consume_ack),
        WITH_RESET(test_retry_acks_only_after_success),
        WITH_RESET(test_claims_dead_consumers_entries),
        WITH_RESET(test_batch_entry_taken_over_is_skipped),
        WITH_RESET(test_long_handler_keeps_its_entry),
        WITH_RESET(test_keep_reports_a_lost_entry),
        WITH_RESET(test_dead_letter_after_max_deliveries),
        WITH_RESET(test_malformed_entries_are_dead_lettered),
        WITH_RESET(test_idempotency_by_event_id),
        WITH_RESET(test_trimming_bounds_the_stream),
        WITH_RESET(test_request_response),
        WITH_RESET(test_replay_by_id_and_time),
        WITH_RESET(test_consumer_survives_redis_restart),
        WITH_RESET(test_job_created_audit_event),
    };
    int rc = sb_test_run("integration/test_events", tests, sizeof tests / sizeof tests[0]);
    sb_test_redis_stop(&g_redis);
    return rc;
}

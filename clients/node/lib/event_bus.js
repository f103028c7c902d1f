// Seed 003's event bus for Node, in the wire format of `switchboard events` (SPEC §7): the
// entry fields event_id, event_type, timestamp, data (JSON text) and an optional
// correlation_id on agent:stream:{type}. The consumer does what src/lib/events_consumer.c
// does: XREADGROUP as a group, XACK after the handler resolved, XAUTOCLAIM of entries idle
// for minIdleMs (a dead consumer's, or our failed ones), re-claim through
// scripts/lua/events_keep.lua of entries that waited long in a batch, dead letters to
// agent:stream:dead:{type} (fields + reason, deliveries, source_stream, source_id, group, in
// one MULTI with the XACK) for entries delivered more than maxDeliveries times, malformed, or
// whose handler threw DeadLetter, and idempotency by event_id
// (agent:events:processed:{group}:{event_id}) when idempotencyTtl > 0. A handler's resolved
// value (not undefined/null) is the response to a request.
'use strict';
const os = require('node:os');
const Redis = require('ioredis');
const c = require('./common');

const PREFIX = 'agent:stream:';
const RESPONSE_PREFIX = `${PREFIX}response:`;
const RESPONSE_TTL = 300;
const CLAIM_ROUNDS = 8;

class DeadLetter extends Error {}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fieldsOf = (flat) => {
  const o = {};
  for (let i = 0; i + 1 < (flat || []).length; i += 2) o[flat[i]] = flat[i + 1];
  return o;
};

class EventBus {
  constructor(opts = {}) {
    this.url = opts.url;
    this.maxlen = opts.maxlen ?? c.envInt('EVENTS_MAXLEN', 0);
    this.count = opts.count || c.envInt('EVENTS_COUNT', 10);
    this.blockMs = opts.blockMs || c.envInt('EVENTS_BLOCK_MS', 1000);
    this.minIdleMs = opts.minIdleMs || c.envInt('EVENTS_MIN_IDLE_MS', 30000);
    this.maxDeliveries = opts.maxDeliveries || c.envInt('EVENTS_MAX_DELIVERIES', 5);
    this.idempotencyTtl = opts.idempotencyTtl ?? c.envInt('EVENTS_IDEMPOTENCY_TTL', 0);
    this.deadMaxlen = opts.deadMaxlen ?? 10000;
    this.handlers = new Map();
    this._redis = null;
    this._running = null;
  }

  get redis() {
    if (!this._redis) {
      this._redis = new Redis(this.url || c.redisUrl());
      this._redis.on('error', () => {}); // reconnects by itself; failures surface per call
      this._redis.defineCommand('sbKeep', { numberOfKeys: 1, lua: c.lua('events_keep') });
    }
    return this._redis;
  }

  async publish(eventType, data, correlationId = null, { eventId } = {}) {
    c.checkEventType(eventType);
    const id = eventId || c.uuid();
    const args = ['event_id', id, 'event_type', eventType, 'timestamp', c.iso(), 'data', c.dumps(data)];
    if (correlationId !== null && correlationId !== undefined) args.push('correlation_id', String(correlationId));
    const trim = this.maxlen > 0 ? ['MAXLEN', '~', this.maxlen] : [];
    await this.redis.xadd(PREFIX + eventType, ...trim, '*', ...args);
    return id;
  }

  // Publishes a request and resolves to the response's data, or null after timeout seconds.
  async request(eventType, data, timeout = 30) {
    if (!data || typeof data !== 'object' || Array.isArray(data)) throw new TypeError('request data must be an object');
    const cid = c.uuid();
    const stream = RESPONSE_PREFIX + cid;
    await this.publish(eventType, { ...data, response_stream: stream }, null, { eventId: cid });
    const conn = this.redis.duplicate(); // a BLOCK must not hold up the bus's other commands
    const deadline = Date.now() + timeout * 1000;
    try {
      for (;;) {
        const left = deadline - Date.now();
        if (left <= 0) return null;
        const got = await conn.xread('COUNT', 1, 'BLOCK', Math.max(1, Math.min(left, 1000)), 'STREAMS', stream, '0');
        if (got && got[0][1].length) return JSON.parse(fieldsOf(got[0][1][0][1]).data);
      }
    } finally {
      await this.redis.del(stream);
      conn.disconnect();
    }
  }

  // XADDs reply as the response to request (the data an event handler got). false when the
  // event is not a request.
  async respond(request, reply) {
    const rs = request && request.response_stream;
    if (typeof rs !== 'string' || !rs.startsWith(RESPONSE_PREFIX) || !c.EVENT_TYPE_RE.test(rs.slice(PREFIX.length))) return false;
    await this.redis.multi()
      .xadd(rs, '*', 'event_id', c.uuid(), 'event_type', rs.slice(PREFIX.length), 'timestamp', c.iso(),
        'data', c.dumps(reply), 'correlation_id', request.event_id)
      .expire(rs, RESPONSE_TTL).exec();
    return true;
  }

  // subscribe(type, fn) or subscribe(type)(fn): fn(data) handles events of type, async or not.
  subscribe(eventType, fn) {
    c.checkEventType(eventType);
    const register = (f) => {
      if (this.handlers.has(eventType)) throw new Error(`${eventType} already has a handler`);
      this.handlers.set(eventType, f);
      return f;
    };
    return fn ? register(fn) : register;
  }

  // Consumes until stopConsumer(); survives a lost Redis. Resolves when stopped.
  async startConsumer({ consumerGroup, consumerName } = {}) {
    if (!this.handlers.size) throw new Error('nothing subscribed');
    this.group = consumerGroup || process.env.EVENTS_GROUP || 'agent-group';
    this.consumer = consumerName || process.env.EVENTS_CONSUMER || `${os.hostname()}-${process.pid}`;
    this._stop = false;
    this._blocking = this.redis.duplicate();
    this._blocking.on('error', () => {});
    let ready = false;
    let nextClaim = 0;
    let backoff = 100;
    this._running = (async () => {
      while (!this._stop) {
        try {
          if (!ready) { await this._createGroups(); ready = true; }
          if (Date.now() >= nextClaim) {
            await this._claim();
            nextClaim = Date.now() + Math.min(this.minIdleMs / 2, 5000);
          }
          await this._read();
          backoff = 100;
        } catch (e) {
          if (this._stop) break;
          if (/NOGROUP/.test(e.message)) { ready = false; continue; }
          console.error(`switchboard events: ${e.message}; again in ${backoff} ms`);
          ready = false;
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 5000);
        }
      }
    })();
    return this._running;
  }

  async stopConsumer() {
    this._stop = true;
    if (this._blocking) this._blocking.disconnect(); // ends a BLOCK at once
    if (this._running) await this._running;
    this._running = null;
    if (this._redis) { this._redis.disconnect(); this._redis = null; }
  }

  async _createGroups() {
    for (const t of this.handlers.keys()) {
      try {
        await this.redis.xgroup('CREATE', PREFIX + t, this.group, '0', 'MKSTREAM');
      } catch (e) {
        if (!/BUSYGROUP/.test(e.message)) throw e;
      }
    }
  }

  async _read() {
    const keys = [...this.handlers.keys()].map((t) => PREFIX + t);
    const got = await this._blocking.xreadgroup('GROUP', this.group, this.consumer, 'COUNT', this.count,
      'BLOCK', this.blockMs, 'STREAMS', ...keys, ...keys.map(() => '>'));
    const at = Date.now();
    for (const [stream, entries] of got || []) {
      for (const [id, flat] of entries) {
        if (this._stop) return;
        await this._handle(stream, id, fieldsOf(flat), 1, at);
      }
    }
  }

  async _claim() {
    for (const t of this.handlers.keys()) {
      const stream = PREFIX + t;
      let cursor = '0-0';
      for (let round = 0; round < CLAIM_ROUNDS; round++) {
        const [next, entries] = await this.redis.xautoclaim(stream, this.group, this.consumer,
          this.minIdleMs, cursor, 'COUNT', this.count);
        cursor = next;
        const at = Date.now();
        for (const e of entries) {
          if (!e || this._stop) continue;
          const p = await this.redis.xpending(stream, this.group, e[0], e[0], 1);
          await this._handle(stream, e[0], fieldsOf(e[1]), p.length ? Number(p[0][3]) : 2, at);
        }
        if (cursor === '0-0') break;
      }
    }
  }

  async _handle(stream, id, fields, deliveries, gotAt) {
    if (Date.now() - gotAt > this.minIdleMs / 2 &&
        Number((await this.redis.sbKeep(stream, this.group, this.consumer, id))[0]) !== 1) return;
    const type = stream.slice(PREFIX.length);
    let data = null;
    let why = ['event_id', 'event_type', 'timestamp', 'data'].find((f) => !(f in fields));
    why = why ? `missing field ${why}` : null;
    if (!why) {
      try { data = JSON.parse(fields.data); } catch { why = 'data is not valid JSON'; }
    }
    if (deliveries > this.maxDeliveries) {
      return this._dead(stream, id, fields, deliveries, `delivered ${deliveries} times (max ${this.maxDeliveries})`, data);
    }
    if (why) return this._dead(stream, id, fields, deliveries, why, data);
    const ev = data && typeof data === 'object' && !Array.isArray(data) ? data : { value: data };
    const env = { event_id: fields.event_id, event_type: fields.event_type, timestamp: fields.timestamp,
      correlation_id: fields.correlation_id || null, stream_id: id };
    for (const [k, v] of Object.entries(env)) if (!(k in ev)) Object.defineProperty(ev, k, { value: v, enumerable: false });
    const pkey = `agent:events:processed:${this.group}:${fields.event_id}`;
    if (this.idempotencyTtl > 0 && await this.redis.exists(pkey)) return this._ack(stream, id, pkey);
    let reply;
    try {
      reply = await this.handlers.get(type)(ev);
    } catch (e) {
      if (e instanceof DeadLetter) return this._dead(stream, id, fields, deliveries, e.message || 'handler gave up', ev);
      console.error(`switchboard events: event ${fields.event_id} (${type}, entry ${id}) failed on delivery ${deliveries} of ${this.maxDeliveries}: ${e.message}`);
      return undefined;
    }
    if (reply !== undefined && reply !== null) await this.respond({ ...ev, event_id: fields.event_id }, reply);
    return this._ack(stream, id, pkey);
  }

  async _ack(stream, id, pkey) {
    const p = this.redis.pipeline();
    if (this.idempotencyTtl > 0) p.set(pkey, 1, 'EX', this.idempotencyTtl, 'NX');
    p.xack(stream, this.group, id);
    await p.exec();
  }

  async _dead(stream, id, fields, deliveries, reason, data) {
    const type = stream.slice(PREFIX.length);
    const flat = Object.entries({ ...fields, reason, deliveries: String(deliveries), source_stream: stream,
      source_id: id, group: this.group }).flat();
    const trim = this.deadMaxlen > 0 ? ['MAXLEN', '~', this.deadMaxlen] : [];
    await this.redis.multi().xadd(`${PREFIX}dead:${type}`, ...trim, '*', ...flat)
      .xack(stream, this.group, id).exec();
    console.error(`switchboard events: event ${fields.event_id || '?'} (${type}, entry ${id}) dead-lettered: ${reason}`);
    if (data && typeof data === 'object' && fields.event_id) {
      await this.respond({ ...data, event_id: fields.event_id }, { status: 'error', error: reason });
    }
  }
}

module.exports = { EventBus, DeadLetter, PREFIX };

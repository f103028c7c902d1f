// The producer side (seeds 001/002) for Node: enqueue, job, wait, metricsSummary,
// checkRateLimit. enqueue runs scripts/lua/submit.lua, the script of the gateway and of
// `switchboard enqueue`: record, queue, user index, counter, job.created audit event and the
// {type}:created notification in one atomic step; checkRateLimit runs it with no job.
'use strict';
const crypto = require('node:crypto');
const Redis = require('ioredis');
const c = require('./common');

const TIMEOUT_MS = 300000; // wait(): 5 minutes, as seed 001 recommends
const POLL_MS = 2000;      // wait(): the record is read at least this often
const FINAL = new Set(['done', 'error', 'cancelled']);

class RateLimited extends Error {
  constructor(retryMs) { super(`rate limited: retry in ${retryMs} ms`); this.retryMs = retryMs; }
}

class Client {
  // opts: { url, redis (an ioredis client to use), type (default JOB_TYPE or rebalance) }
  constructor(opts = {}) {
    this.redis = opts.redis || new Redis(opts.url || c.redisUrl());
    this.type = c.checkType(opts.type || process.env.JOB_TYPE || 'rebalance');
    this.redis.defineCommand('sbSubmit', { numberOfKeys: 10, lua: c.lua('submit') });
    this.redis.defineCommand('sbExecStats', { numberOfKeys: 1, lua: c.lua('exec_stats') });
  }

  // Queues a job of type for user (a publicKey or {publicKey, id}); resolves to its id.
  // opts: { rateUser, limit, window } checks the user's sliding window first (RateLimited).
  async enqueue(type, payload, user, opts = {}) {
    c.checkType(type);
    const u = typeof user === 'object' && user ? { ...user } : { publicKey: user };
    c.checkPublicKey(u.publicKey);
    const jobId = c.newJobId();
    const now = Date.now();
    const owner = { publicKey: u.publicKey };
    if (u.id !== undefined && u.id !== null) owner.id = String(u.id);
    const record = c.dumps({ jobId, type, status: 'queued', user: owner, payload,
      attempts: 0, createdAt: c.iso(now), updatedAt: c.iso(now) });
    const [keys, args] = rateArgs(type, opts.rateUser, opts.limit, opts.window, now);
    keys.push(`agent:${type}:job:${jobId}`, `agent:${type}:jobs`, `agent:${type}:user:${u.publicKey}`,
      `metrics:agent:${type}:counters:${c.utcDate(now)}:jobs`, 'agent:stream:job.created',
      `agent:${type}:index`, `agent:${type}:hist:${jobId}`);
    args.push(jobId, record, c.JOB_TTL, now, c.AUDIT_MAXLEN, c.uuid(), 'job.created', c.iso(now),
      c.dumps({ jobId, type, userId: u.publicKey }), `agent:${type}:events`,
      c.dumps({ event: `${type}:created`, room: `user:${u.publicKey}`, data: { jobId } }),
      u.publicKey);
    const [allowed, , retry] = await this.redis.sbSubmit(...keys, ...args);
    if (!allowed) throw new RateLimited(Number(retry));
    return jobId;
  }

  // The record, or null when there is none.
  async job(jobId, type = this.type) {
    const raw = await this.redis.get(`agent:${c.checkType(type)}:job:${c.checkJobId(jobId)}`);
    return raw === null ? null : JSON.parse(raw);
  }

  // Follows the job on agent:{type}:status and resolves to its final record; the record is
  // also read every POLL_MS (the fallback). Rejects after timeoutMs, or when there is no job.
  async wait(jobId, { timeoutMs = TIMEOUT_MS, type = this.type } = {}) {
    c.checkType(type);
    c.checkJobId(jobId);
    const sub = this.redis.duplicate();
    let wake = () => {};
    sub.on('message', (_ch, m) => {
      try {
        const s = JSON.parse(m);
        if (s.jobId === jobId && FINAL.has(s.status)) wake();
      } catch { /* not ours to judge */ }
    });
    try {
      await sub.subscribe(`agent:${type}:status`);
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const rec = await this.job(jobId, type);
        if (!rec) throw new Error(`job ${jobId} (${type}) not found`);
        if (FINAL.has(rec.status)) return rec;
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`timeout: job ${jobId} not finished after ${timeoutMs} ms`);
        await new Promise((resolve) => {
          const t = setTimeout(resolve, Math.min(left, POLL_MS));
          wake = () => { clearTimeout(t); resolve(); };
        });
      }
    } finally {
      sub.disconnect();
    }
  }

  // Seed 002's getMetricsSummary(days).
  async metricsSummary(days = 7, type = this.type) {
    c.checkType(type);
    if (!Number.isInteger(days) || days < 1 || days > 30) throw new RangeError('days must be 1..30');
    const names = ['jobs', 'failed', 'done', 'rate_hits', 'rate_blocked'];
    const now = Date.now();
    const p = this.redis.pipeline();
    for (let d = 0; d < days; d++) {
      const day = c.utcDate(now - d * 86400000);
      p.mget(names.map((n) => `metrics:agent:${type}:counters:${day}:${n}`));
    }
    const sums = names.map(() => 0);
    for (const [err, row] of await p.exec()) {
      if (err) throw err;
      row.forEach((v, i) => { sums[i] += Number(v || 0); });
    }
    const st = await this.redis.sbExecStats(`metrics:agent:${type}:execution_times`, ...c.HIST_BOUNDS);
    const count = Number(st[0]);
    return { totalJobs: sums[0], failedJobs: sums[1], doneJobs: sums[2],
      avgExecutionTime: count ? Math.round((Number(st[1]) / count) * 100) / 100 : 0,
      p95ExecutionTime: Number(st[2]), rateLimit: { hits: sums[3], blocked: sums[4] } };
  }

  // Seed 002's checkRateLimit(user, 10, 60): records the request and resolves true, or false
  // when the window is full.
  async checkRateLimit(user, limit, window, type = this.type) {
    c.checkType(type);
    const [keys, args] = rateArgs(type, user, limit, window, Date.now());
    keys.push('', '', '', '', '', '', '');
    args.push('', '', c.JOB_TTL, 0, c.AUDIT_MAXLEN, '', '', '', '', '', '', '');
    const [allowed] = await this.redis.sbSubmit(...keys, ...args);
    return allowed === 1;
  }

  close() { this.redis.disconnect(); }
}

// KEYS 1-3 and ARGV 1-4 of submit.lua (empty without a rate user).
function rateArgs(type, user, limit, window, now) {
  const win = (window || c.envInt('RATE_WINDOW', 60)) * 1000;
  if (user === undefined || user === null) return [['', '', ''], [0, win, '', c.METRICS_TTL]];
  const lim = limit || c.envInt('RATE_LIMIT', 10);
  if (typeof user !== 'string' || user.length < 1 || user.length > 128 || lim < 1) {
    throw new TypeError('bad rate user or limit');
  }
  const day = c.utcDate(now);
  return [[`metrics:agent:${type}:rate:${user}`, `metrics:agent:${type}:counters:${day}:rate_hits`,
    `metrics:agent:${type}:counters:${day}:rate_blocked`],
  [lim, win, crypto.randomBytes(8).toString('hex'), c.METRICS_TTL]];
}

module.exports = { Client, RateLimited, TIMEOUT_MS, POLL_MS };

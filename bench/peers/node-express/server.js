// The comparison peer of bench/gateway_post.sh: POST /api/v1/agent/rebalance written the way
// seeds 001/002 describe the original Node backend (express + ioredis + jsonwebtoken), doing
// the same Redis work as `switchboard gateway`: HS256 token check, payload validation, a
// sliding-window rate limit (ZREMRANGEBYSCORE/ZADD/ZCARD/PEXPIRE in one MULTI, daily
// rate_hits/rate_blocked counters), then the job record, LPUSH, the user index, the daily
// jobs counter and the `rebalance:created` notification in one MULTI. 202 {jobId, status}.
'use strict';
const crypto = require('node:crypto');
const express = require('express');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');

const SECRET = process.env.JWT_SECRET;
const RATE_LIMIT = Number(process.env.RATE_LIMIT || 10);
const RATE_WINDOW_MS = Number(process.env.RATE_WINDOW || 60) * 1000;
const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const logger = { info: (...a) => console.log('[info]', ...a) };
const app = express();
app.use(express.json({ limit: '64kb' }));

function auth(req, res, next) {
  const h = req.headers.authorization || '';
  if (!h.startsWith('Bearer ')) return res.status(401).json({ success: false, error: 'unauthorized' });
  try {
    req.user = jwt.verify(h.slice(7), SECRET, { algorithms: ['HS256'] });
    return next();
  } catch (e) {
    return res.status(401).json({ success: false, error: 'unauthorized', message: e.message });
  }
}

const day = () => new Date().toISOString().slice(0, 10);
const counter = (name) => `metrics:agent:rebalance:counters:${day()}:${name}`;

async function checkRateLimit(userId, limit, windowMs) {
  const key = `metrics:agent:rebalance:rate:${userId}`;
  const now = Date.now();
  const res = await redis.multi()
    .zremrangebyscore(key, 0, now - windowMs)
    .zadd(key, now, `${now}-${crypto.randomBytes(4).toString('hex')}`)
    .zcard(key)
    .pexpire(key, windowMs)
    .incr(counter('rate_hits'))
    .exec();
  const allowed = res[2][1] <= limit;
  if (!allowed) await redis.incr(counter('rate_blocked'));
  return allowed;
}

app.post('/api/v1/agent/rebalance', auth, async (req, res) => {
  try {
    const { amount, priority } = req.body || {};
    if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0) {
      return res.status(400).json({ success: false, error: 'bad_request', message: 'amount must be a finite number greater than 0' });
    }
    if (priority !== undefined && !['low', 'medium', 'high'].includes(priority)) {
      return res.status(400).json({ success: false, error: 'bad_request', message: 'priority must be low, medium or high' });
    }
    const userId = req.user.sub || req.user.publicKey;
    if (!(await checkRateLimit(userId, RATE_LIMIT, RATE_WINDOW_MS))) {
      res.set('Retry-After', String(Math.ceil(RATE_WINDOW_MS / 1000)));
      return res.status(429).json({ success: false, error: 'rate_limited' });
    }
    const jobId = `${Date.now()}-${crypto.randomBytes(4).toString('hex')}`;
    const now = new Date().toISOString();
    const job = { jobId, type: 'rebalance', status: 'queued',
      user: { publicKey: req.user.publicKey, id: req.user.sub }, payload: req.body, attempts: 0,
      createdAt: now, updatedAt: now };
    const userKey = `agent:rebalance:user:${req.user.publicKey}`;
    await redis.multi()
      .set(`agent:rebalance:job:${jobId}`, JSON.stringify(job), 'EX', 86400)
      .lpush('agent:rebalance:jobs', jobId)
      .zadd(userKey, Date.now(), jobId)
      .expire(userKey, 86400)
      .incr(counter('jobs'))
      .expire(counter('jobs'), 7 * 86400)
      .publish('agent:rebalance:events', JSON.stringify({ event: 'rebalance:created',
        room: `user:${req.user.publicKey}`, data: { jobId } }))
      .exec();
    logger.info(`LPUSH jobId=${jobId} to queue=agent:rebalance:jobs`);
    return res.status(202).json({ jobId, status: 'queued' });
  } catch (e) {
    return res.status(503).json({ success: false, error: 'redis_unavailable', message: e.message });
  }
});

const port = Number(process.env.PORT || 3002);
app.listen(port, '127.0.0.1', () => logger.info(`node-express peer listening on ${port}`));

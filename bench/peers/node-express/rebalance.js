// POST /api/v1/agent/rebalance as seeds 001/002 describe the original Node backend, shared by
// the POST peer (server.js, bench/gateway_post.sh) and the end-to-end peer
// (../node-design/server.js, bench/e2e.sh). Same Redis work as `switchboard gateway`: HS256
// token check, payload validation, a sliding-window rate limit (ZREMRANGEBYSCORE/ZADD/ZCARD/
// PEXPIRE in one MULTI, daily rate_hits/rate_blocked counters), then the job record, LPUSH,
// the user index, the daily jobs counter and the `rebalance:created` notification (PUBLISH on
// agent:rebalance:events) in one MULTI. 202 {jobId, status}.
//
// The caller passes its own `jsonwebtoken` and `ioredis` instances, so this file needs no
// node_modules of its own and each peer keeps its package.json.
'use strict';
const crypto = require('node:crypto');

function rebalanceHandlers({ redis, jwt, secret, rateLimit = 10, rateWindowMs = 60000, logger }) {
  function auth(req, res, next) {
    const h = req.headers.authorization || '';
    if (!h.startsWith('Bearer ')) return res.status(401).json({ success: false, error: 'unauthorized' });
    try {
      req.user = jwt.verify(h.slice(7), secret, { algorithms: ['HS256'] });
      return next();
    } catch (e) {
      return res.status(401).json({ success: false, error: 'unauthorized', message: e.message });
    }
  }

  const day = () => new Date().toISOString().slice(0, 10);
  const counter = (name) => `metrics:agent:rebalance:counters:${day()}:${name}`;

  async function checkRateLimit(userId) {
    const key = `metrics:agent:rebalance:rate:${userId}`;
    const now = Date.now();
    const res = await redis.multi()
      .zremrangebyscore(key, 0, now - rateWindowMs)
      .zadd(key, now, `${now}-${crypto.randomBytes(4).toString('hex')}`)
      .zcard(key)
      .pexpire(key, rateWindowMs)
      .incr(counter('rate_hits'))
      .exec();
    const allowed = res[2][1] <= rateLimit;
    if (!allowed) await redis.incr(counter('rate_blocked'));
    return allowed;
  }

  async function create(req, res) {
    try {
      const { amount, priority } = req.body || {};
      if (typeof amount !== 'number' || !Number.isFinite(amount) || amount <= 0) {
        return res.status(400).json({ success: false, error: 'bad_request', message: 'amount must be a finite number greater than 0' });
      }
      if (priority !== undefined && !['low', 'medium', 'high'].includes(priority)) {
        return res.status(400).json({ success: false, error: 'bad_request', message: 'priority must be low, medium or high' });
      }
      const userId = req.user.sub || req.user.publicKey;
      if (!(await checkRateLimit(userId))) {
        res.set('Retry-After', String(Math.ceil(rateWindowMs / 1000)));
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
  }

  return { auth, create };
}

module.exports = { rebalanceHandlers };

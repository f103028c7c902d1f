// The comparison peer of bench/gateway_post.sh: POST /api/v1/agent/rebalance written the way
// seeds 001/002 describe the original Node backend (express + ioredis + jsonwebtoken); the
// route itself is rebalance.js (shared with the end-to-end peer ../node-design).
'use strict';
const express = require('express');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');
const { rebalanceHandlers } = require('./rebalance');

const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const logger = { info: (...a) => console.log('[info]', ...a) };
const { auth, create } = rebalanceHandlers({
  redis, jwt, secret: process.env.JWT_SECRET, logger,
  rateLimit: Number(process.env.RATE_LIMIT || 10),
  rateWindowMs: Number(process.env.RATE_WINDOW || 60) * 1000,
});
const app = express();
app.use(express.json({ limit: '64kb' }));
app.post('/api/v1/agent/rebalance', auth, create);

const port = Number(process.env.PORT || 3002);
app.listen(port, '127.0.0.1', () => logger.info(`node-express peer listening on ${port}`));

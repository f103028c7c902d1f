// The seeds' Node design, end to end (seeds 000/001): one process with express + ioredis for
// the HTTP API and a socket.io v4 server for the browser side, used as the comparison peer of
// bench/e2e.sh.
//   - POST /api/v1/agent/rebalance: the same route as the POST peer (../node-express/
//     rebalance.js): rate-limit MULTI, then one MULTI with the record, LPUSH, user index,
//     counter and the `rebalance:created` PUBLISH on agent:rebalance:events.
//   - socket.io: the handshake's auth.token is verified (HS256); the socket joins
//     user:{publicKey}.
//   - seed 001's `_subscribeToStatusUpdates`: a duplicate ioredis connection SUBSCRIBEs to
//     agent:rebalance:status and forwards each message as `rebalance:{status}` with
//     {jobId, status, result?, error?, details?, timestamp} to room user:{userId}; it also
//     forwards agent:rebalance:events (the created notification) to its room, exactly the
//     Redis work `switchboard gateway` does for the same job.
// Env: PORT, REDIS_URL, JWT_SECRET, RATE_LIMIT, RATE_WINDOW (s).
'use strict';
const http = require('node:http');
const express = require('express');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');
const { Server } = require('socket.io');
const { rebalanceHandlers } = require('../node-express/rebalance');

const SECRET = process.env.JWT_SECRET;
const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
const logger = { info: (...a) => console.log('[info]', ...a), error: (...a) => console.error('[error]', ...a) };

const { auth, create } = rebalanceHandlers({
  redis, jwt, secret: SECRET, logger,
  rateLimit: Number(process.env.RATE_LIMIT || 10),
  rateWindowMs: Number(process.env.RATE_WINDOW || 60) * 1000,
});
const app = express();
app.use(express.json({ limit: '64kb' }));
app.post('/api/v1/agent/rebalance', auth, create);

const server = http.createServer(app);
const io = new Server(server, { cors: { origin: '*' } });
io.use((socket, next) => {
  try {
    socket.user = jwt.verify(socket.handshake.auth?.token || '', SECRET, { algorithms: ['HS256'] });
    return next();
  } catch (e) {
    return next(new Error(`unauthorized: ${e.message}`));
  }
});
io.on('connection', (socket) => socket.join(`user:${socket.user.publicKey}`));

async function subscribeToStatusUpdates() {
  const subscriber = redis.duplicate();
  subscriber.on('message', (channel, message) => {
    try {
      const msg = JSON.parse(message);
      if (channel === 'agent:rebalance:events') {
        io.to(msg.room).emit(msg.event, msg.data);
        return;
      }
      const { jobId, status, userId, result, error, details, timestamp } = msg;
      io.to(`user:${userId}`).emit(`rebalance:${status}`,
        { jobId, status, result, error, details, timestamp: timestamp || new Date().toISOString() });
    } catch (e) {
      logger.error(`[Redis Subscribe] bad message: ${e.message}`);
    }
  });
  await subscriber.subscribe('agent:rebalance:status', 'agent:rebalance:events');
}

const port = Number(process.env.PORT || 3003);
subscribeToStatusUpdates().then(() => {
  server.listen(port, '127.0.0.1', () => logger.info(`node-design peer listening on ${port}`));
});

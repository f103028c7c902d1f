// The comparison peer of bench/socketio_fanout.sh: the real-time side of the seeds' Node
// backend (seed 001), i.e. socket.io 4 with @socket.io/redis-adapter on ioredis, a JWT auth
// middleware, each socket in room user:{publicKey}, and the pub/sub subscriber of
// agent:rebalance:status forwarding each status as `rebalance:{status}` to the user's room
// (io.to(room).emit, as the seed does; with the adapter that also publishes for other nodes).
'use strict';
const http = require('node:http');
const { Server } = require('socket.io');
const { createAdapter } = require('@socket.io/redis-adapter');
const Redis = require('ioredis');
const jwt = require('jsonwebtoken');

const SECRET = process.env.JWT_SECRET;
const url = process.env.REDIS_URL || 'redis://127.0.0.1:6379';
const pub = new Redis(url);
const sub = pub.duplicate();
const statusSub = pub.duplicate();

const httpServer = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const io = new Server(httpServer, { cors: { origin: true, credentials: true } });
io.adapter(createAdapter(pub, sub));

io.use((socket, next) => {
  try {
    const token = socket.handshake.auth && socket.handshake.auth.token;
    socket.data.user = jwt.verify(token, SECRET, { algorithms: ['HS256'] });
    next();
  } catch (e) {
    next(new Error(e.message));
  }
});

io.on('connection', (socket) => {
  socket.join(`user:${socket.data.user.publicKey}`);
  if (socket.data.user.role === 'admin') socket.join('admins');
});

statusSub.on('message', (channel, message) => {
  let m;
  try { m = JSON.parse(message); } catch { return; }
  if (channel.endsWith(':events')) {
    if (m && m.event && m.room) io.to(m.room).emit(m.event, m.data);
    return;
  }
  const { jobId, status, userId, result, error, details, timestamp } = m || {};
  if (!jobId || !status || !userId) return;
  io.to(`user:${userId}`).emit(`rebalance:${status}`,
    { jobId, status, result, error, details, timestamp: timestamp || new Date().toISOString() });
});
statusSub.subscribe('agent:rebalance:status', 'agent:rebalance:events');

httpServer.listen(Number(process.env.PORT || 3001), process.env.BIND || '127.0.0.1', () => {
  console.log(`node-socketio listening on ${process.env.PORT}`);
});

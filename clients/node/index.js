// switchboard-client: Switchboard for Node (README "Node").
//   Client                 enqueue / job / wait / metricsSummary / checkRateLimit (ioredis)
//   eventBus, EventBus     seed 003's event bus on Redis Streams
//   worker, Permanent      a function as a `switchboard agent --worker` handler process
//   JobTracker             follow a job over Socket.IO with HTTP polling (also ./browser)
'use strict';
const { Client, RateLimited } = require('./lib/client');
const { EventBus, DeadLetter } = require('./lib/event_bus');
const { worker, Permanent } = require('./lib/worker');
const { JobTracker } = require('./browser');

let bus = null;
const defaultBus = () => { if (!bus) bus = new EventBus(); return bus; };
// The default bus (settings from the environment), with seed 003's method names.
const eventBus = {
  publish: (...a) => defaultBus().publish(...a),
  request: (...a) => defaultBus().request(...a),
  respond: (...a) => defaultBus().respond(...a),
  subscribe: (...a) => defaultBus().subscribe(...a),
  startConsumer: (...a) => defaultBus().startConsumer(...a),
  stopConsumer: (...a) => defaultBus().stopConsumer(...a),
};

module.exports = { Client, RateLimited, EventBus, DeadLetter, eventBus, worker, Permanent, JobTracker };

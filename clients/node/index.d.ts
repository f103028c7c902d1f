// Types of switchboard-client (see README "Node" and index.js).
import type { Redis } from 'ioredis';
import type { Socket } from 'socket.io-client';

export interface JobUser { publicKey: string; id?: string }
export interface JobRecord<P = unknown, R = unknown> {
  jobId: string; type: string; status: 'queued' | 'processing' | 'done' | 'error' | 'cancelled';
  user: JobUser; payload: P; attempts: number; createdAt: string; updatedAt: string;
  result?: R; error?: string; details?: string;
}
export interface MetricsSummary {
  totalJobs: number; failedJobs: number; doneJobs: number;
  avgExecutionTime: number; p95ExecutionTime: number;
  rateLimit: { hits: number; blocked: number };
}
export class RateLimited extends Error { retryMs: number }
export class Client {
  constructor(opts?: { url?: string; redis?: Redis; type?: string });
  redis: Redis;
  type: string;
  enqueue(type: string, payload: unknown, user: string | JobUser,
          opts?: { rateUser?: string; limit?: number; window?: number }): Promise<string>;
  job(jobId: string, type?: string): Promise<JobRecord | null>;
  wait(jobId: string, opts?: { timeoutMs?: number; type?: string }): Promise<JobRecord>;
  metricsSummary(days?: number, type?: string): Promise<MetricsSummary>;
  checkRateLimit(user: string, limit?: number, window?: number, type?: string): Promise<boolean>;
  close(): void;
}

/** The data of an event, with its envelope as non-enumerable members. */
export type EventData<T = Record<string, unknown>> = T & {
  readonly event_id: string; readonly event_type: string; readonly timestamp: string;
  readonly correlation_id: string | null; readonly stream_id: string;
  response_stream?: string;
};
export type EventHandler = (data: EventData) => unknown | Promise<unknown>;
export interface EventBusOptions {
  url?: string; maxlen?: number; count?: number; blockMs?: number; minIdleMs?: number;
  maxDeliveries?: number; idempotencyTtl?: number; deadMaxlen?: number;
}
export class DeadLetter extends Error {}
export class EventBus {
  constructor(opts?: EventBusOptions);
  publish(eventType: string, data: unknown, correlationId?: string | null,
          opts?: { eventId?: string }): Promise<string>;
  /** Resolves to the response's data, or null after timeout seconds. */
  request(eventType: string, data: Record<string, unknown>, timeout?: number): Promise<unknown | null>;
  respond(request: EventData, reply: unknown): Promise<boolean>;
  subscribe(eventType: string, fn: EventHandler): EventHandler;
  subscribe(eventType: string): (fn: EventHandler) => EventHandler;
  startConsumer(opts?: { consumerGroup?: string; consumerName?: string }): Promise<void>;
  stopConsumer(): Promise<void>;
}
export const eventBus: Pick<EventBus, 'publish' | 'request' | 'respond' | 'subscribe' | 'startConsumer' | 'stopConsumer'>;

export interface WorkerJob<P = any> {
  jobId: string; type: string; payload: P; user: JobUser | null; attempt: number;
}
export class Permanent extends Error {}
export function worker(fn: (job: WorkerJob) => unknown | Promise<unknown>,
                       io?: { input?: NodeJS.ReadableStream; output?: NodeJS.WritableStream }): Promise<void>;

export interface StatusUpdate { status: string; jobId: string; [k: string]: unknown }
export class JobTracker {
  constructor(opts: { url: string; token: string; type?: string; socket?: Socket;
                      io?: (url: string, opts: object) => Socket; fetch?: typeof fetch });
  socket: Socket;
  create(payload: unknown): Promise<string>;
  record(jobId: string): Promise<JobRecord | null>;
  follow(jobId: string, opts?: { onStatus?: (s: StatusUpdate) => void; pollMs?: number;
                                 timeoutMs?: number }): Promise<JobRecord>;
  createAndFollow(payload: unknown, opts?: { onStatus?: (s: StatusUpdate) => void;
                                             pollMs?: number; timeoutMs?: number }): Promise<JobRecord>;
  close(): void;
}

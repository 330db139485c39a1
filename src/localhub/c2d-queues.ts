/**
 * Where a C2D queue lives: per-device queues with IoT Hub's semantics (docs/PROTOCOL.md section 7); their outcomes
 * become records in the feedback queue (feedback-queue.ts). Transport-neutral: endpoints attach sinks and report completions.
 */
import { randomUUID } from 'node:crypto';
import { AMQP_CONDITIONS, IotHubError } from '../core/errors';
import { C2DMessage, FeedbackStatus, MAX_C2D_MESSAGE_BYTES, messageSize } from '../core/message';
import type { FeedbackQueue } from './feedback-queue';

export interface QueuedMessage {
  seq: number;
  lockToken: string;
  message: C2DMessage;
  enqueuedTime: number;
  deliveryCount: number;
  expiry: number;
  /** Set while delivered and not yet settled. */
  lockedUntil?: number;
  /** The connection it was delivered on. */
  lockedBy?: DeviceSink;
}

/** A connected device's receiving side; returns false when it has no room (credit, window). */
export interface DeviceSink {
  deliver(entry: QueuedMessage): boolean;
  /** A short description of the link's state, for diagnostics. */
  describe?(): string;
}

export interface QueueOptions {
  queueDepth: number;
  defaultTtlMs: number;
  lockMs: number;
  maxDeliveryCount: number;
}

interface DeviceQueue {
  /** By seq, in arrival order (a Map keeps insertion order): removing any entry is O(1), not an array splice. */
  entries: Map<number, QueuedMessage>;
  /** The delivered and unsettled ones, by lock token: settling looks up one entry instead of scanning the queue. */
  locked: Map<string, QueuedMessage>;
  sink?: DeviceSink;
  nextSeq: number;
}

/** On disk, an entry has no lock: a hub that starts again delivers it afresh, with a new lock token. */
export interface StoredQueues {
  queues: Record<
    string,
    {
      nextSeq: number;
      entries: (Omit<QueuedMessage, 'message' | 'lockToken' | 'lockedUntil' | 'lockedBy'> & {
        message: Omit<C2DMessage, 'body'> & { body: string };
      })[];
    }
  >;
}

/** Each entry's JSON but its delivery count (the one field that changes), made once: see toJSONText. */
const entryJson = new WeakMap<QueuedMessage, string>();

export class C2DQueues {
  private readonly queues = new Map<string, DeviceQueue>();
  onChange: () => void = () => undefined;

  constructor(
    private readonly o: QueueOptions,
    private readonly feedback: FeedbackQueue,
    private readonly generationOf: (deviceId: string) => string | undefined,
  ) {}

  private queue(deviceId: string): DeviceQueue {
    let q = this.queues.get(deviceId);
    if (!q) {
      q = { entries: new Map(), locked: new Map(), nextSeq: 1 };
      this.queues.set(deviceId, q);
    }
    return q;
  }

  /** For tests and diagnostics: how many are waiting, locked, and whether a device is attached. */
  inspect(deviceId: string): { length: number; locked: number; attached: boolean; link?: string } {
    const q = this.queues.get(deviceId);
    return {
      length: q?.entries.size ?? 0,
      locked: q?.locked.size ?? 0,
      attached: !!q?.sink,
      link: q?.sink?.describe?.(),
    };
  }

  length(deviceId: string): number {
    return this.queues.get(deviceId)?.entries.size ?? 0;
  }

  /** Throws IotHubError with the AMQP condition a real hub rejects with. */
  enqueue(deviceId: string, message: C2DMessage, now = Date.now()): QueuedMessage {
    const size = messageSize(message);
    if (size > MAX_C2D_MESSAGE_BYTES) {
      throw new IotHubError(
        'MESSAGE_TOO_LARGE',
        `Message size ${size} exceeds the maximum of ${MAX_C2D_MESSAGE_BYTES} bytes`,
        { amqpCondition: AMQP_CONDITIONS.messageSizeExceeded },
      );
    }
    const q = this.queue(deviceId);
    if (q.entries.size >= this.o.queueDepth) {
      throw new IotHubError(
        'QUEUE_FULL',
        `C2D messages enqueued for the device exceeded the queue limit of ${this.o.queueDepth}, see more at http://aka.ms/iothub403004`,
        { amqpCondition: AMQP_CONDITIONS.resourceLimitExceeded },
      );
    }
    const entry: QueuedMessage = {
      // The lock token is made when the entry is delivered (pump).
      seq: q.nextSeq++,
      lockToken: '',
      message,
      enqueuedTime: now,
      deliveryCount: 0,
      expiry: message.expiryTimeUtc ?? now + this.o.defaultTtlMs,
    };
    q.entries.set(entry.seq, entry);
    this.onChange();
    this.pump(deviceId);
    return entry;
  }

  /** A device connected (or got credit): deliver what is ready, in order. */
  attach(deviceId: string, sink: DeviceSink): () => void {
    const q = this.queue(deviceId);
    q.sink = sink;
    this.pump(deviceId);
    return () => {
      // What this connection held unsettled comes back at once (no increment: not abandoned), even when a
      // newer connection for the device already took over.
      let released = false;
      for (const e of q.locked.values()) {
        if (e.lockedBy === sink) {
          this.unlock(q, e);
          released = true;
        }
      }
      if (q.sink === sink) q.sink = undefined;
      else if (released) this.pump(deviceId);
    };
  }

  pump(deviceId: string, now = Date.now()): void {
    const q = this.queues.get(deviceId);
    if (!q?.sink) return;
    for (const e of q.entries.values()) {
      if (e.lockedUntil !== undefined || e.expiry <= now) continue;
      e.lockedUntil = now + this.o.lockMs;
      e.lockedBy = q.sink;
      e.lockToken = randomUUID();
      q.locked.set(e.lockToken, e);
      if (!q.sink.deliver(e)) {
        this.unlock(q, e);
        break;
      }
    }
  }

  private unlock(q: DeviceQueue, e: QueuedMessage): void {
    q.locked.delete(e.lockToken);
    e.lockedUntil = undefined;
    e.lockedBy = undefined;
  }

  private lockedEntry(deviceId: string, lockToken: string): { q: DeviceQueue; e: QueuedMessage } {
    const q = this.queues.get(deviceId);
    const e = q?.locked.get(lockToken);
    if (!q || !e) {
      throw new IotHubError('LOCK_LOST', 'the message lock was lost or the message was settled already', {
        amqpCondition: AMQP_CONDITIONS.lockLost,
      });
    }
    return { q, e };
  }

  private take(deviceId: string, lockToken: string): QueuedMessage {
    const { q, e } = this.lockedEntry(deviceId, lockToken);
    q.locked.delete(lockToken);
    q.entries.delete(e.seq);
    return e;
  }

  complete(deviceId: string, lockToken: string): void {
    const e = this.take(deviceId, lockToken);
    this.feedbackFor(deviceId, e, 'Success');
    this.onChange();
    this.pump(deviceId);
  }

  reject(deviceId: string, lockToken: string): void {
    const e = this.take(deviceId, lockToken);
    this.feedbackFor(deviceId, e, 'Rejected');
    this.onChange();
    this.pump(deviceId);
  }

  abandon(deviceId: string, lockToken: string): void {
    const { q, e } = this.lockedEntry(deviceId, lockToken);
    e.deliveryCount++;
    this.unlock(q, e);
    if (e.deliveryCount >= this.o.maxDeliveryCount) {
      q.entries.delete(e.seq);
      this.feedbackFor(deviceId, e, 'DeliveryCountExceeded');
    }
    this.onChange();
    // Redeliver on the next turn, so an abandon loop cannot starve the event loop.
    setImmediate(() => this.pump(deviceId));
  }

  purge(deviceId: string): number {
    const q = this.queues.get(deviceId);
    if (!q) return 0;
    const purged = [...q.entries.values()];
    q.entries.clear();
    q.locked.clear();
    for (const e of purged) this.feedbackFor(deviceId, e, 'Purged');
    this.onChange();
    return purged.length;
  }

  /** Expiry and lock timeouts; the hub calls this on a timer. */
  sweep(now = Date.now()): void {
    let changed = false;
    for (const [deviceId, q] of this.queues) {
      let relocked = false;
      for (const e of q.entries.values()) {
        if (e.expiry <= now && e.lockedUntil === undefined) {
          q.entries.delete(e.seq);
          this.feedbackFor(deviceId, e, 'Expired');
          changed = true;
        } else if (e.lockedUntil !== undefined && e.lockedUntil <= now) {
          // Lock timeout: back to the queue without an increment.
          this.unlock(q, e);
          relocked = true;
        }
      }
      if (relocked) this.pump(deviceId, now);
    }
    if (changed) this.onChange();
  }

  private feedbackFor(deviceId: string, e: QueuedMessage, status: FeedbackStatus): void {
    const ack = e.message.ack ?? 'none';
    const wanted =
      ack === 'full' || (ack === 'positive' && status === 'Success') || (ack === 'negative' && status !== 'Success');
    if (!wanted) return;
    this.feedback.add({
      originalMessageId: e.message.messageId ?? '',
      deviceId,
      statusCode: status,
      description: status,
      enqueuedTimeUtc: new Date().toISOString(),
      deviceGenerationId: this.generationOf(deviceId) ?? '',
    });
  }

  forget(deviceId: string): void {
    this.queues.delete(deviceId);
    this.onChange();
  }

  /**
   * The queues as JSON text. Each entry's JSON (body in base64) is made once and cached: a snapshot of
   * thousands of queued messages is then string joining, not re-encoding, so saving never stalls the hub.
   */
  toJSONText(): string {
    const parts: string[] = [];
    for (const [id, q] of this.queues) {
      if (q.entries.size === 0) continue;
      const entries: string[] = [];
      for (const e of q.entries.values()) {
        let json = entryJson.get(e);
        if (json === undefined) {
          const message = JSON.stringify({ ...e.message, body: e.message.body.toString('base64') });
          json = `{"seq":${e.seq},"enqueuedTime":${e.enqueuedTime},"expiry":${e.expiry},"message":${message},"deliveryCount":`;
          entryJson.set(e, json);
        }
        entries.push(`${json}${e.deliveryCount}}`);
      }
      parts.push(`${JSON.stringify(id)}:{"nextSeq":${q.nextSeq},"entries":[${entries.join(',')}]}`);
    }
    return `{"queues":{${parts.join(',')}}}`;
  }

  load(data: StoredQueues | undefined): void {
    for (const [id, q] of Object.entries(data?.queues ?? {})) {
      const entries = q.entries.map((e): QueuedMessage => ({
        ...e,
        lockToken: '',
        message: { ...e.message, body: Buffer.from(e.message.body, 'base64') },
      }));
      this.queues.set(id, { nextSeq: q.nextSeq, entries: new Map(entries.map((e) => [e.seq, e])), locked: new Map() });
    }
  }
}

/** The hub's one feedback queue (docs/PROTOCOL.md section 6): records batched into messages for competing back ends. */
import { randomUUID } from 'node:crypto';
import { FeedbackRecord } from '../core/message';

export interface StoredFeedback {
  batches: Omit<FeedbackBatch, 'lockedBy'>[];
  pending: FeedbackRecord[];
}

const batchJson = new WeakMap<FeedbackBatch, string>();

/** A back end's feedback receiving link; returns false when it has no credit. */
export interface FeedbackSink {
  deliver(batch: FeedbackBatch): boolean;
}

export interface FeedbackBatch {
  id: string;
  records: FeedbackRecord[];
  enqueuedTime: number;
  lockedBy?: FeedbackSink;
}

export interface FeedbackOptions {
  batchMs: number;
  batchSize: number;
  ttlMs: number;
}

/** The hub's one feedback queue: records batched into messages, delivered to competing consumers. */
export class FeedbackQueue {
  private pending: FeedbackRecord[] = [];
  private timer: NodeJS.Timeout | undefined;
  private readonly batches: FeedbackBatch[] = [];
  private readonly sinks: FeedbackSink[] = [];
  private next = 0;
  onChange: () => void = () => undefined;

  constructor(private readonly o: FeedbackOptions) {}

  add(r: FeedbackRecord): void {
    this.pending.push(r);
    if (this.pending.length >= this.o.batchSize) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), this.o.batchMs);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.pending.length > 0) {
      this.batches.push({
        id: randomUUID(),
        records: this.pending.splice(0, this.o.batchSize),
        enqueuedTime: Date.now(),
      });
    }
    this.onChange();
    this.pump();
  }

  attach(sink: FeedbackSink): () => void {
    this.sinks.push(sink);
    this.pump();
    return () => {
      const i = this.sinks.indexOf(sink);
      if (i >= 0) this.sinks.splice(i, 1);
      for (const b of this.batches) if (b.lockedBy === sink) b.lockedBy = undefined;
      this.pump();
    };
  }

  /** Round-robin over consumers with credit: competing consumers split the batches. */
  pump(): void {
    const now = Date.now();
    for (let i = this.batches.length - 1; i >= 0; i--) {
      if (!this.batches[i].lockedBy && this.batches[i].enqueuedTime + this.o.ttlMs <= now) this.batches.splice(i, 1);
    }
    for (const b of this.batches) {
      if (b.lockedBy) continue;
      let delivered = false;
      for (let tries = 0; tries < this.sinks.length && !delivered; tries++) {
        const sink = this.sinks[this.next++ % this.sinks.length];
        b.lockedBy = sink;
        delivered = sink.deliver(b);
        if (!delivered) b.lockedBy = undefined;
      }
      if (!delivered) return;
    }
  }

  /** accepted: gone; otherwise back for redelivery. */
  settle(batch: FeedbackBatch, accepted: boolean): void {
    const i = this.batches.indexOf(batch);
    if (i < 0) return;
    if (accepted) this.batches.splice(i, 1);
    else batch.lockedBy = undefined;
    this.onChange();
    if (!accepted) setImmediate(() => this.pump());
  }

  get size(): number {
    return this.batches.length + (this.pending.length ? 1 : 0);
  }

  /** As JSON text (StoredFeedback); a batch never changes once made, so its JSON is made once (thousands may wait for a reader). */
  toJSONText(): string {
    const batches = this.batches.map((b) => {
      let json = batchJson.get(b);
      if (json === undefined) {
        json = JSON.stringify({ id: b.id, records: b.records, enqueuedTime: b.enqueuedTime });
        batchJson.set(b, json);
      }
      return json;
    });
    return `{"batches":[${batches.join(',')}],"pending":${JSON.stringify(this.pending)}}`;
  }

  load(data: Partial<StoredFeedback> | undefined): void {
    for (const b of data?.batches ?? []) this.batches.push({ ...b });
    for (const r of data?.pending ?? []) this.add(r);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

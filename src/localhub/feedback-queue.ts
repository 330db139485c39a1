/** The hub's one feedback queue (docs/PROTOCOL.md section 6): records batched into messages for competing back ends. */
import { randomUUID } from 'node:crypto';
import { FeedbackRecord } from '../core/message';
import type { StoredBatch } from './feedback-journal';

/** In the hub's state file: the records not yet batched. Batches live in the journal; files from before it hold them here. */
export interface StoredFeedback {
  batches?: StoredBatch[];
  pending: FeedbackRecord[];
}

/** Hears each batch made and each batch gone (the journal that saves them). */
export interface BatchJournal {
  added(b: StoredBatch): void;
  removed(b: StoredBatch): void;
}

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
  journal: BatchJournal | undefined;

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
      const b = { id: randomUUID(), records: this.pending.splice(0, this.o.batchSize), enqueuedTime: Date.now() };
      this.batches.push(b);
      this.journal?.added(b);
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
      const b = this.batches[i];
      if (!b.lockedBy && b.enqueuedTime + this.o.ttlMs <= now) {
        this.batches.splice(i, 1);
        this.journal?.removed(b);
      }
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
    // The journal saves this; the state file holds no batches, so it has nothing to save (no onChange).
    if (accepted) {
      this.batches.splice(i, 1);
      this.journal?.removed(batch);
    } else {
      batch.lockedBy = undefined;
      setImmediate(() => this.pump());
    }
  }

  get size(): number {
    return this.batches.length + (this.pending.length ? 1 : 0);
  }

  /** As JSON text (StoredFeedback): the records not yet batched (a few; the batches are in the journal). */
  toJSONText(): string {
    return `{"pending":${JSON.stringify(this.pending)}}`;
  }

  /** The batches waiting (unsettled), as the journal saves them. */
  storedBatches(): StoredBatch[] {
    return this.batches;
  }

  /** journaled: batches the journal holds already; data: the state file's part (its batches, from before the journal, are journaled now). */
  load(data: Partial<StoredFeedback> | undefined, journaled: StoredBatch[] = []): void {
    const copy = (b: StoredBatch): FeedbackBatch => ({ id: b.id, records: b.records, enqueuedTime: b.enqueuedTime });
    for (const b of journaled) this.batches.push(copy(b));
    for (const b of data?.batches ?? []) {
      const batch = copy(b);
      this.batches.push(batch);
      this.journal?.added(batch);
    }
    for (const r of data?.pending ?? []) this.add(r);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}

/**
 * What a config node's back end saw lately, for the editor's sidebar: feedback outcomes counted in time buckets, and the
 * last sends with their delivery state. Bounded memory: a fixed number of buckets and of remembered sends.
 */
import { outcomeOf, DeliveryOutcome } from './delivery-tracker';
import { FeedbackRecord, FeedbackStatus } from './message';

export const FEEDBACK_STATUSES: readonly FeedbackStatus[] = [
  'Success',
  'Expired',
  'Rejected',
  'DeliveryCountExceeded',
  'Purged',
];

export type SendState = 'sending' | 'enqueued' | 'failed' | DeliveryOutcome;

export interface SendRow {
  messageId: string;
  deviceId: string;
  at: number;
  state: SendState;
  /** Why a send failed (the error's code). */
  error?: string;
}

export interface FeedbackBucket {
  /** Start of the bucket, ms since the epoch. */
  t: number;
  counts: Record<FeedbackStatus, number>;
}

export interface FeedbackStats {
  bucketMs: number;
  buckets: FeedbackBucket[];
  totals: Record<FeedbackStatus, number>;
}

const zero = (): Record<FeedbackStatus, number> => ({
  Success: 0,
  Expired: 0,
  Rejected: 0,
  DeliveryCountExceeded: 0,
  Purged: 0,
});

export class HubActivity {
  private readonly buckets = new Map<number, Record<FeedbackStatus, number>>();
  private readonly sends = new Map<string, SendRow>();

  constructor(
    readonly bucketMs = 10_000,
    /** How long counts are kept. */
    readonly keepMs = 15 * 60_000,
    readonly maxSends = 200,
  ) {}

  sent(deviceId: string, messageId: string | undefined, now = Date.now()): SendRow | undefined {
    if (!messageId) return undefined;
    const row: SendRow = { messageId, deviceId, at: now, state: 'sending' };
    this.sends.delete(messageId);
    this.sends.set(messageId, row);
    // A Map keeps insertion order: the first key is the oldest.
    while (this.sends.size > this.maxSends) this.sends.delete(this.sends.keys().next().value as string);
    return row;
  }

  settled(row: SendRow | undefined, err?: { code?: string }): void {
    if (!row || row.state !== 'sending') return;
    if (err) {
      row.state = 'failed';
      row.error = err.code ?? 'ERROR';
    } else row.state = 'enqueued';
  }

  feedback(records: FeedbackRecord[], now = Date.now()): void {
    const t = now - (now % this.bucketMs);
    let b = this.buckets.get(t);
    if (!b) {
      b = zero();
      this.buckets.set(t, b);
      for (const k of this.buckets.keys()) if (k < now - this.keepMs) this.buckets.delete(k);
    }
    for (const r of records) {
      b[r.statusCode]++;
      const row = this.sends.get(r.originalMessageId);
      if (row) row.state = outcomeOf(r.statusCode);
    }
  }

  /** Counts per bucket over the last `minutes` (at most what is kept), oldest first, empty buckets included. */
  stats(minutes: number, now = Date.now()): FeedbackStats {
    const span = Math.min(Math.max(1, minutes) * 60_000, this.keepMs);
    const last = now - (now % this.bucketMs);
    const buckets: FeedbackBucket[] = [];
    const totals = zero();
    for (let t = last - span + this.bucketMs; t <= last; t += this.bucketMs) {
      const counts = { ...(this.buckets.get(t) ?? zero()) };
      for (const s of FEEDBACK_STATUSES) totals[s] += counts[s];
      buckets.push({ t, counts });
    }
    return { bucketMs: this.bucketMs, buckets, totals };
  }

  /** The last sends, newest first. */
  recentSends(limit = 50): SendRow[] {
    return [...this.sends.values()]
      .slice(-limit)
      .reverse()
      .map((r) => ({ ...r }));
  }
}

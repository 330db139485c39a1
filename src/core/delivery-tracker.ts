/**
 * Delivery tracking: matches feedback records to sent messageIds and reports one outcome
 * per message, or `timeout`. Feedback has one competing consumer per hub, so a record
 * taken by another instance surfaces here as a timeout, never as silence.
 */
import { FeedbackRecord, FeedbackStatus } from './message';

export type DeliveryOutcome = 'delivered' | 'expired' | 'rejected' | 'deliveryCountExceeded' | 'purged' | 'timeout';

const OUTCOMES: Record<FeedbackStatus, DeliveryOutcome> = {
  Success: 'delivered',
  Expired: 'expired',
  Rejected: 'rejected',
  DeliveryCountExceeded: 'deliveryCountExceeded',
  Purged: 'purged',
};

export function outcomeOf(status: FeedbackStatus): DeliveryOutcome {
  return OUTCOMES[status];
}

type Settled = (outcome: DeliveryOutcome, record?: FeedbackRecord) => void;

interface Pending {
  deadline: number;
  settled: Settled;
}

export class DeliveryTracker {
  private readonly pending = new Map<string, Pending>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(private readonly sweepMs = 250) {}

  get size(): number {
    return this.pending.size;
  }

  /** Waits for the feedback of messageId; `settled` runs exactly once. */
  track(messageId: string, timeoutMs: number, settled: Settled): void {
    this.pending.set(messageId, { deadline: Date.now() + timeoutMs, settled });
    if (!this.sweeper) {
      this.sweeper = setInterval(() => this.sweep(), this.sweepMs);
      this.sweeper.unref();
    }
  }

  /** Forgets a message whose send failed (it will get no feedback). */
  forget(messageId: string): void {
    this.pending.delete(messageId);
    this.stopIfIdle();
  }

  handleRecords(records: FeedbackRecord[]): void {
    for (const r of records) {
      const p = this.pending.get(r.originalMessageId);
      if (!p) continue;
      this.pending.delete(r.originalMessageId);
      p.settled(outcomeOf(r.statusCode), r);
    }
    this.stopIfIdle();
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) {
      if (p.deadline <= now) {
        this.pending.delete(id);
        p.settled('timeout');
      }
    }
    this.stopIfIdle();
  }

  private stopIfIdle(): void {
    if (this.pending.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }

  /** Drops every pending message (the node is closing); returns how many were dropped. */
  close(): number {
    const n = this.pending.size;
    this.pending.clear();
    this.stopIfIdle();
    return n;
  }
}

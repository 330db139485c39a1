/**
 * rhea (1.x to 3.x) can coalesce dispositions settled in one tick into a range sent with the
 * first one's outcome (docs/PROTOCOL.md, pitfalls). This settles in order, one outcome per tick.
 */
export class DispositionQueue {
  private queue: { outcome: string; settle: () => void }[] = [];
  private scheduled = false;

  settle(outcome: string, settle: () => void): void {
    this.queue.push({ outcome, settle });
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  private drain(): void {
    this.scheduled = false;
    const first = this.queue[0]?.outcome;
    while (this.queue.length > 0 && this.queue[0].outcome === first) {
      const item = this.queue.shift() as { settle: () => void };
      try {
        item.settle();
      } catch {
        // The link is gone; the peer redelivers what it did not see settled.
      }
    }
    if (this.queue.length > 0) this.schedule();
  }

  clear(): void {
    this.queue = [];
  }
}

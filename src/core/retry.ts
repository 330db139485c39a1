/** Capped exponential backoff with jitter: the one reconnect schedule. */

export interface RetryOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  factor?: number;
  /** Fraction of the delay randomised either way (0.5 = ±50 %, the default). */
  jitter?: number;
  /** First delay after an authorization failure; retrying a bad key fast helps nobody. */
  unauthorizedInitialDelayMs?: number;
  unauthorizedMaxDelayMs?: number;
}

export class RetryPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  readonly factor: number;
  readonly jitter: number;
  readonly unauthorizedInitialDelayMs: number;
  readonly unauthorizedMaxDelayMs: number;

  constructor(o: RetryOptions = {}) {
    this.initialDelayMs = o.initialDelayMs ?? 1000;
    this.maxDelayMs = o.maxDelayMs ?? 60_000;
    this.factor = o.factor ?? 2;
    // ±50 %: a thousand devices cut off together (a hub restart) come back over a whole second, not in one burst.
    this.jitter = Math.min(Math.max(o.jitter ?? 0.5, 0), 1);
    this.unauthorizedInitialDelayMs = o.unauthorizedInitialDelayMs ?? 10_000;
    this.unauthorizedMaxDelayMs = o.unauthorizedMaxDelayMs ?? 300_000;
  }

  private compute(initial: number, max: number, attempt: number, random: () => number): number {
    const n = Math.max(1, Math.floor(attempt));
    const base = Math.min(max, initial * Math.pow(this.factor, Math.min(n - 1, 60)));
    const spread = base * this.jitter * (2 * random() - 1);
    return Math.max(0, Math.round(Math.min(max, base + spread)));
  }

  /** Delay before reconnect attempt `attempt` (1-based). */
  delay(attempt: number, random: () => number = Math.random): number {
    return this.compute(this.initialDelayMs, this.maxDelayMs, attempt, random);
  }

  /** The slower schedule after the hub said unauthorized. */
  unauthorizedDelay(attempt: number, random: () => number = Math.random): number {
    return this.compute(this.unauthorizedInitialDelayMs, this.unauthorizedMaxDelayMs, attempt, random);
  }
}

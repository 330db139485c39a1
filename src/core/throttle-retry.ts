/**
 * Sends again what the hub refused as throttled (THROTTLED: IoT Hub's `com.microsoft:device-container-throttled`), until
 * each message's own deadline. While throttled, messages go out one at a time in arrival order, after a delay that
 * doubles on each refusal (with jitter) and starts over on success: the hub is probed, not flooded. A message still
 * refused at its deadline fails with the hub's error; nothing waits for ever and nothing is dropped silently.
 */
import { IotHubError } from './errors';

export interface ThrottleRetryOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Hears when throttling starts and ends (a node's status). */
  onThrottled?: (throttled: boolean) => void;
}

interface Waiting {
  attempt: () => Promise<void>;
  deadline: number;
  resolve: () => void;
  reject: (e: Error) => void;
  lastError: Error;
}

const isThrottled = (e: unknown): boolean => e instanceof IotHubError && e.code === 'THROTTLED';

export class ThrottleRetry {
  private readonly waiting: Waiting[] = [];
  private timer: NodeJS.Timeout | undefined;
  private probing = false;
  private delayMs: number;
  private throttled = false;
  private closed = false;
  private readonly initialDelayMs: number;
  private readonly maxDelayMs: number;

  constructor(private readonly o: ThrottleRetryOptions = {}) {
    this.initialDelayMs = o.initialDelayMs ?? 250;
    this.maxDelayMs = o.maxDelayMs ?? 8000;
    this.delayMs = this.initialDelayMs;
  }

  get isThrottled(): boolean {
    return this.throttled;
  }

  /** Runs attempt() now, or after the messages already waiting; retries it while throttled until `deadline`. */
  send(attempt: () => Promise<void>, deadline: number): Promise<void> {
    if (this.closed) return Promise.reject(new IotHubError('NOT_CONNECTED', 'the node is closing'));
    if (!this.throttled) {
      return attempt().catch((err: unknown) => {
        if (!isThrottled(err) || this.closed || Date.now() >= deadline) throw err;
        return new Promise<void>((resolve, reject) =>
          this.wait({ attempt, deadline, resolve, reject, lastError: err as Error }),
        );
      });
    }
    return new Promise<void>((resolve, reject) =>
      this.wait({
        attempt,
        deadline,
        resolve,
        reject,
        lastError: new IotHubError('THROTTLED', 'the hub is throttling sends'),
      }),
    );
  }

  private wait(w: Waiting): void {
    this.waiting.push(w);
    if (!this.throttled) {
      this.throttled = true;
      this.o.onThrottled?.(true);
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.probing || this.closed) return;
    const jittered = this.delayMs * (0.8 + 0.4 * Math.random());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.probe();
    }, jittered);
  }

  /** The first waiting message goes out; the rest follow it once it is through. */
  private probe(): void {
    const now = Date.now();
    while (this.waiting.length > 0 && this.waiting[0].deadline <= now) {
      const w = this.waiting.shift() as Waiting;
      w.reject(w.lastError);
    }
    const w = this.waiting[0];
    if (!w) return this.clear();
    this.probing = true;
    w.attempt().then(
      () => {
        this.probing = false;
        this.waiting.shift();
        w.resolve();
        this.delayMs = this.initialDelayMs;
        if (this.waiting.length > 0) setImmediate(() => this.probe());
        else this.clear();
      },
      (err: unknown) => {
        this.probing = false;
        if (isThrottled(err)) {
          w.lastError = err as Error;
          this.delayMs = Math.min(this.maxDelayMs, this.delayMs * 2);
          this.schedule();
          return;
        }
        // Any other failure is the message's own: it fails, the next one is tried.
        this.waiting.shift();
        w.reject(err as Error);
        if (this.waiting.length > 0) setImmediate(() => this.probe());
        else this.clear();
      },
    );
  }

  private clear(): void {
    if (this.closed || this.waiting.length > 0 || this.probing) return;
    if (this.throttled) {
      this.throttled = false;
      this.o.onThrottled?.(false);
    }
  }

  /** Fails what waits (the node is closing); returns how many. */
  close(): number {
    this.closed = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    const n = this.waiting.length;
    for (const w of this.waiting.splice(0))
      w.reject(
        new IotHubError('NOT_CONNECTED', 'the node closed while the hub was throttling; the message was not sent'),
      );
    return n;
  }
}

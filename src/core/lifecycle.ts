/**
 * The life of one connection, the same for a device (DeviceClient) and the back end (ServiceClient): its state and
 * status events, when to connect again after a loss (capped exponential backoff with jitter, slower after
 * "unauthorized", which retrying fast cannot fix), and when to renew its SAS token (at 65-80 % of its life, before
 * the hub ends the connection at expiry, with room for a slow renewal). The client does the connecting; this decides when.
 */
import type { IotHubError } from './errors';
import { RetryOptions, RetryPolicy } from './retry';
import type { ConnectionState, StatusEvent } from './state';

export class ConnectionLifecycle {
  private _state: ConnectionState = 'disconnected';
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private _closing = false;
  private lastError: IotHubError | undefined;
  private readonly policy: RetryPolicy;

  constructor(
    retry: RetryOptions | undefined,
    private readonly emitStatus: (ev: StatusEvent) => void,
  ) {
    this.policy = new RetryPolicy(retry);
  }

  get state(): ConnectionState {
    return this._state;
  }

  /** close() was called: nothing connects or renews any more. */
  get closing(): boolean {
    return this._closing;
  }

  /** A reconnect is scheduled. */
  get retryPending(): boolean {
    return this.retryTimer !== undefined;
  }

  private set(ev: StatusEvent): void {
    this._state = ev.state;
    this.emitStatus(ev);
  }

  /** An attempt starts now (the first, or the one a reconnect scheduled). */
  connecting(): void {
    this.retryTimer = undefined;
    // A retry still says why the last attempt failed: the cause stays in the status until a connection succeeds.
    this.set(
      this.attempt === 0
        ? { state: 'connecting' }
        : { state: 'connecting', attempt: this.attempt, ...(this.lastError ? { error: this.lastError } : {}) },
    );
  }

  /** via: the transport in use, when it was chosen at run time (auto). */
  connected(via?: string): void {
    this.attempt = 0;
    this.lastError = undefined;
    this.set(via ? { state: 'connected', via } : { state: 'connected' });
  }

  /** The connection is gone: `reconnect` runs after the backoff (the slow one when the hub said unauthorized). */
  lost(err: IotHubError | undefined, reconnect: () => void): void {
    this.cancelRenewal();
    if (this._closing) return;
    this.attempt++;
    this.lastError = err;
    const unauthorized = err?.code === 'UNAUTHORIZED';
    const delay = unauthorized ? this.policy.unauthorizedDelay(this.attempt) : this.policy.delay(this.attempt);
    this.set({
      state: unauthorized ? 'unauthorized' : 'reconnecting',
      attempt: this.attempt,
      nextRetryMs: delay,
      error: err,
    });
    this.retryTimer = setTimeout(reconnect, delay);
  }

  /**
   * `renew` runs between 65 % and 80 % of the life left to a token expiring at expiresAt (epoch seconds), at least 1 s
   * from now: devices that connected together (after a hub restart) renew spread over 15 % of the token's life rather
   * than in the same second, and each keeps 20 % of it for a slow renewal.
   */
  renewBefore(expiresAt: number, renew: () => void, random: () => number = Math.random): void {
    this.cancelRenewal();
    if (this._closing) return;
    const inMs = Math.max(1000, (expiresAt - Date.now() / 1000) * (0.65 + 0.15 * random()) * 1000);
    this.renewTimer = setTimeout(() => {
      this.renewTimer = undefined;
      renew();
    }, inMs);
    // A renewal alone is no reason to keep the process alive: the connection's socket is.
    this.renewTimer.unref();
  }

  cancelRenewal(): void {
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
  }

  /** Stops every timer; the client closes its connection, then calls closed(). */
  close(): void {
    this._closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.cancelRenewal();
  }

  closed(): void {
    this.set({ state: 'closed' });
  }
}

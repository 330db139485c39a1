/**
 * The back end's AMQP connection (ServiceConnect): pipelined C2D sends on one sender link, and the
 * hub's feedback receiver shared by every listener. Nothing waits forever and nothing is dropped
 * silently: while disconnected, sends wait in a bounded queue, then fail with a typed error.
 */
import { EventEmitter } from 'node:events';
import { Connection, Delivery, EventContext, Message, Receiver, Sender } from 'rhea';
import { amqpConnectionError, Cbs, closeAmqpConnection, openAmqpConnection, whenOpen } from './amqp-connection';
import { encodeC2DMessage } from './amqp-codec';
import { Endpoint, resolveEndpoint } from './endpoint';
import { connectTimedOut, fromAmqpError, IotHubError } from './errors';
import { bodyText, parseFeedbackBody } from './feedback';
import { C2DMessage, checkDeviceId, FeedbackRecord } from './message';
import { ConnectionLifecycle } from './lifecycle';
import { RetryOptions } from './retry';
import { Fifo } from './fifo';
import { createSasToken } from './sas';
import type { ConnectionState } from './state';
import { ChooserTarget, Route, TransportChooser } from './transport-choice';

export interface ServiceClientOptions extends Endpoint {
  /** auto: AMQP on `port` (5671) when it answers, else AMQP over WebSockets on `wsPort` (443). */
  transport?: 'amqp' | 'amqp-ws' | 'auto';
  wsPort?: number;
  sharedAccessKeyName: string;
  sharedAccessKey: string;
  tokenLifetimeSec?: number;
  retry?: RetryOptions;
  /** Sends that may wait while disconnected. */
  pendingLimit?: number;
  pendingTimeoutMs?: number;
  /** How long a sent message may wait for the hub's answer. */
  sendTimeoutMs?: number;
}

/** Where transport auto looks for AMQP's own port. */
export function serviceChooserTarget(o: ServiceClientOptions): ChooserTarget {
  const e = resolveEndpoint(o, 5671);
  return { host: e.host, port: e.port, servername: e.servername, proxy: e.proxy };
}

interface PendingSend {
  deviceId: string;
  message: C2DMessage;
  resolve: () => void;
  reject: (e: IotHubError) => void;
  deadline: number;
  attempts: number;
}

type FeedbackListener = (records: FeedbackRecord[]) => void | Promise<void>;

export class ServiceClient extends EventEmitter {
  private connection: Connection | undefined;
  private sender: Sender | undefined;
  private feedbackReceiver: Receiver | undefined;
  private cbs: Cbs | undefined;
  /** Sends waiting for credit or a connection, in order. */
  private waiting = new Fifo<PendingSend>();
  private readonly inflight = new Map<Delivery, PendingSend>();
  private readonly feedbackListeners = new Set<FeedbackListener>();
  private readonly life: ConnectionLifecycle;
  private sweepTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private opened = false;

  /** Transport auto's memory: given by the HubSession (shared per hub host and port), else this client's own. */
  private readonly chooser: TransportChooser;

  constructor(
    private readonly o: ServiceClientOptions,
    chooser?: TransportChooser,
  ) {
    super();
    this.chooser = chooser ?? new TransportChooser(serviceChooserTarget(o));
    this.life = new ConnectionLifecycle(o.retry, (ev) => this.emit('status', ev));
  }

  get state(): ConnectionState {
    return this.life.state;
  }

  /** Messages waiting for a connection plus those awaiting the hub's answer. */
  get backlog(): number {
    return this.waiting.size + this.inflight.size;
  }

  private token(): { token: string; expiresAt: number } {
    const expiresAt = Math.floor(Date.now() / 1000) + (this.o.tokenLifetimeSec ?? 3600);
    return {
      token: createSasToken({
        resourceUri: this.o.hostName,
        key: this.o.sharedAccessKey,
        keyName: this.o.sharedAccessKeyName,
        expiresAt,
      }),
      expiresAt,
    };
  }

  open(): void {
    if (this.opened || this.life.closing) return;
    this.opened = true;
    this.sweepTimer = setInterval(() => this.sweep(), 250);
    this.sweepTimer.unref();
    this.connect();
  }

  private connect(): void {
    if (this.life.closing) return;
    this.life.connecting();
    if (this.o.transport !== 'auto') {
      this.dial(undefined);
      return;
    }
    // auto: AMQP on its own port when it answers, else over WebSockets (transport-choice.ts).
    void this.chooser.choose().then((route) => {
      if (!this.life.closing) this.dial(route);
    });
  }

  private dial(route: Route | undefined): void {
    const ws = route ? route === 'ws' : this.o.transport === 'amqp-ws';
    const e = resolveEndpoint(route === 'ws' ? { ...this.o, port: this.o.wsPort } : this.o, ws ? 443 : 5671);
    const connection = openAmqpConnection(e, ws);
    this.connection = connection;
    let failed = false;
    // A hub that never answers the open, the token or an attach held the back end at "connecting" for ever (rhea has no
    // time-out of its own for any of them): give the attempt up and try again.
    clearTimeout(this.connectTimer);
    const connectTimer = setTimeout(
      () => fail(connectTimedOut(`${e.host}:${e.port}`, e.connectTimeoutMs)),
      e.connectTimeoutMs,
    );
    this.connectTimer = connectTimer;
    let up = false;
    const fail = (err: IotHubError) => {
      clearTimeout(connectTimer);
      if (failed || this.connection !== connection) return;
      failed = true;
      if (route && up) this.chooser.lost();
      else if (route === 'own' && (err.code === 'TIMEOUT' || err.code === 'CONNECTION_LOST')) this.chooser.ownFailed();
      this.dropConnection(err);
    };
    connection.on('disconnected', (ctx: EventContext) => fail(amqpConnectionError(ctx)));
    connection.on('connection_close', (ctx: EventContext) => fail(amqpConnectionError(ctx)));
    connection.on('connection_error', () => undefined);
    // close() may come at any await: each step checks that this connection is still the current one.
    const current = () => !this.life.closing && this.connection === connection;
    (async () => {
      await whenOpen(connection);
      if (!current()) return;
      const cbs = new Cbs(connection);
      this.cbs = cbs;
      const { token, expiresAt } = this.token();
      try {
        await cbs.putToken(this.o.hostName, token);
      } finally {
        if (!current()) cbs.close();
      }
      if (!current()) return;
      this.renewBefore(expiresAt);
      await this.openSender(connection);
      if (!current()) return;
      if (this.feedbackListeners.size > 0) this.openFeedback(connection);
      clearTimeout(connectTimer);
      up = true;
      if (route) this.chooser.worked(route);
      this.life.connected(route ? (ws ? 'amqp-ws' : 'amqp') : undefined);
      this.drain();
    })().catch((err: unknown) =>
      fail(err instanceof IotHubError ? err : new IotHubError('CONNECTION_LOST', (err as Error).message)),
    );
  }

  private openSender(connection: Connection): Promise<void> {
    return new Promise((resolve, reject) => {
      const sender = connection.open_sender({ target: { address: '/messages/devicebound' }, autosettle: true });
      this.sender = sender;
      sender.once('sender_open', () => resolve());
      sender.once('sender_close', (ctx: EventContext) => {
        const err = fromAmqpError(ctx.sender?.error as never);
        reject(err);
        if (this.connection === connection) this.dropConnection(err);
      });
      sender.on('sendable', () => this.drain());
      const settle = (ok: boolean) => (ctx: EventContext) => {
        const p = this.inflight.get(ctx.delivery as Delivery);
        if (!p) return;
        this.inflight.delete(ctx.delivery as Delivery);
        if (ok) p.resolve();
        else {
          const state = (
            ctx.delivery as unknown as { remote_state?: { error?: { condition?: string; description?: string } } }
          ).remote_state;
          p.reject(
            fromAmqpError(
              state?.error ?? { condition: 'amqp:internal-error', description: 'the hub released the message' },
            ),
          );
        }
      };
      sender.on('accepted', settle(true));
      sender.on('rejected', settle(false));
      // Released or modified is not success (the Node SDK treats it as one; we do not).
      sender.on('released', settle(false));
      sender.on('modified', settle(false));
    });
  }

  private openFeedback(connection: Connection): void {
    if (this.feedbackReceiver) return;
    const r = connection.open_receiver({
      source: { address: '/messages/serviceBound/feedback' },
      autoaccept: false,
      credit_window: 10,
    });
    this.feedbackReceiver = r;
    r.on('message', (ctx: EventContext) => void this.onFeedback(ctx));
    r.on('receiver_close', (ctx: EventContext) => {
      if (this.feedbackReceiver !== r) return;
      this.feedbackReceiver = undefined;
      // The hub detached it (an expired token, a forced detach): without a new link no feedback would come again.
      if (!this.life.closing && this.connection === connection) {
        this.dropConnection(
          fromAmqpError(
            (ctx.receiver?.error as never) ?? {
              condition: 'amqp:link:detach-forced',
              description: 'the hub closed the feedback link',
            },
          ),
        );
      }
    });
  }

  private async onFeedback(ctx: EventContext): Promise<void> {
    const delivery = ctx.delivery as Delivery;
    let records: FeedbackRecord[];
    const body = (ctx.message as Message).body;
    try {
      records = parseFeedbackBody(body);
    } catch (err) {
      // Unreadable feedback would come back forever: dead-letter it, and say so with what came.
      delivery.reject({ condition: 'amqp:decode-error', description: (err as Error).message });
      let raw: unknown;
      try {
        raw = bodyText(body);
      } catch {
        raw = body;
      }
      this.emit('feedbackError', err, raw);
      return;
    }
    try {
      await Promise.all([...this.feedbackListeners].map((fn) => fn(records)));
      delivery.accept();
      // Once per record taken (a released batch comes back): the session's activity counts these.
      this.emit('records', records);
    } catch (err) {
      delivery.release();
      this.emit('feedbackError', err);
    }
  }

  /** A new token on $cbs before this one expires; a refused renewal drops the connection (a fresh one tries again). */
  private renewBefore(expiresAt: number): void {
    this.life.renewBefore(expiresAt, () => {
      const { token, expiresAt: next } = this.token();
      this.cbs?.putToken(this.o.hostName, token).then(
        () => this.renewBefore(next),
        (err: IotHubError) => this.dropConnection(err),
      );
    });
  }

  private dropConnection(err: IotHubError): void {
    const connection = this.connection;
    this.connection = undefined;
    this.sender = undefined;
    this.feedbackReceiver = undefined;
    this.cbs?.close();
    this.cbs = undefined;
    if (connection) void closeAmqpConnection(connection);
    // Unconfirmed sends go out again once (at-least-once: the hub may have enqueued them already);
    // a second loss fails them, so nothing loops and nothing is dropped silently.
    const again: PendingSend[] = [];
    for (const p of this.inflight.values()) {
      if (p.attempts >= 2) {
        p.reject(
          new IotHubError(
            'CONNECTION_LOST',
            'the connection dropped twice before the hub confirmed the message; it may or may not have been enqueued',
            { cause: err },
          ),
        );
      } else {
        p.deadline = Date.now() + (this.o.pendingTimeoutMs ?? 30_000);
        again.push(p);
      }
    }
    this.inflight.clear();
    this.waiting = new Fifo([...again, ...this.waiting.takeAll()]);
    this.life.lost(err, () => this.connect());
    // Waiting for a key that will not start working would only delay the error.
    if (!this.life.closing && err.code === 'UNAUTHORIZED') this.failWaiting(err);
  }

  private failWaiting(err: IotHubError): void {
    for (const p of this.waiting.takeAll()) p.reject(err);
  }

  private drain(): void {
    const s = this.sender;
    if (!s || this.life.state !== 'connected') return;
    while (this.waiting.size > 0 && s.sendable()) {
      const p = this.waiting.take() as PendingSend;
      // Format 0: the bytes are a standard AMQP message, encoded already.
      const delivery = s.send(encodeC2DMessage(p.deviceId, p.message), undefined, 0);
      p.attempts++;
      p.deadline = Date.now() + (this.o.sendTimeoutMs ?? 60_000);
      this.inflight.set(delivery, p);
    }
  }

  private sweep(): void {
    const now = Date.now();
    const first = this.waiting.peek();
    if (first && first.deadline <= now) {
      const keep: PendingSend[] = [];
      const waited = Math.round((this.o.pendingTimeoutMs ?? 30_000) / 1000);
      // Connected, the sends waited for the hub's link credit (it grants it as it keeps up), not for a connection.
      const expired =
        this.life.state === 'connected'
          ? new IotHubError('TIMEOUT', `the hub took no more messages for ${waited} s; the message was not sent`)
          : new IotHubError('NOT_CONNECTED', `not connected to the hub for ${waited} s; the message was not sent`);
      for (const p of this.waiting.takeAll()) {
        if (p.deadline <= now) p.reject(expired);
        else keep.push(p);
      }
      this.waiting = new Fifo(keep);
    }
    // In send order, so deadlines only grow: stop at the first one still running (thousands may be in flight).
    for (const [d, p] of this.inflight) {
      if (p.deadline > now) break;
      this.inflight.delete(d);
      p.reject(
        new IotHubError('TIMEOUT', 'the hub did not confirm the message in time; it may or may not have been enqueued'),
      );
    }
  }

  send(deviceId: string, message: C2DMessage): Promise<void> {
    try {
      checkDeviceId(deviceId);
    } catch (err) {
      return Promise.reject(err);
    }
    if (this.life.closing) return Promise.reject(new IotHubError('NOT_CONNECTED', 'the connection is closing'));
    if (this.life.state === 'unauthorized') {
      return Promise.reject(
        new IotHubError(
          'UNAUTHORIZED',
          'the hub refused the credentials: check the key and that the policy has ServiceConnect',
        ),
      );
    }
    if (this.waiting.size >= (this.o.pendingLimit ?? 10_000)) {
      return Promise.reject(
        new IotHubError(
          'NOT_CONNECTED',
          `${this.waiting.size} messages are already waiting for the hub; this one was not sent`,
        ),
      );
    }
    return new Promise((resolve, reject) => {
      this.waiting.push({
        deviceId,
        message,
        resolve,
        reject,
        deadline: Date.now() + (this.o.pendingTimeoutMs ?? 30_000),
        attempts: 0,
      });
      this.drain();
    });
  }

  /** Whether feedback is being read (some listener wants it). */
  get feedbackListening(): boolean {
    return this.feedbackListeners.size > 0;
  }

  /** Feedback flows while at least one listener is registered; each sees every record. */
  addFeedbackListener(fn: FeedbackListener): () => void {
    this.feedbackListeners.add(fn);
    if (this.connection && this.life.state === 'connected') this.openFeedback(this.connection);
    return () => {
      this.feedbackListeners.delete(fn);
      if (this.feedbackListeners.size === 0 && this.feedbackReceiver) {
        this.feedbackReceiver.close();
        this.feedbackReceiver = undefined;
      }
    };
  }

  async close(): Promise<void> {
    if (this.life.closing) return;
    this.life.close();
    clearTimeout(this.connectTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.failWaiting(new IotHubError('NOT_CONNECTED', 'the connection closed before the message was sent'));
    const connection = this.connection;
    this.connection = undefined;
    this.cbs?.close();
    if (connection) await closeAmqpConnection(connection);
    for (const p of this.inflight.values())
      p.reject(new IotHubError('CONNECTION_LOST', 'the connection closed before the hub confirmed the message'));
    this.inflight.clear();
    this.feedbackListeners.clear();
    this.life.closed();
  }
}

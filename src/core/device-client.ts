/**
 * One connection for one device identity, over MQTT or AMQP (plain or WebSockets). Decides when to
 * reconnect (RetryPolicy; slower after "unauthorized") and renews the SAS token before it expires.
 */
import { EventEmitter } from 'node:events';
import { connectAmqp } from './amqp-device';
import { connectMqtt } from './mqtt-device';
import { IotHubError } from './errors';
import { ReceivedC2DMessage } from './message';
import { RetryOptions, RetryPolicy } from './retry';
import { createSasToken, deviceResourceUri, parseSasToken } from './sas';

export type DeviceTransport = 'mqtt' | 'mqtt-ws' | 'amqp' | 'amqp-ws';

export interface Endpoint {
  /** HostName from the connection string (SAS scope, MQTT user name); may carry :port. */
  hostName: string;
  /** Where to dial instead (a gateway, 127.0.0.1 for the local hub). */
  connectHost?: string;
  port?: number;
  ca?: string;
  rejectUnauthorized?: boolean;
  tls?: boolean;
  /** A connection silent this long (no answer to MQTT PINGREQ, no AMQP frame) is taken for dead. Default 180 s, as the SDKs. */
  keepAliveSec?: number;
  /**
   * How long one attempt may take from dialling to ready (MQTT CONNACK and SUBACK; AMQP open, token and attach) before it
   * is given up and tried again. Default: the keep-alive, at most 30 s (the SDKs' CONNACK wait).
   */
  connectTimeoutMs?: number;
}

export type DeviceCredentials =
  | { sharedAccessKey: string; sharedAccessKeyName?: string }
  | { sharedAccessSignature: string }
  | { cert: string; key: string };

export interface DeviceClientOptions extends Endpoint {
  deviceId: string;
  transport: DeviceTransport;
  credentials: DeviceCredentials;
  tokenLifetimeSec?: number;
  retry?: RetryOptions;
  settle?: 'auto' | 'manual';
}

export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'unauthorized' | 'error' | 'closed';

export interface StatusEvent {
  state: ConnectionState;
  attempt?: number;
  nextRetryMs?: number;
  error?: IotHubError;
}

export type SettleOutcome = 'complete' | 'reject' | 'abandon';

/** What a transport reports back to the client that drives it. */
export interface TransportEvents {
  connected(): void;
  /** ack: acknowledge as the settle mode says (MQTT PUBACK, AMQP accept when automatic); call it once handed over. */
  message(m: ReceivedC2DMessage, ack: () => void): void;
  /** The connection is gone; err says why (undefined: closed on purpose). */
  closed(err?: IotHubError): void;
  /** A message came that cannot be read (it is acknowledged or dead-lettered, never delivered): what came, as it came. */
  unreadable(err: IotHubError, raw: UnreadableMessage): void;
}

export interface UnreadableMessage {
  /** MQTT: the topic the PUBLISH came on. */
  topic?: string;
  body: unknown;
}

export interface DeviceSession {
  settle(lockToken: string, outcome: SettleOutcome): Promise<void>;
  /** Closes gracefully; pending acknowledgements are flushed first. */
  end(): Promise<void>;
  /** Puts a new token on the live connection (AMQP's $cbs); absent where the token rides in CONNECT (MQTT). */
  renew?(token: string): Promise<void>;
}

export interface ResolvedEndpoint {
  host: string;
  hostName: string;
  port: number;
  servername: string;
  ca?: string;
  rejectUnauthorized: boolean;
  tls: boolean;
  keepAliveSec: number;
  connectTimeoutMs: number;
}

const DEFAULT_PORTS: Record<DeviceTransport, number> = { mqtt: 8883, 'mqtt-ws': 443, amqp: 5671, 'amqp-ws': 443 };

export function resolveEndpoint(e: Endpoint, defaultPort: number): ResolvedEndpoint {
  const m = /^(.*?)(?::(\d+))?$/.exec(e.hostName) as RegExpExecArray;
  const bareHost = m[1];
  const keepAliveSec = e.keepAliveSec && e.keepAliveSec > 0 ? e.keepAliveSec : 180;
  return {
    host: e.connectHost || bareHost,
    hostName: e.hostName,
    port: e.port || (m[2] ? Number(m[2]) : defaultPort),
    servername: bareHost,
    ca: e.ca,
    rejectUnauthorized: e.rejectUnauthorized !== false,
    tls: e.tls !== false,
    keepAliveSec,
    connectTimeoutMs: e.connectTimeoutMs && e.connectTimeoutMs > 0 ? e.connectTimeoutMs : Math.min(keepAliveSec, 30) * 1000,
  };
}

export class DeviceClient extends EventEmitter {
  private _state: ConnectionState = 'disconnected';
  private session: DeviceSession | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  private closing = false;
  private holding = false;
  private held: Array<{ m: ReceivedC2DMessage; ack: () => void }> = [];
  private readonly policy: RetryPolicy;

  constructor(private readonly o: DeviceClientOptions) {
    super();
    this.policy = new RetryPolicy(o.retry);
  }

  get state(): ConnectionState {
    return this._state;
  }

  private setState(ev: StatusEvent): void {
    this._state = ev.state;
    this.emit('status', ev);
  }

  /** A fresh password for this connection attempt. */
  token(nowSec = Math.floor(Date.now() / 1000)): { token?: string; expiresAt?: number } {
    const c = this.o.credentials;
    if ('sharedAccessSignature' in c) return { token: c.sharedAccessSignature, expiresAt: parseSasToken(c.sharedAccessSignature).se };
    if ('sharedAccessKey' in c) {
      const expiresAt = nowSec + (this.o.tokenLifetimeSec ?? 3600);
      const resourceUri = deviceResourceUri(this.o.hostName, this.o.deviceId);
      return { token: createSasToken({ resourceUri, key: c.sharedAccessKey, keyName: c.sharedAccessKeyName, expiresAt }), expiresAt };
    }
    return {};
  }

  open(): void {
    if (this.closing || this.session || this.retryTimer) return;
    this.connect();
  }

  private connect(): void {
    this.retryTimer = undefined;
    if (this.closing) return;
    this.setState(this.attempt === 0 ? { state: 'connecting' } : { state: 'connecting', attempt: this.attempt });
    const { token, expiresAt } = this.token();
    const endpoint = resolveEndpoint(this.o, DEFAULT_PORTS[this.o.transport]);
    // A hub that accepts the connection and then never answers (no CONNACK or SUBACK, an attach left pending) held the
    // device at "connecting" for ever: mqtt.js gives up on a CONNACK only, rhea on nothing. Give the attempt up and retry.
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      if (this.session !== session || this.closing) return;
      this.session = undefined;
      this.held = [];
      void session.end();
      this.scheduleReconnect(new IotHubError('TIMEOUT', `the hub did not complete the connection in ${Math.round(endpoint.connectTimeoutMs / 1000)} s`));
    }, endpoint.connectTimeoutMs);
    const events: TransportEvents = {
      connected: () => {
        if (this.session !== session) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        if (this.closing) return;
        this.attempt = 0;
        this.setState({ state: 'connected' });
        this.scheduleRenewal(expiresAt);
      },
      message: (m, ack) => {
        if (this.holding) {
          this.held.push({ m, ack });
          return;
        }
        this.emit('message', m);
        ack();
      },
      unreadable: (err, raw) => {
        if (this.session === session) this.emit('unreadable', err, raw);
      },
      closed: (err) => {
        if (this.session !== session) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        this.session = undefined;
        // Held messages were never acknowledged on that connection: the hub delivers them again.
        this.held = [];
        if (this.renewTimer) clearTimeout(this.renewTimer);
        this.renewTimer = undefined;
        if (!this.closing) this.scheduleReconnect(err);
      },
    };
    const session: DeviceSession = this.o.transport === 'mqtt' || this.o.transport === 'mqtt-ws'
      ? connectMqtt(this.o, endpoint, token, events)
      : connectAmqp(this.o, endpoint, token, events);
    this.session = session;
  }

  private scheduleRenewal(expiresAt: number | undefined): void {
    if (expiresAt === undefined || 'sharedAccessSignature' in this.o.credentials) return;
    const lifetime = expiresAt - Date.now() / 1000;
    // Renew at 80 % of the lifetime: before expiry with room for a slow reconnect.
    const inMs = Math.max(1000, lifetime * 0.8 * 1000);
    if (this.renewTimer) clearTimeout(this.renewTimer);
    this.renewTimer = setTimeout(() => void this.renew(), inMs);
    this.renewTimer.unref();
  }

  /** AMQP: a new put-token on the live connection. MQTT carries the token in CONNECT: reconnect with a new one (clean session false keeps the queue). */
  private async renew(): Promise<void> {
    this.renewTimer = undefined;
    const s = this.session;
    if (!s || this.closing) return;
    if (s.renew) {
      const { token, expiresAt } = this.token();
      try {
        await s.renew(token as string);
        this.scheduleRenewal(expiresAt);
        return;
      } catch {
        // Fall back to a fresh connection with the new token.
      }
      if (this.session !== s || this.closing) return;
    }
    this.session = undefined;
    await s.end();
    if (!this.closing) this.connect();
  }

  private scheduleReconnect(err?: IotHubError): void {
    this.attempt++;
    const unauthorized = err?.code === 'UNAUTHORIZED';
    const delay = unauthorized ? this.policy.unauthorizedDelay(this.attempt) : this.policy.delay(this.attempt);
    if (unauthorized) this.setState({ state: 'unauthorized', attempt: this.attempt, nextRetryMs: delay, error: err });
    else this.setState({ state: 'reconnecting', attempt: this.attempt, nextRetryMs: delay, error: err });
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  /**
   * While nobody can take messages (between a node's stop and its redeploy), keep them unacknowledged rather than
   * hand them to no one: they go out on resume(), or the hub delivers them again if the connection closes first.
   */
  hold(): void {
    this.holding = true;
  }

  resume(): void {
    this.holding = false;
    const held = this.held;
    this.held = [];
    for (const { m, ack } of held) {
      this.emit('message', m);
      ack();
    }
  }

  settle(lockToken: string, outcome: SettleOutcome): Promise<void> {
    if (!this.session) return Promise.reject(new IotHubError('NOT_CONNECTED', 'the device is not connected; the hub will deliver the message again'));
    return this.session.settle(lockToken, outcome);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.renewTimer) clearTimeout(this.renewTimer);
    clearTimeout(this.connectTimer);
    this.retryTimer = this.renewTimer = this.connectTimer = undefined;
    const s = this.session;
    this.session = undefined;
    this.held = [];
    if (s) await s.end();
    this.setState({ state: 'closed' });
    this.removeAllListeners('message');
  }
}

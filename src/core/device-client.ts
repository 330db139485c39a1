/**
 * One connection for one device identity, over MQTT or AMQP (plain or WebSockets): the transport is chosen by
 * options.transport, its lifecycle (reconnect, renewal, status) is ConnectionLifecycle's, and messages that arrive
 * while no node can take them are held unacknowledged.
 */
import { EventEmitter } from 'node:events';
import { connectAmqp } from './amqp-device';
import { ResolvedEndpoint, resolveEndpoint } from './endpoint';
import { connectTimedOut, IotHubError } from './errors';
import type { ConnectGate } from './connect-gate';
import { ConnectionLifecycle } from './lifecycle';
import { ReceivedC2DMessage } from './message';
import { connectMqtt } from './mqtt-device';
import { createSasToken, deviceResourceUri, parseSasToken } from './sas';
import type { ConnectionState } from './state';
import { ChooserTarget, TransportChooser } from './transport-choice';
import { certificateRefused } from './x509';
import {
  DEFAULT_DEVICE_PORTS,
  DeviceClientOptions,
  DeviceSession,
  DeviceTransport,
  SettleOutcome,
  TransportEvents,
} from './transport';

const NO_SLOT = () => undefined;

function dial(
  o: DeviceClientOptions & { transport: DeviceTransport },
  e: ResolvedEndpoint,
  token: string | undefined,
  events: TransportEvents,
): DeviceSession {
  return o.transport === 'mqtt' || o.transport === 'mqtt-ws'
    ? connectMqtt(o, e, token, events)
    : connectAmqp(o, e, token, events);
}

/** Where transport auto looks for the own port of a device's protocol. */
export function chooserTarget(o: DeviceClientOptions): ChooserTarget {
  const e = resolveEndpoint(o, DEFAULT_DEVICE_PORTS[o.transport]);
  return { host: e.host, port: e.port, servername: e.servername, proxy: e.proxy };
}

/**
 * Transport auto: a session at once, the connection once the chooser has picked the own port or WebSockets. Until
 * then end() only cancels. A failure of the own port before it was up, for a reason of the network, tells the chooser.
 */
function autoSession(
  o: DeviceClientOptions,
  chooser: TransportChooser,
  token: string | undefined,
  events: TransportEvents,
): DeviceSession {
  const amqp = o.transport === 'amqp-auto';
  let inner: DeviceSession | undefined;
  let ended = false;
  let chosen: DeviceTransport | undefined;
  const notConnected = () => new IotHubError('NOT_CONNECTED', 'the device is not connected yet');
  void chooser.choose().then((route) => {
    if (ended) return;
    const t: DeviceTransport = amqp ? (route === 'own' ? 'amqp' : 'amqp-ws') : route === 'own' ? 'mqtt' : 'mqtt-ws';
    chosen = t;
    const e = resolveEndpoint({ ...o, port: route === 'own' ? o.port : o.wsPort }, DEFAULT_DEVICE_PORTS[t]);
    let up = false;
    try {
      inner = dial({ ...o, transport: t }, e, token, {
        ...events,
        connected: () => {
          up = true;
          chooser.worked(route);
          events.connected();
        },
        closed: (err) => {
          if (up) chooser.lost();
          else if (route === 'own' && err && (err.code === 'TIMEOUT' || err.code === 'CONNECTION_LOST'))
            chooser.ownFailed();
          events.closed(err);
        },
      });
    } catch (err) {
      events.closed(err instanceof IotHubError ? err : new IotHubError('CONNECTION_LOST', (err as Error).message));
    }
  });
  return {
    get transport() {
      return chosen;
    },
    settle: (lockToken, outcome) => (inner ? inner.settle(lockToken, outcome) : Promise.reject(notConnected())),
    renew: (next) =>
      inner?.renew ? inner.renew(next) : Promise.reject(new IotHubError('NOT_CONNECTED', 'no token channel')),
    end: async () => {
      ended = true;
      await inner?.end();
    },
  };
}

export class DeviceClient extends EventEmitter {
  private session: DeviceSession | undefined;
  private connectTimer: NodeJS.Timeout | undefined;
  /** Waiting for a slot of the gate: leaves the line. */
  private cancelWait: (() => void) | undefined;
  /** The slot of the attempt under way. */
  private slot: () => void = NO_SLOT;
  private holding = false;
  private held: Array<{ m: ReceivedC2DMessage; ack: () => void }> = [];
  private readonly life: ConnectionLifecycle;

  /**
   * gate: shared by the clients of one HubSession, so that they do not all dial at once. chooser: transport auto's
   * memory, shared likewise (one per hub host and port).
   */
  constructor(
    private readonly o: DeviceClientOptions,
    private readonly gate?: ConnectGate,
    chooser?: TransportChooser,
  ) {
    super();
    this.life = new ConnectionLifecycle(o.retry, (ev) => this.emit('status', ev));
    if (o.transport === 'auto' || o.transport === 'amqp-auto')
      this.chooser = chooser ?? new TransportChooser(chooserTarget(o));
  }

  /** Transport auto's memory (undefined for a fixed transport). */
  private readonly chooser: TransportChooser | undefined;

  get state(): ConnectionState {
    return this.life.state;
  }

  /** A fresh password for this connection attempt. */
  token(nowSec = Math.floor(Date.now() / 1000)): { token?: string; expiresAt?: number } {
    const c = this.o.credentials;
    if ('sharedAccessSignature' in c)
      return { token: c.sharedAccessSignature, expiresAt: parseSasToken(c.sharedAccessSignature).se };
    if ('sharedAccessKey' in c) {
      const expiresAt = nowSec + (this.o.tokenLifetimeSec ?? 3600);
      const resourceUri = deviceResourceUri(this.o.hostName, this.o.deviceId);
      return {
        token: createSasToken({ resourceUri, key: c.sharedAccessKey, keyName: c.sharedAccessKeyName, expiresAt }),
        expiresAt,
      };
    }
    return {};
  }

  open(): void {
    if (this.life.closing || this.session || this.life.retryPending || this.cancelWait) return;
    this.connect();
  }

  private connect(): void {
    if (this.life.closing) return;
    if (!this.gate) {
      this.attempt(NO_SLOT);
      return;
    }
    let started = false;
    const cancel = this.gate.enter((release) => {
      started = true;
      this.cancelWait = undefined;
      this.attempt(release);
    });
    if (!started) this.cancelWait = cancel;
  }

  private attempt(release: () => void): void {
    this.slot = release;
    if (this.life.closing) {
      release();
      return;
    }
    this.life.connecting();
    const { token, expiresAt } = this.token();
    const endpoint = resolveEndpoint(this.o, DEFAULT_DEVICE_PORTS[this.o.transport]);
    const events: TransportEvents = {
      connected: () => {
        release();
        if (this.session !== session) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        if (this.life.closing) return;
        this.life.connected(session.transport);
        // A SAS token given as such cannot be renewed here: its owner renews it.
        if (expiresAt !== undefined && !('sharedAccessSignature' in this.o.credentials))
          this.life.renewBefore(expiresAt, () => void this.renew());
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
        release();
        if (this.session !== session) return;
        clearTimeout(this.connectTimer);
        this.connectTimer = undefined;
        this.session = undefined;
        // Held messages were never acknowledged on that connection: the hub delivers them again.
        this.held = [];
        const c = this.o.credentials;
        // The hub does not say why it refused a certificate: the certificate may.
        if (err?.code === 'UNAUTHORIZED' && 'cert' in c) err = certificateRefused(c.cert, this.o.deviceId);
        this.life.lost(err, () => this.connect());
      },
    };
    let session: DeviceSession;
    try {
      const t = this.o.transport;
      session =
        t === 'auto' || t === 'amqp-auto'
          ? autoSession(this.o, this.chooser as TransportChooser, token, events)
          : dial({ ...this.o, transport: t }, endpoint, token, events);
    } catch (err) {
      release();
      throw err;
    }
    this.session = session;
    // A hub that accepts the connection and then never answers (no CONNACK or SUBACK, an attach left pending) held the
    // device at "connecting" for ever: mqtt.js gives up on a CONNACK only, rhea on nothing. Give the attempt up and retry.
    // Transport auto's look at the own port comes first: the attempt has that much longer.
    const timeoutMs = endpoint.connectTimeoutMs + (this.chooser ? this.chooser.lookMs : 0);
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      release();
      if (this.session !== session || this.life.closing) return;
      this.session = undefined;
      this.held = [];
      void session.end();
      // The own port answered the look, then never completed a connection (a firewall that inspects): WebSockets next.
      if (session.transport === 'mqtt' || session.transport === 'amqp') this.chooser?.ownFailed();
      const port = session.transport?.endsWith('-ws') ? (this.o.wsPort ?? 443) : endpoint.port;
      this.life.lost(connectTimedOut(`${endpoint.host}:${port}`, timeoutMs), () => this.connect());
    }, timeoutMs);
  }

  /** AMQP: a new put-token on the live connection. MQTT carries the token in CONNECT: reconnect with a new one (clean session false keeps the queue). */
  private async renew(): Promise<void> {
    const s = this.session;
    if (!s || this.life.closing) return;
    if (s.renew) {
      const { token, expiresAt } = this.token();
      try {
        await s.renew(token as string);
        if (expiresAt !== undefined) this.life.renewBefore(expiresAt, () => void this.renew());
        return;
      } catch {
        // Fall back to a fresh connection with the new token.
      }
      if (this.session !== s || this.life.closing) return;
    }
    this.session = undefined;
    await s.end();
    if (!this.life.closing) this.connect();
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
    if (!this.session)
      return Promise.reject(
        new IotHubError('NOT_CONNECTED', 'the device is not connected; the hub will deliver the message again'),
      );
    return this.session.settle(lockToken, outcome);
  }

  async close(): Promise<void> {
    this.life.close();
    clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.cancelWait?.();
    this.cancelWait = undefined;
    this.slot();
    const s = this.session;
    this.session = undefined;
    this.held = [];
    if (s) await s.end();
    this.life.closed();
    this.removeAllListeners('message');
  }
}

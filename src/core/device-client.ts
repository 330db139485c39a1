/**
 * One connection for one device identity, over MQTT or AMQP (plain or WebSockets): the transport is chosen by
 * options.transport, its lifecycle (reconnect, renewal, status) is ConnectionLifecycle's, and messages that arrive
 * while no node can take them are held unacknowledged.
 */
import { EventEmitter } from 'node:events';
import { connectAmqp } from './amqp-device';
import { resolveEndpoint } from './endpoint';
import { IotHubError } from './errors';
import type { ConnectGate } from './connect-gate';
import { ConnectionLifecycle } from './lifecycle';
import { ReceivedC2DMessage } from './message';
import { connectMqtt } from './mqtt-device';
import { createSasToken, deviceResourceUri, parseSasToken } from './sas';
import type { ConnectionState } from './state';
import { certificateRefused } from './x509';
import { DEFAULT_DEVICE_PORTS, DeviceClientOptions, DeviceSession, SettleOutcome, TransportEvents } from './transport';

const NO_SLOT = () => undefined;

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

  /** gate: shared by the clients of one HubSession, so that they do not all dial at once. */
  constructor(
    private readonly o: DeviceClientOptions,
    private readonly gate?: ConnectGate,
  ) {
    super();
    this.life = new ConnectionLifecycle(o.retry, (ev) => this.emit('status', ev));
  }

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
        this.life.connected();
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
      session =
        this.o.transport === 'mqtt' || this.o.transport === 'mqtt-ws'
          ? connectMqtt(this.o, endpoint, token, events)
          : connectAmqp(this.o, endpoint, token, events);
    } catch (err) {
      release();
      throw err;
    }
    this.session = session;
    // A hub that accepts the connection and then never answers (no CONNACK or SUBACK, an attach left pending) held the
    // device at "connecting" for ever: mqtt.js gives up on a CONNACK only, rhea on nothing. Give the attempt up and retry.
    clearTimeout(this.connectTimer);
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      release();
      if (this.session !== session || this.life.closing) return;
      this.session = undefined;
      this.held = [];
      void session.end();
      this.life.lost(
        new IotHubError(
          'TIMEOUT',
          `the hub did not complete the connection in ${Math.round(endpoint.connectTimeoutMs / 1000)} s`,
        ),
        () => this.connect(),
      );
    }, endpoint.connectTimeoutMs);
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

/**
 * Transport `auto`: a protocol's own port (MQTT 8883, AMQP 5671) when it answers, else the same protocol over WebSockets
 * (443), which corporate firewalls let through. Before an attempt the own port is asked for a TLS handshake (through the
 * proxy, when there is one): one that answers is used; one that refuses, or says nothing for a few seconds, is passed
 * over for WebSockets. The choice that worked is remembered (in memory, per config node and hub host and port): after
 * WebSockets worked, the next attempt gives the own port a short look only (it is used again only if it answers), so
 * a network that blocks it costs seconds once, not on every reconnect. One look is shared by every connection that
 * asks while it is under way or within a second of its answer (a fleet of devices reconnecting together).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { openTunnel, Proxy } from './proxy';

export type Route = 'own' | 'ws';

export interface ChooserTarget {
  host: string;
  /** The own port (8883, 5671). */
  port: number;
  servername: string;
  proxy?: Proxy;
}

export interface ChooserOptions {
  /** How long the own port may take to answer the first look (default 5 s). */
  probeMs?: number;
  /** How long after WebSockets worked (default 1.5 s). */
  recheckMs?: number;
  /** How long a look's answer holds for other connections after it came (default 1 s). */
  shareMs?: number;
}

/** Whether host:port completes a TLS handshake within ms (any certificate: this only asks whether the port answers). */
export function tlsAnswers(t: ChooserTarget, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    const socket = tls.connect({
      host: t.host,
      port: t.port,
      servername: net.isIP(t.servername) ? undefined : t.servername,
      rejectUnauthorized: false,
      ...(t.proxy ? { socket: openTunnel(t.proxy, t.host, t.port, ms) as net.Socket } : {}),
    });
    const finish = (ok: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), ms);
    socket.once('secureConnect', () => finish(true));
    socket.on('error', () => finish(false));
    socket.once('close', () => finish(false));
  });
}

export class TransportChooser {
  /** WebSockets worked last, while the own port did not answer. */
  private wsLast = false;
  /** The own port failed after answering the look (a firewall that lets the handshake through, then cuts): skip it once. */
  private skipOwn = false;
  private look: { result: Promise<boolean>; until: number } | undefined;

  constructor(
    private readonly target: ChooserTarget,
    private readonly o: ChooserOptions = {},
    private readonly answers: (t: ChooserTarget, ms: number) => Promise<boolean> = tlsAnswers,
  ) {}

  /** The longest a choice may take (the first look). */
  get lookMs(): number {
    return this.o.probeMs ?? 5000;
  }

  /** The route for the next attempt. */
  async choose(): Promise<Route> {
    if (this.skipOwn) {
      this.skipOwn = false;
      return 'ws';
    }
    const now = Date.now();
    if (!this.look || this.look.until < now) {
      const ms = this.wsLast ? (this.o.recheckMs ?? 1500) : this.lookMs;
      const look = { result: this.answers(this.target, ms), until: Infinity };
      this.look = look;
      void look.result.then(() => {
        look.until = Date.now() + (this.o.shareMs ?? 1000);
      });
    }
    return (await this.look.result) ? 'own' : 'ws';
  }

  /** A connection came up on this route: it is the one tried first next time. */
  worked(route: Route): void {
    this.wsLast = route === 'ws';
  }

  /** A connection that was up is gone: the next attempt looks at the own port afresh (the network may have changed). */
  lost(): void {
    this.look = undefined;
  }

  /** A connection on the own port failed before it was up, for a reason of the network (not the credentials). */
  ownFailed(): void {
    this.look = undefined;
    this.skipOwn = true;
  }
}

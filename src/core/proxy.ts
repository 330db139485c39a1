/**
 * HTTP proxies: the tunnel (an HTTP CONNECT, node:net only) that MQTT, AMQP and their WebSockets ride through, and which
 * proxy applies to a host (the config node's URL, or HTTPS_PROXY / NO_PROXY). The tunnel is returned at once as a
 * stream that holds what is written until the proxy has said yes, so that mqtt.js, rhea and ws, which each want a socket
 * synchronously, can have TLS started over it.
 */
import * as net from 'node:net';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { IotHubError } from './errors';

export interface Proxy {
  host: string;
  port: number;
  /** The Proxy-Authorization header's value (Basic), when the proxy wants a user. */
  authorization?: string;
  /** "proxy HOST:PORT", for messages: never the user or password. */
  label: string;
}

/**
 * The proxy at `url` (http://host:port; https:// proxies are not supported). User and password come apart from the URL
 * (Node-RED credentials, never exported); a URL that carries them is refused unless `fromEnv` (HTTPS_PROXY often does).
 */
export function parseProxyUrl(url: string, user?: string, password?: string, fromEnv = false): Proxy {
  const field = fromEnv ? 'HTTPS_PROXY' : 'proxy URL';
  let u: URL;
  try {
    u = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(url) ? url : `http://${url}`);
  } catch {
    throw new IotHubError('INVALID_ARGUMENT', `the ${field} cannot be read: give it as http://host:port`, {
      field: 'proxy',
      reason: 'bad proxy URL',
    });
  }
  if (u.protocol !== 'http:')
    throw new IotHubError(
      'INVALID_ARGUMENT',
      `the ${field} must start with http:// (the tunnel is an HTTP CONNECT; the hub's own TLS runs inside it)`,
      { field: 'proxy', reason: 'bad proxy URL' },
    );
  if ((u.username || u.password) && !fromEnv)
    throw new IotHubError(
      'INVALID_ARGUMENT',
      'the proxy URL must not hold a user or password (it would be exported with the flow): put them in the proxy user and password fields',
      { field: 'proxy', reason: 'bad proxy URL' },
    );
  const host = u.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = u.port ? Number(u.port) : 80;
  const name = user || decodeURIComponent(u.username);
  const pass = password ?? decodeURIComponent(u.password);
  return {
    host,
    port,
    label: `proxy ${host}:${port}`,
    ...(name ? { authorization: `Basic ${Buffer.from(`${name}:${pass ?? ''}`).toString('base64')}` } : {}),
  };
}

/**
 * Whether NO_PROXY (comma or space separated: `*`, a host, `.domain` or `domain`, each optionally `:port`) exempts host
 * (and port: an entry with a port exempts only that port; without `port` such entries never match).
 */
export function noProxy(list: string | undefined, host: string, port?: number): boolean {
  if (!list) return false;
  const h = host.toLowerCase();
  for (const raw of list.split(/[\s,]+/)) {
    const entry = raw.trim().toLowerCase();
    if (!entry) continue;
    if (entry === '*') return true;
    const m = /^(.*?)(?::(\d+))?$/.exec(entry) as RegExpExecArray;
    if (m[2] && Number(m[2]) !== port) continue;
    const d = m[1].replace(/^\*?\./, '');
    if (h === d || h.endsWith(`.${d}`)) return true;
  }
  return false;
}

export type ProxyMode = 'env' | 'none' | 'url';

/**
 * The proxy for connections to `host` (where we dial: the hub, or a gateway): none; the given URL (always, as the user
 * asked for it); or HTTPS_PROXY unless NO_PROXY exempts the host (the loopback is always exempt from the environment's).
 */
export function proxyFor(
  mode: ProxyMode,
  host: string,
  o: { url?: string; user?: string; password?: string; env?: Record<string, string | undefined> } = {},
): Proxy | undefined {
  if (mode === 'none') return undefined;
  if (mode === 'url') {
    if (!o.url)
      throw new IotHubError('INVALID_ARGUMENT', 'a proxy is chosen but no proxy URL is set: give http://host:port', {
        field: 'proxy',
        reason: 'no proxy URL',
      });
    return parseProxyUrl(o.url, o.user, o.password);
  }
  const env = o.env ?? {};
  const url = env.HTTPS_PROXY || env.https_proxy;
  if (!url) return undefined;
  if (/^(localhost|127\.\d+\.\d+\.\d+|::1)$/i.test(host)) return undefined;
  if (noProxy(env.NO_PROXY ?? env.no_proxy, host)) return undefined;
  return parseProxyUrl(url, undefined, undefined, true);
}

/** What the proxy said, or why it could not be asked: fromSocketError turns these into "proxy refused (403)", "proxy down". */
function proxyError(proxy: Proxy, code: 'EPROXY' | 'EPROXYDOWN', message: string, statusCode?: number): Error {
  return Object.assign(new Error(message), { code, proxy: proxy.label, ...(statusCode ? { statusCode } : {}) });
}

/** The answer's head may not grow past this: a proxy that sends more before its blank line is not one. */
const MAX_HEAD = 16 * 1024;

/** A stream that holds writes until the tunnel is up, then passes bytes both ways to the proxy's socket. */
class TunnelStream extends Duplex {
  private socket: net.Socket | undefined;
  /** The socket to the proxy while CONNECT is under way: destroyed with the stream. */
  pending: net.Socket | undefined;
  /** Stops waiting for the proxy's answer (its timer): a stream given up before the answer leaves nothing behind. */
  cancel: (() => void) | undefined;
  private flowing = false;

  constructor() {
    super({ autoDestroy: false });
    this.cork();
  }

  start(socket: net.Socket): void {
    this.pending = undefined;
    if (this.destroyed) {
      socket.destroy();
      return;
    }
    this.socket = socket;
    if (!this.flowing) socket.pause();
    socket.on('data', (chunk: Buffer) => {
      this.flowing = this.push(chunk);
      if (!this.flowing) socket.pause();
    });
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => this.destroy());
    this.uncork();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (!this.socket) callback(new Error('the proxy tunnel is not open'));
    else this.socket.write(chunk, callback);
  }

  override _final(callback: (err?: Error | null) => void): void {
    if (this.socket) this.socket.end(callback);
    else callback();
  }

  override _read(): void {
    this.flowing = true;
    this.socket?.resume();
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.cancel?.();
    this.cancel = undefined;
    this.pending?.destroy();
    this.pending = undefined;
    this.socket?.destroy();
    callback(err);
  }

  // What TLS and ws ask of a socket.
  setNoDelay(v = true): this {
    (this.socket ?? this.pending)?.setNoDelay(v);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    (this.socket ?? this.pending)?.setKeepAlive(enable, delay);
    return this;
  }

  setTimeout(ms: number, cb?: () => void): this {
    (this.socket ?? this.pending)?.setTimeout(ms, cb);
    return this;
  }
}

/**
 * A tunnel to host:port through the proxy, returned at once; bytes written before the proxy answered wait. It fails
 * with EPROXY (the proxy said no: 403, 407…) or EPROXYDOWN (not reachable, closed, no answer in timeoutMs).
 */
export function openTunnel(proxy: Proxy, host: string, port: number, timeoutMs = 30_000): Duplex {
  const stream = new TunnelStream();
  const socket = net.connect(proxy.port, proxy.host);
  stream.pending = socket;
  socket.setNoDelay(true);
  let head = Buffer.alloc(0);
  let answered = false;
  const fail = (err: Error) => {
    if (answered) return;
    answered = true;
    clearTimeout(timer);
    socket.destroy();
    stream.destroy(err);
  };
  const timer = setTimeout(
    () =>
      fail(proxyError(proxy, 'EPROXYDOWN', `no answer from the ${proxy.label} in ${Math.round(timeoutMs / 1000)} s`)),
    timeoutMs,
  );
  stream.cancel = () => {
    answered = true;
    clearTimeout(timer);
  };
  const target = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  socket.once('connect', () => {
    socket.write(
      `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n` +
        (proxy.authorization ? `Proxy-Authorization: ${proxy.authorization}\r\n` : '') +
        '\r\n',
    );
  });
  socket.on('error', (err: NodeJS.ErrnoException) => fail(proxyError(proxy, 'EPROXYDOWN', err.code ?? err.message)));
  socket.on('close', () => fail(proxyError(proxy, 'EPROXYDOWN', `the ${proxy.label} closed the connection`)));
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      if (head.length > MAX_HEAD) fail(proxyError(proxy, 'EPROXYDOWN', `the ${proxy.label} does not speak HTTP`));
      return;
    }
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(head.subarray(0, end).toString('latin1'))?.[1] ?? 0);
    if (status < 200 || status > 299) {
      fail(
        status
          ? proxyError(proxy, 'EPROXY', `the ${proxy.label} answered ${status} to CONNECT ${target}`, status)
          : proxyError(proxy, 'EPROXYDOWN', `the ${proxy.label} does not speak HTTP`),
      );
      return;
    }
    answered = true;
    clearTimeout(timer);
    socket.removeListener('data', onData);
    socket.removeAllListeners('error');
    socket.removeAllListeners('close');
    // Bytes after the blank line are the far end's already (a TLS server hello would not come first, but be exact).
    const rest = head.subarray(end + 4);
    if (rest.length) socket.unshift(rest);
    stream.start(socket);
  };
  socket.on('data', onData);
  return stream;
}

/** TLS to host:port through the proxy: for mqtt.js (its `socket` option) and rhea (its `connect` option). */
export function tlsThroughProxy(
  proxy: Proxy,
  host: string,
  port: number,
  options: tls.ConnectionOptions,
  timeoutMs: number,
  onSecure?: () => void,
): tls.TLSSocket {
  return tls.connect({ ...options, socket: openTunnel(proxy, host, port, timeoutMs) as net.Socket }, onSecure);
}

/** ws's `createConnection` for wss:// through the proxy (ws hands it the URL's host and port and the TLS options). */
export function wsThroughProxy(proxy: Proxy, timeoutMs: number): (opts: tls.ConnectionOptions) => tls.TLSSocket {
  return (opts) => {
    const host = String(opts.host);
    const servername = opts.servername ?? (net.isIP(host) ? undefined : host);
    // path: ws passes the URL's, which TLS would take for a pipe to dial.
    return tlsThroughProxy(proxy, host, Number(opts.port), { ...opts, path: undefined, servername }, timeoutMs);
  };
}

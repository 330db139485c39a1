/**
 * The DPS port (docs/PROTOCOL.md, section "Device Provisioning Service"): one TLS port for both device transports of
 * the provisioning SDKs. The first byte after the handshake tells them apart: 0x10 is an MQTT CONNECT (handed to an
 * aedes broker of its own), anything else is HTTP (the REST API of dps-rest.ts). So one `host:port` serves either.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Duplex } from 'node:stream';
import { LogFn } from './context';
import { Provisioning } from './dps';
import { handleDpsRequest } from './dps-rest';
import { publishPacket } from './mqtt-endpoint';
import { ServerSockets } from './server-sockets';

interface AedesClient {
  id: string;
  conn: Duplex;
  close(cb?: () => void): void;
}

/** What the CONNECT said: the SDK puts scope and registration id in the user name and the SAS token in the password. */
interface DpsSession {
  idScope: string;
  registrationId: string;
  token?: string;
}

const RESPONSES = '$dps/registrations/res/#';
const REGISTER = /^\$dps\/registrations\/PUT\/iotdps-register\/\?(.*)$/;
const STATUS = /^\$dps\/registrations\/GET\/iotdps-get-operationstatus\/\?(.*)$/;

export interface DpsEndpoint {
  readonly provisioning: Provisioning;
  listen(port: number, host: string): Promise<number>;
  /**
   * An MQTT stream from the hub's WebSocket path, which DPS's MQTT over WebSockets dials too: kept when its CONNECT is
   * DPS's, else handed to `otherwise` (the hub's broker). The CONNECT may come in several WebSocket messages.
   */
  handleMqttStream(stream: Duplex, otherwise: (stream: Duplex) => void): void;
  close(): Promise<void>;
}

/**
 * Whether an MQTT stream's first bytes are a CONNECT with DPS's user name (`{idScope}/registrations/{id}/api-version=
 * ...`; the hub's is `{host}/{deviceId}/?api-version=...`); undefined while the CONNECT is not complete. Read by hand:
 * fixed header, protocol name, level, flags, keep-alive, client id, will topic and message when flagged, user name.
 */
export function isDpsConnect(first: Buffer): boolean | undefined {
  if (first.length === 0) return undefined;
  if (first[0] !== 0x10) return false;
  let o = 1;
  let remaining = 0;
  for (let shift = 0; ; shift += 7) {
    if (o >= first.length) return undefined;
    const b = first[o++];
    remaining += (b & 0x7f) * 2 ** shift;
    if (!(b & 0x80)) break;
    if (shift >= 21) return false;
  }
  if (first.length < o + remaining) return undefined;
  try {
    const str = () => {
      const n = first.readUInt16BE(o);
      const v = first.subarray(o + 2, o + 2 + n);
      o += 2 + n;
      return v;
    };
    str();
    o++;
    const flags = first[o];
    o += 3;
    str();
    if (flags & 0x04) {
      str();
      str();
    }
    if (!(flags & 0x80)) return false;
    return /^[^/]+\/registrations\/[^/]+\/api-version=/.test(str().toString('utf8'));
  } catch {
    return false;
  }
}

export async function createDpsEndpoint(
  dps: Provisioning,
  log: LogFn,
  keyPem: string,
  certPem: string,
): Promise<DpsEndpoint> {
  const { Aedes } = await import('aedes');
  const sessions = new WeakMap<AedesClient, DpsSession>();

  const answer = (c: AedesClient, rid: string, a: { status: number; body: object; retryAfter?: number }) => {
    const topic = `$dps/registrations/res/${a.status}/?$rid=${rid}${a.retryAfter !== undefined ? `&retry-after=${a.retryAfter}` : ''}`;
    if (!c.conn.destroyed) c.conn.write(publishPacket(topic, undefined, Buffer.from(JSON.stringify(a.body), 'utf8')));
  };

  const broker = await Aedes.createBroker({
    authenticate: (
      client: unknown,
      username: string | undefined,
      password: Buffer | undefined,
      done: (e: Error | null, ok: boolean | null) => void,
    ) => {
      const c = client as AedesClient;
      // `{idScope}/registrations/{registrationId}/api-version=...`; the token is checked with each request, as DPS
      // answers a bad one with 401 on the response topic rather than refusing the CONNECT.
      const m = /^([^/]+)\/registrations\/([^/]+)\/api-version=/.exec(username ?? '');
      if (!m || m[2] !== c.id) {
        log('info', `DPS MQTT connect refused for ${c.id}: bad user name`);
        done(
          Object.assign(
            new Error(
              'the user name must be {idScope}/registrations/{registrationId}/api-version=... and the client id the registration id',
            ),
            { returnCode: 4 },
          ),
          null,
        );
        return;
      }
      sessions.set(c, {
        idScope: m[1],
        registrationId: m[2],
        token: password && password.length ? password.toString('utf8') : undefined,
      });
      done(null, true);
    },
    authorizeSubscribe: (
      _client: unknown,
      sub: { topic: string; qos: number },
      done: (e: Error | null, s?: unknown) => void,
    ) => {
      if (sub.topic !== RESPONSES) done(new Error(`only ${RESPONSES} can be subscribed`));
      else done(null, { ...sub, qos: 0 });
    },
    authorizePublish: (
      client: unknown,
      packet: { topic: string; payload: Buffer },
      done: (e?: Error | null) => void,
    ) => {
      const c = client as AedesClient;
      const s = sessions.get(c);
      const reg = REGISTER.exec(packet.topic);
      const st = reg ? null : STATUS.exec(packet.topic);
      if (!s || (!reg && !st)) {
        done(new Error('publishing there is not supported'));
        return;
      }
      const q = new URLSearchParams((reg ?? st)![1]);
      const rid = q.get('$rid') ?? '';
      // Answered after aedes acknowledges the request, so the PUBACK comes first, as from DPS.
      done(null);
      setImmediate(() => {
        try {
          respond();
        } catch (err) {
          log('error', `DPS MQTT: ${(err as Error).message}`);
          answer(c, rid, { status: 500, body: { errorCode: 500000, message: 'Internal server error' } });
        }
      });
      const respond = () => {
        if (reg) {
          let body: unknown;
          try {
            body = JSON.parse(packet.payload.toString('utf8') || '{}');
          } catch {
            body = {};
          }
          answer(c, rid, dps.register(s.idScope, s.registrationId, s.token, body));
        } else {
          answer(c, rid, dps.operationStatus(s.idScope, s.registrationId, s.token, q.get('operationId') ?? ''));
        }
      };
    },
    // Nothing is routed between DPS clients: every answer is written to its own connection.
    authorizeForward: () => null as never,
  } as never);

  const web = http.createServer((req, res) => {
    handleDpsRequest(dps, req, res).catch((err: Error) => {
      log('error', `DPS REST: ${err.message}`);
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  const server = tls.createServer({ key: keyPem, cert: certPem }, (socket) => {
    socket.setNoDelay(true);
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      socket.pause();
      socket.unshift(first);
      if (first[0] === 0x10) broker.handle(socket as never);
      else web.emit('connection', socket);
      socket.resume();
    });
  });

  const servers = new ServerSockets();
  servers.add(server);

  return {
    provisioning: dps,
    handleMqttStream(stream, otherwise) {
      const chunks: Buffer[] = [];
      const onData = (c: Buffer) => {
        chunks.push(c);
        const first = Buffer.concat(chunks);
        const mine = isDpsConnect(first);
        if (mine === undefined && first.length < 64 * 1024) return;
        stream.off('data', onData);
        stream.pause();
        stream.unshift(first);
        if (mine) broker.handle(stream as never);
        else otherwise(stream);
        stream.resume();
      };
      stream.on('data', onData);
    },
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve((server.address() as net.AddressInfo).port);
        });
      });
    },
    async close() {
      await servers.close();
      web.close();
      await new Promise<void>((r) => broker.close(() => r()));
    },
  };
}

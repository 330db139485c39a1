/** The AMQP device transport (rhea): CBS auth, the C2D receiver link, complete / reject / abandon (docs/PROTOCOL.md section 4). */
import { Connection, Delivery, EventContext, Message, Receiver } from 'rhea';
import { amqpConnectionError, Cbs, closeAmqpConnection, openAmqpConnection, whenOpen } from './amqp-connection';
import { fromAmqpMessage } from './amqp-codec';
import { c2dAddress } from './amqp-address';
import { DispositionQueue } from './disposition-queue';
import type { ResolvedEndpoint } from './endpoint';
import type { DeviceClientOptions, DeviceSession, SettleOutcome, TransportEvents } from './transport';
import { fromAmqpError, IotHubError } from './errors';
import { deviceResourceUri, parseSasToken } from './sas';

/** A terminus the peer sent as AMQP null (rhea hands it over as null or as a typed Null). */
function isNullTerminus(t: unknown): boolean {
  return t === null || t === undefined || (t as { type?: { typecode?: number } }).type?.typecode === 0x40;
}

export function connectAmqp(
  o: DeviceClientOptions,
  e: ResolvedEndpoint,
  token: string | undefined,
  events: TransportEvents,
): DeviceSession {
  const creds = o.credentials;
  const connection: Connection = openAmqpConnection(
    e,
    o.transport === 'amqp-ws',
    'cert' in creds ? { cert: creds.cert, key: creds.key, passphrase: creds.passphrase } : {},
  );
  const dispositions = new DispositionQueue();
  const unsettled = new Map<string, Delivery>();
  let receiver: Receiver | undefined;
  let cbs: Cbs | undefined;
  let done = false;
  let failure: IotHubError | undefined;

  const finish = (err?: IotHubError) => {
    if (done) return;
    done = true;
    dispositions.clear();
    cbs?.close();
    unsettled.clear();
    void closeAmqpConnection(connection);
    events.closed(err);
  };

  const audience = () =>
    token ? parseSasToken(token).sr : encodeURIComponent(deviceResourceUri(e.hostName, o.deviceId));

  (async () => {
    await whenOpen(connection);
    if (done) return;
    if (token) {
      cbs = new Cbs(connection);
      await cbs.putToken(audience(), token);
      if (done) return;
    }
    receiver = connection.open_receiver({
      source: { address: c2dAddress(o.deviceId) },
      autoaccept: false,
      credit_window: 1000,
    });
    // A refused attach comes back with a null source and the detach right behind it (AMQP 1.0 section 2.6.3): wait a
    // turn for that detach rather than report connected, which reset the backoff before each refusal. (Some hubs
    // answer a good attach with a null source too: it is connected a turn later.)
    receiver.on('receiver_open', (ctx: EventContext) => {
      if (!isNullTerminus(ctx.receiver?.source)) return events.connected();
      setImmediate(() => {
        if (!done && receiver?.is_open()) events.connected();
      });
    });
    receiver.on('receiver_error', (ctx: EventContext) => {
      failure = fromAmqpError(ctx.receiver?.error as { condition?: string; description?: string });
    });
    receiver.on('receiver_close', () => finish(failure ?? new IotHubError('DETACHED', 'the hub closed the C2D link')));
    receiver.on('message', (ctx: EventContext) => {
      const delivery = ctx.delivery as Delivery;
      let m;
      try {
        // rhea hands a transfer of another message format over as its raw bytes: no AMQP message to read.
        const format = (ctx as EventContext & { format?: number }).format;
        if (format !== undefined && format !== 0)
          throw new IotHubError('PROTOCOL_ERROR', `the hub sent a message of format ${format}, not an AMQP message`);
        m = fromAmqpMessage(ctx.message as Message);
      } catch (err) {
        // Dead-letter it (the hub would deliver it again and again), and say what came.
        delivery.reject({ condition: 'amqp:decode-error', description: 'the device cannot read this message' });
        events.unreadable(
          err instanceof IotHubError
            ? err
            : new IotHubError('PROTOCOL_ERROR', `unreadable C2D message: ${(err as Error).message}`),
          { body: ctx.message },
        );
        return;
      }
      // A lock token the hub gave twice would let one settle take the other's delivery and leave its own unsettled.
      let lock = m.lockToken ?? String(delivery.id);
      if (unsettled.has(lock)) lock = `${lock}#${delivery.id}`;
      m.lockToken = lock;
      unsettled.set(lock, delivery);
      events.message(m, () => {
        if (o.settle !== 'manual') void settle(lock, 'complete').catch(() => undefined);
      });
    });
  })().catch((err: unknown) =>
    finish(err instanceof IotHubError ? err : new IotHubError('CONNECTION_LOST', (err as Error).message)),
  );

  connection.on('disconnected', (ctx: EventContext) => finish(failure ?? amqpConnectionError(ctx)));
  connection.on('connection_close', () =>
    finish(failure ?? new IotHubError('CONNECTION_LOST', 'the hub closed the connection')),
  );
  connection.on('connection_error', (ctx: EventContext) => {
    failure = amqpConnectionError(ctx);
  });

  function settle(lockToken: string, outcome: SettleOutcome): Promise<void> {
    const d = unsettled.get(lockToken);
    if (!d || done) {
      return Promise.reject(
        new IotHubError(
          'LOCK_LOST',
          'this message was settled already or its lock was lost: the hub delivers it again',
        ),
      );
    }
    unsettled.delete(lockToken);
    return new Promise((resolve) => {
      dispositions.settle(outcome, () => {
        if (outcome === 'complete') d.accept();
        else if (outcome === 'reject')
          d.reject({ condition: 'com.microsoft:rejected', description: 'rejected by the device' });
        else d.release({ undeliverable_here: false, delivery_failed: true } as never);
        resolve();
      });
    });
  }

  return {
    settle,
    renew: async (next: string) => {
      if (!cbs || done) throw new IotHubError('NOT_CONNECTED', 'no token channel');
      await cbs.putToken(parseSasToken(next).sr, next);
    },
    end: async () => {
      if (done) return;
      // Let queued dispositions go out before the connection closes.
      await new Promise((r) => setImmediate(r));
      await new Promise((r) => setImmediate(r));
      done = true;
      cbs?.close();
      await closeAmqpConnection(connection);
    },
  };
}

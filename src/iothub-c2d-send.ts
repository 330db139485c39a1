/** c2d send: sends msg.payload as a C2D message, with property mapping and delivery tracking. */
import { DeliveryTracker } from './core/delivery-tracker';
import type { StatusEvent } from './core/state';
import { IotHubError } from './core/errors';
import { Fifo } from './core/fifo';
import { ServiceLease } from './core/hub-session';
import {
  buildC2DMessage,
  EvaluatedRow,
  MappingRow,
  parseAck,
  parseExpiry,
  renderTemplate,
} from './core/message-builder';
import type { ConnectionNode } from './iothub-connection';
import { causeLogger, holdLease } from './node-lease';
import { ThrottleRetry } from './core/throttle-retry';
import { c2dSendSettings } from './node-settings';
import { Node, NodeAPI, NodeDef, NodeMessage } from './node-red';

/** How many msgs one node has on their way to the hub at once while connected (a rhea receiver's default link credit). */
const SENDS_IN_PROGRESS = 1000;

interface HeldMsg {
  msg: NodeMessage;
  send: (m: NodeMessage) => void;
  done: (err?: Error) => void;
}

module.exports = function (RED: NodeAPI) {
  function evaluate(node: Node, value: string, type: string, msg: NodeMessage): Promise<unknown> {
    if (type === 'template') return Promise.resolve(renderTemplate(value, msg));
    return new Promise((resolve, reject) => {
      RED.util.evaluateNodeProperty(value, type, node, msg, (err, result) => (err ? reject(err) : resolve(result)));
    });
  }

  async function evaluateRows(node: Node, rows: MappingRow[], msg: NodeMessage): Promise<EvaluatedRow[]> {
    const out: EvaluatedRow[] = [];
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      let value: unknown;
      try {
        value = await evaluate(node, r.value, r.valueType, msg);
      } catch (err) {
        throw new IotHubError(
          'INVALID_MESSAGE',
          `property row ${i + 1} "${r.name}": ${r.valueType} value cannot be evaluated (${(err as Error).message})`,
          { field: `mappings[${i + 1}]` },
        );
      }
      out.push({ name: r.name, value, row: i + 1 });
    }
    return out;
  }

  function C2DSendNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const {
      connection,
      rows,
      ack: nodeAck,
      ttlSec,
      trackDelivery,
      trackTimeoutMs,
      deviceIdType,
      deviceId: deviceIdValue,
    } = c2dSendSettings(def);
    const config = RED.nodes.getNode(connection) as ConnectionNode | null;
    const tracker = new DeliveryTracker();
    let removeFeedback: (() => void) | undefined;
    // A throttled hub (429, a tier's C2D limit): sends are retried with backoff within the give-up time, status says so.
    let lastStatus: StatusEvent | undefined;
    const throttle = new ThrottleRetry({
      onThrottled: (on) => {
        if (on) node.status({ fill: 'yellow', shape: 'ring', text: RED._('iothub-c2d-send.status.throttled') });
        else if (lastStatus && config) node.status(config.statusOf(lastStatus));
      },
    });

    // A burst (a split into 10,000 msgs) is dispatched SENDS_IN_PROGRESS at a time while connected; the rest wait as the
    // msgs they are, in order. Built all at once, every message, its promises and its tracking stayed alive until the hub
    // took it: the bench's burst cost 23-25 us of CPU per msg fed 1,000 at a time against 31-33 us all at once.
    const held = new Fifo<HeldMsg>();
    let inProgress = 0;
    let starting = false;
    let closing = false;
    const connected = () => lastStatus?.state === 'connected';
    function startHeld(): void {
      if (starting) return;
      starting = true;
      while (held.size > 0 && (inProgress < SENDS_IN_PROGRESS || !connected())) {
        const h = held.take() as HeldMsg;
        start(h.msg, h.send, h.done);
      }
      starting = false;
    }

    const logCause = causeLogger(node);
    const ready: Promise<ServiceLease> = config
      ? config.configError
        ? Promise.reject(config.configError)
        : config.useService((ev: StatusEvent) => {
            lastStatus = ev;
            if (!throttle.isThrottled) node.status(config.statusOf(ev));
            logCause(ev);
            // Not connected, the held msgs go on to the connection's queue, whose time-out and limit then apply.
            if (ev.state !== 'connected') startHeld();
          })
      : Promise.reject(
          new IotHubError('INVALID_ARGUMENT', RED._('iothub-c2d-send.errors.noConfig'), { field: 'connection' }),
        );
    const lent = holdLease(
      RED,
      node,
      ready,
      (l) => {
        if (trackDelivery) removeFeedback = l.addFeedbackListener((records) => tracker.handleRecords(records));
      },
      () => {
        closing = true;
        const stopped = new IotHubError('NOT_CONNECTED', RED._('iothub-c2d-send.errors.closedBeforeSent'));
        for (const h of held.takeAll()) h.done(stopped);
        throttle.close();
        const dropped = tracker.close();
        if (dropped > 0) node.warn(RED._('iothub-c2d-send.track.dropped', { n: dropped }));
        if (removeFeedback) removeFeedback();
      },
    );

    function checkedDeviceId(id: unknown): string {
      if (typeof id !== 'string' || !id.trim()) {
        throw new IotHubError('INVALID_ARGUMENT', RED._('iothub-c2d-send.errors.noDevice'), { field: 'deviceId' });
      }
      return id.trim();
    }

    /** Builds, tracks and sends one message; done() once the hub accepted it, done(err) when it did not. */
    function dispatch(
      msg: NodeMessage,
      send: (m: NodeMessage) => void,
      done: (err?: Error) => void,
      deviceId: string,
      evaluated: EvaluatedRow[],
      l: ServiceLease,
    ): void {
      let ack = msg.ack !== undefined ? parseAck(msg.ack, 'msg.ack') : nodeAck;
      // Tracking needs the hub to report both outcomes.
      if (trackDelivery) ack = 'full';
      const expiry = msg.expiryTimeUtc !== undefined ? parseExpiry(msg.expiryTimeUtc, 'msg.expiryTimeUtc') : undefined;
      const message = buildC2DMessage({ payload: msg.payload, rows: evaluated, ack, ttlSec, expiryTimeUtc: expiry });
      const messageId = message.messageId as string;
      if (trackDelivery) {
        tracker.track(messageId, trackTimeoutMs, (outcome, record) => {
          const out: NodeMessage = { ...msg, messageId, deviceId, delivery: outcome };
          if (record) out.feedback = record;
          else out.deliveryNote = RED._('iothub-c2d-send.track.timeoutNote');
          send(out);
        });
      }
      throttle
        .send(() => l.send(deviceId, message), Date.now() + trackTimeoutMs)
        .then(
          () => {
            msg.messageId = messageId;
            done();
          },
          (err: Error) => {
            if (trackDelivery) tracker.forget(messageId);
            done(err);
          },
        );
    }

    /** msg.action "purge": empties the device's C2D queue and sends what the hub answered. */
    function purge(msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void): void {
      (async () => {
        const deviceId = checkedDeviceId(
          deviceIdType === 'str'
            ? deviceIdValue || msg.deviceId
            : await evaluate(node, deviceIdValue, deviceIdType, msg),
        );
        const l = lent.lease ?? (lent.error ? undefined : await ready);
        if (!l) throw lent.error ?? new IotHubError('NOT_CONNECTED', RED._('iothub-c2d-send.errors.notConnected'));
        const result = await l.purge(deviceId);
        send({ ...msg, deviceId, payload: { totalMessagesPurged: result.totalMessagesPurged, deviceId } });
        done();
      })().catch((err: Error) => done(err));
    }

    node.on('input', (msg, send, done) => {
      if (msg.action !== undefined && msg.action !== 'send') {
        if (msg.action === 'purge') return purge(msg, send, done);
        done(
          new IotHubError(
            'INVALID_ARGUMENT',
            `msg.action ${JSON.stringify(msg.action)} is not known: use "purge" to empty the device's queue, or leave msg.action unset to send`,
            { field: 'action' },
          ),
        );
        return;
      }
      if (closing) {
        done(new IotHubError('NOT_CONNECTED', RED._('iothub-c2d-send.errors.closedBeforeSent')));
        return;
      }
      if (held.size > 0 || (inProgress >= SENDS_IN_PROGRESS && connected())) {
        held.push({ msg, send, done });
        return;
      }
      start(msg, send, done);
    });

    /** One msg on its way: counted until done, then the next held one may start. */
    function start(msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void): void {
      inProgress++;
      handle(msg, send, (err?: Error) => {
        inProgress--;
        done(err);
        if (held.size > 0) startHeld();
      });
    }

    function handle(msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void): void {
      // A fixed device id, no property rows and a live connection need no await before the send itself: every
      // promise saved is one less object kept alive per msg in flight (a burst of thousands is GC-bound).
      const lease = lent.lease;
      if (deviceIdType === 'str' && rows.length === 0 && lease) {
        try {
          dispatch(msg, send, done, checkedDeviceId(deviceIdValue || msg.deviceId), [], lease);
        } catch (err) {
          done(err as Error);
        }
        return;
      }
      (async () => {
        const deviceId = checkedDeviceId(
          deviceIdType === 'str'
            ? deviceIdValue || msg.deviceId
            : await evaluate(node, deviceIdValue, deviceIdType, msg),
        );
        const evaluated = rows.length > 0 ? await evaluateRows(node, rows, msg) : [];
        const l = lent.lease ?? (lent.error ? undefined : await ready);
        if (!l) throw lent.error ?? new IotHubError('NOT_CONNECTED', RED._('iothub-c2d-send.errors.notConnected'));
        dispatch(msg, send, done, deviceId, evaluated, l);
      })().catch((err: Error) => done(err));
    }
  }
  RED.nodes.registerType('iothub-c2d-send', C2DSendNode);
};

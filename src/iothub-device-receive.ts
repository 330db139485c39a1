/** device receive: acts as a device and emits one msg per C2D message. */
import { SettleOutcome, StatusEvent } from './core/device-client';
import { IotHubError } from './core/errors';
import { DeviceLease } from './core/hub-session';
import { ReceivedC2DMessage } from './core/message';
import type { ConnectionNode } from './iothub-connection';
import { Node, NodeAPI, NodeDef, NodeMessage } from './node-red';
import { decodePayload, PayloadOutput } from './payload';

const OUTCOMES: SettleOutcome[] = ['complete', 'reject', 'abandon'];

export function toMsg(deviceId: string, m: ReceivedC2DMessage, output: PayloadOutput): NodeMessage {
  const msg: NodeMessage = { topic: `devices/${deviceId}/messages/devicebound`, deviceId };
  // Only what the message has: absent system properties stay absent rather than showing as undefined in the debug
  // sidebar (set, not deleted afterwards, which would slow every later access to the msg).
  if (m.messageId !== undefined) msg.messageId = m.messageId;
  if (m.correlationId !== undefined) msg.correlationId = m.correlationId;
  if (m.userId !== undefined) msg.userId = m.userId;
  if (m.contentType !== undefined) msg.contentType = m.contentType;
  if (m.contentEncoding !== undefined) msg.contentEncoding = m.contentEncoding;
  if (m.expiryTimeUtc !== undefined) msg.expiryTimeUtc = new Date(m.expiryTimeUtc).toISOString();
  if (m.ack !== undefined) msg.ack = m.ack;
  msg.properties = { ...m.properties };
  msg.systemProperties = { ...m.systemProperties };
  if (m.lockToken !== undefined) msg.lockToken = m.lockToken;
  if (m.deliveryCount !== undefined) msg.deliveryCount = m.deliveryCount;
  if (m.enqueuedTimeUtc !== undefined) msg.enqueuedTimeUtc = new Date(m.enqueuedTimeUtc).toISOString();
  if (m.sequenceNumber !== undefined) msg.sequenceNumber = m.sequenceNumber;
  msg.payload = decodePayload(m.body, m.contentType, output);
  return msg;
}

module.exports = function (RED: NodeAPI) {
  function DeviceReceiveNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = RED.nodes.getNode(def.connection as string) as ConnectionNode | null;
    const output = (['auto', 'string', 'buffer', 'json'].includes(def.output as string) ? def.output : 'auto') as PayloadOutput;
    const settle = def.settle === 'manual' ? 'manual' : 'auto';
    const deviceId = (typeof def.deviceId === 'string' ? def.deviceId.trim() : '') || config?.capabilities?.deviceId || '';
    let lease: DeviceLease | undefined;
    let closing = false;
    // Manual mode: messages handed out and not yet settled. The hub redelivers them after its lock time; say so.
    const LOCK_MS = 60_000;
    const unsettled = new Map<string, NodeJS.Timeout>();
    let lapsed = 0;
    const watchLock = (lockToken: string) => {
      unsettled.set(lockToken, setTimeout(() => {
        unsettled.delete(lockToken);
        lapsed++;
        node.status({ fill: 'yellow', shape: 'ring', text: RED._('iothub-device-receive.status.lockLapsed', { n: lapsed }) });
      }, LOCK_MS));
    };
    const settled = (lockToken: string) => {
      const t = unsettled.get(lockToken);
      if (t) clearTimeout(t);
      unsettled.delete(lockToken);
    };

    const fail = (text: string) => node.status({ fill: 'red', shape: 'ring', text });
    let unreadable = 0;

    if (!config) {
      fail(RED._('iothub-device-receive.status.noConfig'));
      node.error(RED._('iothub-device-receive.errors.noConfig'));
    } else if (config.configError) {
      fail(RED._('iothub-device-receive.status.badConfig'));
    } else if (!deviceId) {
      fail(RED._('iothub-device-receive.status.noDevice'));
      node.error(RED._('iothub-device-receive.errors.noDevice'));
    } else {
      node.status({ fill: 'yellow', shape: 'ring', text: RED._('iothub-device-receive.status.connecting') });
      config.useDevice(deviceId, {
        onStatus: (ev: StatusEvent) => {
          node.status(config.statusOf(ev));
          if (ev.state === 'unauthorized' || ev.state === 'error') {
            if (ev.error) node.warn(ev.error.message);
          }
        },
        onMessage: (m: ReceivedC2DMessage) => {
          let msg: NodeMessage;
          try {
            msg = toMsg(deviceId, m, output);
          } catch (err) {
            // The body did not fit the chosen output: the Catch node gets it with the raw body.
            const raw = toMsg(deviceId, m, 'buffer');
            node.error(err, raw);
            return;
          }
          if (settle === 'manual' && typeof msg.lockToken === 'string') watchLock(msg.lockToken);
          node.send(msg);
        },
        // Nothing to deliver, but not nothing to say: the Catch node gets what came, the status counts it.
        onUnreadable: (err, raw) => {
          unreadable++;
          node.status({ fill: 'yellow', shape: 'dot', text: RED._('iothub-device-receive.status.unreadable', { n: unreadable }) });
          const msg: NodeMessage = { deviceId, payload: raw.body };
          if (raw.topic !== undefined) msg.topic = raw.topic;
          node.error(`${RED._('iothub-device-receive.errors.unreadable')}: ${err.message}`, msg);
        },
      }, settle).then((l) => {
        if (closing) void l.release(false);
        else lease = l;
      }, (err: Error) => {
        fail(err instanceof IotHubError ? err.code.toLowerCase().replace(/_/g, ' ') : 'error');
        node.error(err.message);
      });
    }

    node.on('input', (msg, send, done) => {
      if (settle !== 'manual') {
        done(new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.notManual')));
        return;
      }
      const lockToken = msg.lockToken;
      const outcome = msg.settle;
      if (typeof lockToken !== 'string' || !lockToken) {
        done(new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.noLockToken'), { field: 'lockToken' }));
        return;
      }
      if (typeof outcome !== 'string' || !OUTCOMES.includes(outcome as SettleOutcome)) {
        done(new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.badSettle'), { field: 'settle' }));
        return;
      }
      if (!lease) {
        done(new IotHubError('NOT_CONNECTED', RED._('iothub-device-receive.errors.notConnected')));
        return;
      }
      settled(lockToken);
      lease.settle(lockToken, outcome as SettleOutcome).then(() => {
        msg.settled = outcome;
        // The second output carries settle results, so a loop back into this node cannot re-trigger itself.
        send([null, msg]);
        done();
      }, (err: Error) => done(err));
    });

    node.on('close', (removed, done) => {
      closing = true;
      for (const t of unsettled.values()) clearTimeout(t);
      unsettled.clear();
      const l = lease;
      lease = undefined;
      (l ? l.release(removed) : Promise.resolve()).then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iothub-device-receive', DeviceReceiveNode);
};

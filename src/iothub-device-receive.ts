/** device receive: acts as a device and emits one msg per C2D message. */
import type { StatusEvent } from './core/state';
import type { SettleOutcome } from './core/transport';
import { IotHubError } from './core/errors';
import { DeviceLease } from './core/hub-session';
import { ReceivedC2DMessage } from './core/message';
import type { ConnectionNode } from './iothub-connection';
import { HeldLease, holdLease } from './node-lease';
import { deviceReceiveSettings } from './node-settings';
import { Node, NodeAPI, NodeDef, NodeMessage } from './node-red';
import { decodePayload, PayloadOutput } from './core/payload';

const OUTCOMES: SettleOutcome[] = ['complete', 'reject', 'abandon'];

function toMsg(deviceId: string, m: ReceivedC2DMessage, output: PayloadOutput): NodeMessage {
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
    const { connection, output, settle, deviceId: ownId } = deviceReceiveSettings(def);
    const config = RED.nodes.getNode(connection) as ConnectionNode | null;
    const deviceId = ownId || config?.capabilities?.deviceId || '';
    let held: HeldLease<DeviceLease> | undefined;
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
      held = holdLease(RED, node, config.useDevice(deviceId, {
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
      }, settle), () => undefined, () => {
        for (const t of unsettled.values()) clearTimeout(t);
        unsettled.clear();
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
      const lease = held?.lease;
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
  }
  RED.nodes.registerType('iothub-device-receive', DeviceReceiveNode);
};

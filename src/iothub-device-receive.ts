/**
 * device receive: acts as one device, a list of them, or devices connected at run time by msg.action, and emits one
 * msg per C2D message, each with its deviceId.
 */
import { parseConnectionString } from './core/connection-string';
import { DeviceFleet } from './core/device-fleet';
import { IotHubError } from './core/errors';
import { ReceivedC2DMessage } from './core/message';
import type { ConnectionState, StatusEvent } from './core/state';
import type { DeviceCredentials, SettleOutcome } from './core/transport';
import type { ConnectionNode } from './iothub-connection';
import { causeLogger, failureStatus } from './node-lease';
import { deviceReceiveSettings } from './node-settings';
import { Node, NodeAPI, NodeDef, NodeMessage, NodeStatus } from './node-red';
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

/** The ids a device list setting holds: a JSON array of strings, or a string of ids between spaces or new lines. */
function idsOf(value: unknown): string[] {
  if (Array.isArray(value)) {
    return value
      .map((v, i) => {
        if (typeof v !== 'string')
          throw new IotHubError('INVALID_ARGUMENT', `device list entry ${i + 1} is not a string`, {
            field: 'deviceId',
          });
        return v.trim();
      })
      .filter(Boolean);
  }
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean);
  if (value === undefined || value === null) return [];
  throw new IotHubError('INVALID_ARGUMENT', 'the device list must be a string of ids or an array of strings', {
    field: 'deviceId',
  });
}

/** A device's own credentials from a connect msg: msg.connectionString (a device connection string) or msg.sharedAccessKey. */
function credentialsOf(msg: NodeMessage, deviceId: string): (DeviceCredentials & { hostName?: string }) | undefined {
  if (msg.connectionString !== undefined) {
    if (typeof msg.connectionString !== 'string')
      throw new IotHubError('INVALID_ARGUMENT', 'msg.connectionString must be a string', { field: 'connectionString' });
    const c = parseConnectionString(msg.connectionString.trim());
    if (c.kind !== 'device') {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        'msg.connectionString must be a device connection string (HostName=…;DeviceId=…;SharedAccessKey=…)',
        { field: 'connectionString' },
      );
    }
    if (c.deviceId !== deviceId) {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        `msg.connectionString is for device "${c.deviceId}", not "${deviceId}"`,
        { field: 'connectionString' },
      );
    }
    if (c.x509)
      throw new IotHubError(
        'INVALID_ARGUMENT',
        'an x509 device string needs a certificate: use a config node with the certificate and key',
        { field: 'connectionString' },
      );
    return c.sharedAccessSignature
      ? { sharedAccessSignature: c.sharedAccessSignature, hostName: c.hostName }
      : { sharedAccessKey: c.sharedAccessKey as string, hostName: c.hostName };
  }
  if (msg.sharedAccessKey !== undefined) {
    if (typeof msg.sharedAccessKey !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(msg.sharedAccessKey.trim())) {
      throw new IotHubError(
        'INVALID_ARGUMENT',
        "msg.sharedAccessKey must be a base64 key (the device's primary or secondary key)",
        { field: 'sharedAccessKey' },
      );
    }
    return { sharedAccessKey: msg.sharedAccessKey.trim() };
  }
  return undefined;
}

const ACTIONS = ['connect', 'disconnect', 'list'];

module.exports = function (RED: NodeAPI) {
  function summary(counts: Partial<Record<ConnectionState, number>>, size: number): NodeStatus {
    if (size === 0) return { fill: 'grey', shape: 'ring', text: RED._('iothub-device-receive.status.noDevices') };
    const parts: string[] = [];
    for (const state of [
      'connected',
      'connecting',
      'reconnecting',
      'unauthorized',
      'error',
      'disconnected',
      'closed',
    ] as ConnectionState[]) {
      if (counts[state])
        parts.push(
          RED._('iothub-device-receive.status.count', {
            n: counts[state],
            state: RED._(`iothub-device-receive.state.${state}`),
          }),
        );
    }
    const fill = counts.unauthorized || counts.error ? 'red' : counts.connected === size ? 'green' : 'yellow';
    return { fill, shape: counts.connected === size ? 'dot' : 'ring', text: parts.join(', ') };
  }

  function DeviceReceiveNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const { connection, output, settle, deviceId: idSetting, deviceIdType } = deviceReceiveSettings(def);
    const config = RED.nodes.getNode(connection) as ConnectionNode | null;
    // Manual mode: messages handed out and not yet settled, by lock token. The hub redelivers them after its lock time; say so.
    const LOCK_MS = 60_000;
    const unsettled = new Map<string, { deviceId: string; timer: NodeJS.Timeout }>();
    let lapsed = 0;
    const watchLock = (lockToken: string, deviceId: string) => {
      unsettled.set(lockToken, {
        deviceId,
        timer: setTimeout(() => {
          unsettled.delete(lockToken);
          lapsed++;
          node.status({
            fill: 'yellow',
            shape: 'ring',
            text: RED._('iothub-device-receive.status.lockLapsed', { n: lapsed }),
          });
        }, LOCK_MS),
      });
    };
    const fail = (text: string) => node.status({ fill: 'red', shape: 'ring', text });
    let unreadable = 0;

    let fleet: DeviceFleet | undefined;
    const logCause = causeLogger(node);
    // One device shows its own status as before; a fleet shows a summary, redrawn at most every 250 ms.
    let lastSingle: StatusEvent | undefined;
    let redraw: NodeJS.Timeout | undefined;
    const showStatus = () => {
      if (!fleet || !config) return;
      if (fleet.size === 1 && lastSingle) {
        node.status(config.statusOf(lastSingle));
        return;
      }
      if (redraw) return;
      redraw = setTimeout(() => {
        redraw = undefined;
        if (fleet)
          node.status(
            fleet.size === 1 && lastSingle ? config.statusOf(lastSingle) : summary(fleet.counts(), fleet.size),
          );
      }, 250);
    };

    const add = (
      deviceId: string,
      byMsg: boolean,
      credentials?: DeviceCredentials & { hostName?: string },
    ): Promise<void> => (fleet as DeviceFleet).add(deviceId, byMsg, credentials).then(showStatus);

    if (!config) {
      fail(RED._('iothub-device-receive.status.noConfig'));
      node.error(RED._('iothub-device-receive.errors.noConfig'));
    } else if (config.configError) {
      // A connection string the config cannot read, or another setting (a DPS key, an ID scope) named by its failure.
      fail(
        config.configError.reason ??
          (config.configError.code === 'INVALID_CONNECTION_STRING'
            ? RED._('iothub-device-receive.status.badConfig')
            : (failureStatus(RED, config.configError).text as string)),
      );
    } else {
      fleet = new DeviceFleet((deviceId, user, credentials) => config.useDevice(deviceId, user, settle, credentials), {
        status: (deviceId, ev) => {
          if (fleet?.size === 1) lastSingle = ev;
          logCause(ev, deviceId, !!fleet && fleet.size > 1);
          showStatus();
        },
        message: (deviceId, m: ReceivedC2DMessage) => {
          let msg: NodeMessage;
          try {
            msg = toMsg(deviceId, m, output);
          } catch (err) {
            // The body did not fit the chosen output: the Catch node gets it with the raw body.
            node.error(err, toMsg(deviceId, m, 'buffer'));
            return;
          }
          if (settle === 'manual' && typeof msg.lockToken === 'string') watchLock(msg.lockToken, deviceId);
          node.send(msg);
        },
        // Nothing to deliver, but not nothing to say: the Catch node gets what came, the status counts it.
        unreadable: (deviceId, err, raw) => {
          unreadable++;
          node.status({
            fill: 'yellow',
            shape: 'dot',
            text: RED._('iothub-device-receive.status.unreadable', { n: unreadable }),
          });
          const msg: NodeMessage = { deviceId, payload: raw.body };
          if (raw.topic !== undefined) msg.topic = raw.topic;
          node.error(`${RED._('iothub-device-receive.errors.unreadable')}: ${err.message}`, msg);
        },
      });
      const start = (ids: string[]) => {
        if (ids.length === 0) {
          node.status(summary({}, 0));
          return;
        }
        if (ids.length === 1)
          node.status({ fill: 'yellow', shape: 'ring', text: RED._('iothub-device-receive.status.connecting') });
        for (const id of new Set(ids)) {
          add(id, false).catch((err: Error) => {
            if (ids.length === 1) node.status(failureStatus(RED, err));
            node.error(ids.length === 1 ? err.message : `${id}: ${err.message}`);
          });
        }
      };
      if (deviceIdType === 'str') {
        start(idSetting ? idsOf(idSetting) : config.capabilities?.deviceId ? [config.capabilities.deviceId] : []);
      } else {
        RED.util.evaluateNodeProperty(idSetting, deviceIdType, node, {}, (err, value) => {
          try {
            if (err)
              throw new IotHubError('INVALID_ARGUMENT', `the device list cannot be read (${err.message})`, {
                field: 'deviceId',
              });
            start(idsOf(value));
          } catch (e) {
            fail(failureStatus(RED, e).text as string);
            node.error((e as Error).message);
          }
        });
      }
    }

    function action(
      msg: NodeMessage,
      send: (m: NodeMessage | (NodeMessage | null)[]) => void,
      done: (err?: Error) => void,
    ): void {
      const name = msg.action;
      if (typeof name !== 'string' || !ACTIONS.includes(name)) {
        done(
          new IotHubError(
            'INVALID_ARGUMENT',
            RED._('iothub-device-receive.errors.badAction', { action: JSON.stringify(name) }),
            { field: 'action' },
          ),
        );
        return;
      }
      if (!fleet) {
        done(new IotHubError('NOT_CONNECTED', RED._('iothub-device-receive.errors.noConfig'), { field: 'connection' }));
        return;
      }
      if (name === 'list') {
        send({ ...msg, payload: fleet.list() });
        done();
        return;
      }
      const deviceId = typeof msg.deviceId === 'string' ? msg.deviceId.trim() : '';
      if (!deviceId) {
        done(
          new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.noMsgDevice', { action: name }), {
            field: 'deviceId',
          }),
        );
        return;
      }
      let work: Promise<void>;
      try {
        work =
          name === 'connect'
            ? add(deviceId, true, credentialsOf(msg, deviceId))
            : fleet.remove(deviceId).then(() => {
                logCause.forget(deviceId);
                showStatus();
              });
      } catch (err) {
        done(err as Error);
        return;
      }
      // Credentials given by the msg are held in memory by the connection only: not on the msg that goes on.
      work.then(
        () => done(),
        (err: Error) => done(err),
      );
    }

    node.on('input', (msg, send, done) => {
      if (msg.action !== undefined) {
        action(msg, send, done);
        return;
      }
      if (settle !== 'manual') {
        done(new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.notManual')));
        return;
      }
      const lockToken = msg.lockToken;
      const outcome = msg.settle;
      if (typeof lockToken !== 'string' || !lockToken) {
        done(
          new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.noLockToken'), {
            field: 'lockToken',
          }),
        );
        return;
      }
      if (typeof outcome !== 'string' || !OUTCOMES.includes(outcome as SettleOutcome)) {
        done(new IotHubError('INVALID_ARGUMENT', RED._('iothub-device-receive.errors.badSettle'), { field: 'settle' }));
        return;
      }
      const watched = unsettled.get(lockToken);
      const deviceId = typeof msg.deviceId === 'string' && msg.deviceId ? msg.deviceId : watched?.deviceId;
      if (!fleet || !deviceId || !fleet.has(deviceId)) {
        done(new IotHubError('NOT_CONNECTED', RED._('iothub-device-receive.errors.notConnected')));
        return;
      }
      if (watched) clearTimeout(watched.timer);
      unsettled.delete(lockToken);
      fleet.settle(deviceId, lockToken, outcome as SettleOutcome).then(
        () => {
          msg.settled = outcome;
          // The second output carries settle results, so a loop back into this node cannot re-trigger itself.
          send([null, msg]);
          done();
        },
        (err: Error) => done(err),
      );
    });

    node.on('close', (removed, done) => {
      for (const { timer } of unsettled.values()) clearTimeout(timer);
      unsettled.clear();
      if (redraw) clearTimeout(redraw);
      redraw = undefined;
      const f = fleet;
      fleet = undefined;
      (f ? f.close(removed) : Promise.resolve()).then(
        () => done(),
        () => done(),
      );
    });
  }
  RED.nodes.registerType('iothub-device-receive', DeviceReceiveNode);
};

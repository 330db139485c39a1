/** c2d feedback: emits the hub's delivery acknowledgements. */
import type { StatusEvent } from './core/state';
import { IotHubError } from './core/errors';
import { ServiceLease } from './core/hub-session';
import { FeedbackRecord } from './core/message';
import type { ConnectionNode } from './iothub-connection';
import { Node, NodeAPI, NodeDef } from './node-red';

export function recordMsg(r: FeedbackRecord) {
  return {
    payload: r, topic: r.statusCode, deviceId: r.deviceId, originalMessageId: r.originalMessageId,
    statusCode: r.statusCode, enqueuedTimeUtc: r.enqueuedTimeUtc, description: r.description,
  };
}

module.exports = function (RED: NodeAPI) {
  function C2DFeedbackNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = RED.nodes.getNode(def.connection as string) as ConnectionNode | null;
    const split = def.split !== false && def.split !== 'false';
    let lease: ServiceLease | undefined;
    let closing = false;

    if (!config) {
      node.status({ fill: 'red', shape: 'ring', text: RED._('iothub-c2d-feedback.status.noConfig') });
      node.error(RED._('iothub-c2d-feedback.errors.noConfig'));
    } else if (config.configError) {
      node.status({ fill: 'red', shape: 'ring', text: RED._('iothub-c2d-feedback.status.badConfig') });
    } else {
      config.useService((ev: StatusEvent) => node.status(config.statusOf(ev))).then((l) => {
        if (closing) {
          void l.release(false);
          return;
        }
        lease = l;
        // Returning normally lets the client accept the feedback message: records were emitted.
        l.addFeedbackListener((records) => {
          if (split) for (const r of records) node.send(recordMsg(r));
          else node.send({ payload: records, topic: 'feedback', count: records.length });
        }, (err, body) => {
          // The Catch node gets what the hub sent; the hub dead-letters it rather than sending it forever.
          node.error(`${RED._('iothub-c2d-feedback.errors.unreadable')}: ${err.message}`, { topic: 'feedback', payload: body });
        });
      }, (err: Error) => {
        node.status({ fill: 'red', shape: 'ring', text: err instanceof IotHubError ? err.code.toLowerCase().replace(/_/g, ' ') : 'error' });
        node.error(err.message);
      });
    }

    node.on('close', (removed, done) => {
      closing = true;
      const l = lease;
      lease = undefined;
      (l ? l.release(removed) : Promise.resolve()).then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iothub-c2d-feedback', C2DFeedbackNode);
};

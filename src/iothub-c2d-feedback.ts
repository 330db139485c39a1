/** c2d feedback: emits the hub's delivery acknowledgements. */
import type { StatusEvent } from './core/state';
import { FeedbackRecord } from './core/message';
import type { ConnectionNode } from './iothub-connection';
import { causeLogger, holdLease } from './node-lease';
import { c2dFeedbackSettings } from './node-settings';
import { Node, NodeAPI, NodeDef } from './node-red';

function recordMsg(r: FeedbackRecord) {
  return {
    payload: r,
    topic: r.statusCode,
    deviceId: r.deviceId,
    originalMessageId: r.originalMessageId,
    statusCode: r.statusCode,
    enqueuedTimeUtc: r.enqueuedTimeUtc,
    description: r.description,
  };
}

module.exports = function (RED: NodeAPI) {
  function C2DFeedbackNode(this: Node, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const { connection, split } = c2dFeedbackSettings(def);
    const config = RED.nodes.getNode(connection) as ConnectionNode | null;

    if (!config) {
      node.status({ fill: 'red', shape: 'ring', text: RED._('iothub-c2d-feedback.status.noConfig') });
      node.error(RED._('iothub-c2d-feedback.errors.noConfig'));
    } else if (config.configError) {
      node.status({
        fill: 'red',
        shape: 'ring',
        text: config.configError.reason ?? RED._('iothub-c2d-feedback.status.badConfig'),
      });
    } else {
      const logCause = causeLogger(node);
      holdLease(
        RED,
        node,
        config.useService((ev: StatusEvent) => {
          node.status(config.statusOf(ev));
          logCause(ev);
        }),
        (l) => {
          // Returning normally lets the client accept the feedback message: records were emitted.
          l.addFeedbackListener(
            (records) => {
              if (split) for (const r of records) node.send(recordMsg(r));
              else node.send({ payload: records, topic: 'feedback', count: records.length });
            },
            (err, body) => {
              // The Catch node gets what the hub sent; the hub dead-letters it rather than sending it forever.
              node.error(`${RED._('iothub-c2d-feedback.errors.unreadable')}: ${err.message}`, {
                topic: 'feedback',
                payload: body,
              });
            },
          );
        },
      );
    }
  }
  RED.nodes.registerType('iothub-c2d-feedback', C2DFeedbackNode);
};

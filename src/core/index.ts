/** The IoT Hub protocol core: no Node-RED import. */
export * from './message';
export * from './errors';
export * from './connection-string';
export * from './sas';
export * from './property-bag';
export * from './amqp-codec';
export * from './feedback';
export * from './retry';
export * from './outgoing';
export * from './delivery-tracker';
export * from './state';
export * from './endpoint';
export * from './transport';
export * from './lifecycle';
export * from './device-client';
export * from './service-client';
export * from './hub-session';

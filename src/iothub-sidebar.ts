/**
 * The editor plugin behind the "IoT Hub" sidebar tab (nodes/iothub-sidebar.html, loaded by the editor beside this file).
 * It has no runtime part of its own: its data comes from the admin endpoints the config node registers (src/admin-api.ts).
 */
interface PluginAPI {
  plugins: { registerPlugin(id: string, definition: Record<string, unknown>): void };
}

module.exports = function (RED: PluginAPI) {
  RED.plugins.registerPlugin('iothub-sidebar', { type: 'iothub-c2d-sidebar' });
};

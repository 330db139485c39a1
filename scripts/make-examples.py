# Writes examples/*.json (run by hand when the examples change; the JSON is what Node-RED imports).
import json, os

def cfg(id, name, mode='local', transport='mqtt', env=None):
    n = {"id": id, "type": "iothub-connection", "name": name, "mode": mode, "deviceTransport": transport,
         "serviceTransport": "amqp", "tokenLifetime": 3600, "keepAlive": 180, "mqttPort": "", "amqpPort": "", "wsPort": "",
         "localHub": {"mqttsPort": 8883, "amqpsPort": 5671, "httpsPort": 8443, "dataDir": ""}}
    if env: n["connectionStringEnv"] = env
    return n

def tab(id, label): return {"id": id, "type": "tab", "label": label, "disabled": False, "info": ""}

def comment(id, z, name, info, x=250, y=40):
    return {"id": id, "type": "comment", "z": z, "name": name, "info": info, "x": x, "y": y, "wires": []}

def debug(id, z, name, x, y, prop="payload", complete="true"):
    return {"id": id, "type": "debug", "z": z, "name": name, "active": True, "tosidebar": True, "console": False,
            "tostatus": True, "complete": complete, "targetType": "full" if complete == "true" else "msg",
            "statusVal": "topic", "statusType": "msg", "x": x, "y": y, "wires": []}

def inject(id, z, name, x, y, wires, repeat="3", payload="", ptype="date", once=True, props=None):
    return {"id": id, "type": "inject", "z": z, "name": name, "props": props or [{"p": "payload"}],
            "repeat": repeat, "crontab": "", "once": once, "onceDelay": "2", "topic": "",
            "payload": payload, "payloadType": ptype, "x": x, "y": y, "wires": wires}

def func(id, z, name, code, x, y, wires, outputs=1):
    return {"id": id, "type": "function", "z": z, "name": name, "func": code, "outputs": outputs,
            "timeout": 0, "noerr": 0, "initialize": "", "finalize": "", "libs": [], "x": x, "y": y, "wires": wires}

def send(id, z, name, conn, x, y, device="MyDevice", ack="full", mappings=None, track=False, wires=None, ttl=""):
    return {"id": id, "type": "iothub-c2d-send", "z": z, "name": name, "connection": conn, "deviceId": device,
            "deviceIdType": "str", "ack": ack, "ttl": ttl, "mappings": mappings or [], "trackDelivery": track,
            "trackTimeout": 60, "outputs": 1 if track else 0, "x": x, "y": y, "wires": wires or ([[]] if track else [])}

def receive(id, z, name, conn, x, y, wires, device="MyDevice", settle="auto", output="auto"):
    return {"id": id, "type": "iothub-device-receive", "z": z, "name": name, "connection": conn, "deviceId": device,
            "output": output, "settle": settle, "inputs": 1 if settle == "manual" else 0,
            "outputs": 2 if settle == "manual" else 1, "x": x, "y": y, "wires": wires}

def feedback(id, z, name, conn, x, y, wires, split=True):
    return {"id": id, "type": "iothub-c2d-feedback", "z": z, "name": name, "connection": conn, "split": split,
            "x": x, "y": y, "wires": wires}

def catch(id, z, name, x, y, wires, scope=None):
    return {"id": id, "type": "catch", "z": z, "name": name, "scope": scope, "uncaught": False, "x": x, "y": y, "wires": wires}

examples = {}

z = "t1"
examples["01 Send C2D messages and get feedback (tutorial)"] = [
    tab(z, "C2D tutorial"),
    comment("t1c", z, "The classic tutorial: a back end sends C2D messages to a simulated device and receives delivery feedback",
            "Microsoft's 'Send cloud-to-device messages with IoT Hub' tutorial as a flow.\n\n"
            "Top: every 3 s the back end sends `{\"service client sent a message\": <wind speed>}` to device MyDevice with\n"
            "messageId `message_<i>`, correlationId `correlation_<i>`, property `Property = PropMsg_<i>` and feedback `full`.\n\n"
            "Middle: a simulated device receives each message and shows its data, properties and a running count.\n\n"
            "Bottom: the hub's delivery feedback (`Success` once the device completed the message).\n\n"
            "Runs on the built-in local hub; switch the config node to Azure IoT Hub and paste a connection string to use a real hub.", x=480),
    inject("t1i", z, "every 3 s", 130, 100, [["t1f"]]),
    func("t1f", z, "wind speed message",
         "const i = (context.get('i') || 0) + 1;\ncontext.set('i', i);\nconst windSpeed = 10 + Math.random() * 4;\n"
         "msg.payload = { 'service client sent a message': Number(windSpeed.toFixed(2)) };\n"
         "msg.messageId = 'message_' + i;\nmsg.correlationId = 'correlation_' + i;\nmsg.property = 'PropMsg_' + i;\nreturn msg;",
         340, 100, [["t1s"]]),
    send("t1s", z, "back end: send to MyDevice", "t1cfg", 590, 100,
         mappings=[{"name": "messageId", "value": "messageId", "valueType": "msg"},
                   {"name": "correlationId", "value": "correlationId", "valueType": "msg"},
                   {"name": "Property", "value": "property", "valueType": "msg"}]),
    receive("t1r", z, "simulated device MyDevice", "t1cfg", 170, 200, [["t1n"]]),
    func("t1n", z, "count", "const n = (context.get('n') || 0) + 1;\ncontext.set('n', n);\nmsg.count = n;\n"
         "node.status({ text: 'received ' + n });\nreturn msg;", 390, 200, [["t1d"]]),
    debug("t1d", z, "device received", 580, 200),
    feedback("t1b", z, "delivery feedback", "t1cfg", 150, 280, [["t1e"]]),
    debug("t1e", z, "feedback", 370, 280),
    cfg("t1cfg", "local hub"),
]

z = "t2"
examples["02 Property mapping (msg, template, env)"] = [
    tab(z, "C2D property mapping"),
    comment("t2c", z, "Property mapping: a msg property, a mustache template and an environment variable become message properties",
            "The c2d send node's table maps values into the C2D message:\n\n"
            "- `messageId` from a **template**: `order-{{payload.id}}`\n- `priority` from **msg**.priority\n"
            "- `site` from the **env** variable `SITE` (set on the tab; blank if unset)\n- `contentType` as a literal string\n\n"
            "The device's debug output shows them in `msg.properties` and `msg.messageId`.", x=500),
    inject("t2i", z, "order", 110, 100, [["t2f"]], repeat="5"),
    func("t2f", z, "make an order", "const id = Math.floor(Math.random() * 100000);\nmsg.payload = { id, item: 'valve', qty: 2 };\n"
         "msg.priority = id % 2 ? 'high' : 'normal';\nreturn msg;", 280, 100, [["t2s"]]),
    send("t2s", z, "send order", "t2cfg", 480, 100, device="order-device", ack="none",
         mappings=[{"name": "messageId", "value": "order-{{payload.id}}", "valueType": "template"},
                   {"name": "priority", "value": "priority", "valueType": "msg"},
                   {"name": "site", "value": "SITE", "valueType": "env"},
                   {"name": "contentType", "value": "application/json", "valueType": "str"}]),
    receive("t2r", z, "order-device", "t2cfg", 130, 180, [["t2d"]], device="order-device"),
    debug("t2d", z, "properties", 340, 180, prop="properties", complete="properties"),
    cfg("t2cfg", "local hub"),
]
examples["02 Property mapping (msg, template, env)"][0]["env"] = [{"name": "SITE", "value": "plant-7", "type": "str"}]

z = "t3"
examples["03 Delivery tracking"] = [
    tab(z, "C2D delivery tracking"),
    comment("t3c", z, "Delivery tracking: branch on each message's outcome (delivered, expired, rejected, ..., timeout)",
            "The c2d send node with **Track delivery** emits the original msg with `msg.delivery` once the hub's feedback for it\n"
            "arrives. Messages to `sleepy-device` expire (5 s time to live, nobody receives them); messages to `awake-device` are delivered.\n"
            "The switch branches on `msg.delivery`. A Catch node sees sends the hub refused.", x=470),
    inject("t3i", z, "to awake-device", 140, 100, [["t3s"]], props=[{"p": "payload"}, {"p": "deviceId", "v": "awake-device", "vt": "str"}], repeat="4"),
    inject("t3j", z, "to sleepy-device", 140, 140, [["t3s"]], props=[{"p": "payload"}, {"p": "deviceId", "v": "sleepy-device", "vt": "str"}], repeat="10"),
    send("t3s", z, "send and track", "t3cfg", 370, 120, device="", ack="full", track=True, wires=[["t3w"]], ttl="5"),
    {"id": "t3w", "type": "switch", "z": z, "name": "outcome", "property": "delivery", "propertyType": "msg",
     "rules": [{"t": "eq", "v": "delivered", "vt": "str"}, {"t": "else"}], "checkall": "true", "repair": False,
     "outputs": 2, "x": 560, "y": 120, "wires": [["t3d"], ["t3e"]]},
    debug("t3d", z, "delivered", 740, 100, complete="delivery"),
    debug("t3e", z, "not delivered", 750, 140, complete="delivery"),
    receive("t3r", z, "awake-device", "t3cfg", 140, 220, [["t3x"]], device="awake-device"),
    debug("t3x", z, "awake-device got", 350, 220),
    catch("t3k", z, "send errors", 130, 280, [["t3y"]], scope=["t3s"]),
    debug("t3y", z, "send failed", 320, 280, complete="error"),
    cfg("t3cfg", "local hub"),
]

z = "t4"
examples["04 A device on a real Azure IoT Hub"] = [
    tab(z, "Real Azure IoT Hub device"),
    comment("t4c", z, "A device on a real Azure IoT Hub: the connection string comes from the environment, never from this file",
            "Set the environment variable `IOTHUB_DEVICE_CONNECTION_STRING` to the device's connection string from the Azure portal\n"
            "(IoT Hub > Devices > your device > Primary connection string) before starting Node-RED, then deploy.\n\n"
            "The config node reads it from the variable named in its settings, so no key is stored in the flow.\n"
            "If port 8883 is blocked, set the config node's device transport to MQTT over WebSockets (port 443).\n\n"
            "Send it messages from the Azure portal (Message to device) or from Azure IoT Explorer.", x=470),
    receive("t4r", z, "my Azure device", "t4cfg", 140, 100, [["t4d"]], device=""),
    debug("t4d", z, "C2D message", 340, 100),
    cfg("t4cfg", "Azure IoT Hub (from env)", mode="azure", env="IOTHUB_DEVICE_CONNECTION_STRING"),
]

z = "t5"
examples["05 Reject and abandon over AMQP"] = [
    tab(z, "C2D reject and abandon"),
    comment("t5c", z, "Reject and abandon over AMQP: a flow decides each message's fate",
            "The device receive node settles messages **manually** (AMQP devices only): a switch completes messages whose\n"
            "`payload.valid` is true and rejects the others (the sender gets `Rejected` feedback). Feed a msg back with\n"
            "`msg.settle = 'abandon'` to have the hub deliver it again (delivery count + 1; after 10, `DeliveryCountExceeded`).", x=420),
    inject("t5i", z, "command", 110, 100, [["t5f"]], repeat="3"),
    func("t5f", z, "valid or not", "const n = (context.get('n') || 0) + 1;\ncontext.set('n', n);\n"
         "msg.payload = { n, valid: n % 2 === 1 };\nreturn msg;", 280, 100, [["t5s"]]),
    send("t5s", z, "send command", "t5cfg", 470, 100, device="validator", ack="full"),
    receive("t5r", z, "validator (manual)", "t5cfg", 160, 200, [["t5w"], []], device="validator", settle="manual"),
    {"id": "t5w", "type": "switch", "z": z, "name": "valid?", "property": "payload.valid", "propertyType": "msg",
     "rules": [{"t": "true"}, {"t": "else"}], "checkall": "true", "repair": False, "outputs": 2, "x": 350, "y": 200,
     "wires": [["t5ok"], ["t5no"]]},
    {"id": "t5ok", "type": "change", "z": z, "name": "complete", "rules": [{"t": "set", "p": "settle", "pt": "msg", "to": "complete", "tot": "str"}],
     "action": "", "property": "", "from": "", "to": "", "reg": False, "x": 520, "y": 180, "wires": [["t5r"]]},
    {"id": "t5no", "type": "change", "z": z, "name": "reject", "rules": [{"t": "set", "p": "settle", "pt": "msg", "to": "reject", "tot": "str"}],
     "action": "", "property": "", "from": "", "to": "", "reg": False, "x": 510, "y": 220, "wires": [["t5r"]]},
    feedback("t5b", z, "feedback", "t5cfg", 130, 290, [["t5d"]]),
    debug("t5d", z, "Success / Rejected", 340, 290),
    cfg("t5cfg", "local hub (AMQP devices)", transport="amqp"),
]

z = "t6"
examples["06 IoT Central offline commands (DPS group key)"] = [
    tab(z, "IoT Central offline commands"),
    comment("t6c", z, "IoT Central offline commands: a device provisioned by DPS with a group key branches on msg.properties['method-name']",
            "IoT Central delivers a command marked *Queue if offline* as a C2D message with the command's name in the property\n"
            "`method-name` (`component*command` for a component's command) and its request as the body. Here the device\n"
            "`thermostat-1` gets its hub from the Device Provisioning Service with a key derived from an enrollment group's key,\n"
            "and a switch routes each command.\n\n"
            "**As it is** the flow runs on the built-in local hub: the DPS config node uses the local hub's DPS (which makes the\n"
            "group key itself), and the top row stands in for IoT Central, queueing `reboot`, `setLedColor` and an unknown command.\n\n"
            "**On a real IoT Central app:**\n"
            "1. Give the device template the commands `reboot` and `setLedColor`, each with *Queue if offline* on, and create the\n"
            "   device `thermostat-1` from it (Devices > New).\n"
            "2. Permissions > Device connection groups > SAS-IoT-Devices: copy the **ID scope** and the **primary key**.\n"
            "3. Start Node-RED with the key in the environment: `IOTC_GROUP_KEY=<primary key> node-red`. The key stays out of\n"
            "   this flow: the config node reads the variable named in *or from env*.\n"
            "4. Open the config node *IoT Central (DPS)*: untick *Local hub*, keep the endpoint\n"
            "   `global.azure-devices-provisioning.net`, paste the ID scope. Delete the top row and its *local hub* config node.\n"
            "5. Deploy. The device registers once (the assignment is kept in the user directory: redeploys do not register again),\n"
            "   connects, and receives the queued commands; run more from the device's Commands tab.", x=520),
    inject("t6i", z, "every 4 s", 110, 100, [["t6f"]], repeat="4"),
    func("t6f", z, "IoT Central queues a command",
         "const commands = ['reboot', 'setLedColor', 'getMaxMinReport'];\nconst i = context.get('i') || 0;\ncontext.set('i', i + 1);\n"
         "msg.command = commands[i % commands.length];\n"
         "msg.payload = msg.command === 'setLedColor' ? { color: ['red', 'green', 'blue'][i % 3] } : { delay: 5 };\nreturn msg;",
         320, 100, [["t6s"]]),
    send("t6s", z, "queue for thermostat-1", "t6hub", 550, 100, device="thermostat-1", ack="none",
         mappings=[{"name": "method-name", "value": "command", "valueType": "msg"},
                   {"name": "contentType", "value": "application/json", "valueType": "str"}]),
    receive("t6r", z, "thermostat-1 (DPS)", "t6dps", 150, 200, [["t6w"]], device="thermostat-1"),
    {"id": "t6w", "type": "switch", "z": z, "name": "method-name", "property": "properties['method-name']", "propertyType": "msg",
     "rules": [{"t": "eq", "v": "reboot", "vt": "str"}, {"t": "eq", "v": "setLedColor", "vt": "str"}, {"t": "else"}],
     "checkall": "false", "repair": False, "outputs": 3, "x": 370, "y": 200, "wires": [["t6d1"], ["t6d2"], ["t6d3"]]},
    debug("t6d1", z, "reboot", 560, 160),
    debug("t6d2", z, "setLedColor", 570, 200),
    debug("t6d3", z, "unknown command", 580, 240),
    {"id": "t6dps", "type": "iothub-connection", "name": "IoT Central (DPS)", "mode": "dps", "deviceTransport": "mqtt",
     "serviceTransport": "amqp", "tokenLifetime": 3600, "keepAlive": 180, "mqttPort": "", "amqpPort": "", "wsPort": "",
     "dpsEndpoint": "global.azure-devices-provisioning.net", "dpsIdScope": "", "dpsAttestation": "group",
     "dpsTransport": "mqtt", "dpsKeyEnv": "IOTC_GROUP_KEY", "dpsLocalHub": True,
     "localHub": {"mqttsPort": 8883, "amqpsPort": 5671, "httpsPort": 8443, "dataDir": ""}},
    cfg("t6hub", "local hub (stands in for IoT Central)"),
]

out = os.path.join(os.path.dirname(__file__), '..', 'examples')
for name, flow in examples.items():
    with open(os.path.join(out, name + '.json'), 'w') as f:
        json.dump(flow, f, indent=4)
        f.write('\n')
print('\n'.join(examples))

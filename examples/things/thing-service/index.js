'use strict';

// A thing service for the runtime's "thingFunction": simulated devices kept
// in memory, loaded from devices.json beside this file. It answers the
// topics IoTData's thing operations send:
//   /sys/things/<productKey>/<deviceName>/services/get   payload: ["Property", ...]
//   /sys/things/<productKey>/<deviceName>/services/set   payload: {"Property": value}
//   /sys/things/<productKey>/<deviceName>/services/<service>   payload: arguments
//   /sys/things///services/getthingswithtags            payload: [{"tag": "value"}, ...]

const fs = require('fs');
const path = require('path');

const devices = JSON.parse(fs.readFileSync(path.join(__dirname, 'devices.json'), 'utf8'));
const SERVICE_TOPIC = /^\/sys\/things\/([^/]+)\/([^/]+)\/services\/([^/]+)$/;
const TAGS_TOPIC = '/sys/things///services/getthingswithtags';

function parseArguments(event) {
  const text = event.toString();
  return text === '' ? undefined : JSON.parse(text);
}

function findDevice(productKey, deviceName) {
  const device = devices.find((d) => d.productKey === productKey && d.deviceName === deviceName);
  if (!device) {
    throw new Error(`thing ${productKey}/${deviceName} does not exist`);
  }
  return device;
}

function checkProperty(device, name) {
  if (!Object.prototype.hasOwnProperty.call(device.properties, name)) {
    throw new Error(`thing ${device.deviceName} has no property ${name}`);
  }
}

function thingsWithTags(tags) {
  return devices
    .filter((device) => tags.every((tag) => Object.entries(tag).every(([key, value]) => device.tags[key] === value)))
    .map(({ productKey, deviceName, tags: deviceTags }) => ({ productKey, deviceName, tags: deviceTags }));
}

function serve(topic, args) {
  if (topic === TAGS_TOPIC) {
    return thingsWithTags(args || []);
  }
  const match = SERVICE_TOPIC.exec(topic || '');
  if (!match) {
    throw new Error(`unknown thing topic ${topic}`);
  }
  const [, productKey, deviceName, service] = match;
  const device = findDevice(productKey, deviceName);
  if (service === 'get') {
    const values = {};
    for (const name of args) {
      checkProperty(device, name);
      values[name] = device.properties[name];
    }
    return values;
  }
  if (service === 'set') {
    Object.keys(args).forEach((name) => checkProperty(device, name));
    Object.assign(device.properties, args);
    return {};
  }
  const definition = device.services[service];
  if (!definition) {
    throw new Error(`thing ${deviceName} has no service ${service}`);
  }
  if (definition.error) {
    throw new Error(definition.error);
  }
  return { ...definition.output, arguments: args };
}

exports.handler = (event, context, callback) => {
  const { topic } = context.invokerContext.custom || {};
  let result;
  try {
    result = serve(topic, parseArguments(event));
  } catch (err) {
    callback(err);
    return;
  }
  callback(null, result);
};

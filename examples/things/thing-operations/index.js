'use strict';

// Walks through every thing operation against the simulated devices of the
// thing service: read a property, switch the lamp on, call a service, find
// the things in the kitchen. Invoke it: edgefc invoke Examples/thing-operations

const leSdk = require('linkedge-core-sdk');

const iotData = new leSdk.IoTData();
const lamp = { productKey: 'a1LampDemo', deviceName: 'kitchen-lamp' };

exports.handler = async () => {
  const before = await iotData.getThingProperties({ ...lamp, payload: ['LightSwitch', 'Brightness'] });
  console.log('before:', JSON.stringify(before));
  await iotData.setThingProperties({ ...lamp, payload: { LightSwitch: 1 } });
  const after = await iotData.getThingProperties({ ...lamp, payload: ['LightSwitch'] });
  console.log('after:', JSON.stringify(after));
  const blinked = await iotData.callThingService({ ...lamp, service: 'Blink', payload: { times: 3 } });
  console.log('Blink:', JSON.stringify(blinked));
  const kitchen = await iotData.getThingsWithTags({ payload: [{ room: 'kitchen' }] });
  console.log('kitchen things:', kitchen.map((thing) => thing.deviceName).join(', '));
  return { before, after, blinked, kitchen };
};

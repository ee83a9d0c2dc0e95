'use strict';

const { settle } = require('../core/callback');
const { EdgeFCError, ErrorCode } = require('../core/errors');
const FCClient = require('./fc');
const {
  publishRequest, routerFunctionTarget, thingFunctionTarget, thingPropertiesRequest, thingServiceRequest, thingsWithTagsRequest,
} = require('../core/params');

/**
 * Publishing and thing operations, as upstream's IoTData: each goes through
 * this object's own `fc.invokeFunction` (code and tests that replace or wrap
 * `iotData.fc` keep working). Thing operations invoke the runtime's thing
 * function (`THING_FUNCTION_ID`) Sync; a publish invokes the router function
 * (`ROUTER_FUNCTION_ID`) Async.
 */
class IoTData {
  /** No arguments inside a hosted function; elsewhere the FCClient options. */
  constructor(options) {
    this.fc = new FCClient(options);
  }

  /** Publishes `{topic, payload}`; gives the message id. */
  publish(params, callback) {
    return settle(callback, async () => {
      const { topic, payload } = publishRequest(params);
      const custom = { source: process.env.MY_FUNCTION_ID, topic };
      const invokerContext = Buffer.from(JSON.stringify({ custom })).toString('base64');
      return this._invoke({ functionId: routerFunctionTarget(), invocationType: 'Async', invokerContext, payload });
    });
  }

  /** `{productKey, deviceName, payload: [names]}` → the properties' values. */
  getThingProperties(params, callback) {
    return settle(callback, () => this._callThing(thingPropertiesRequest(params, 'get')));
  }

  /** `{productKey, deviceName, payload: {name: value}}`. */
  setThingProperties(params, callback) {
    return settle(callback, () => this._callThing(thingPropertiesRequest(params, 'set')));
  }

  /** `{productKey, deviceName, service, payload}` → the service's output. */
  callThingService(params, callback) {
    return settle(callback, () => this._callThing(thingServiceRequest(params)));
  }

  /** `{payload: [{key: value}]}` → the things that have every tag. */
  getThingsWithTags(params, callback) {
    return settle(callback, () => this._callThing(thingsWithTagsRequest(params)));
  }

  /** `this.fc.invokeFunction` with a callback, as upstream calls it (a replaced `fc` may not return a Promise). */
  _invoke(params) {
    return new Promise((resolve, reject) => {
      this.fc.invokeFunction(params, (err, data) => (err ? reject(err) : resolve(data)));
    });
  }

  async _callThing({ invokerContext, payload }) {
    const data = await this._invoke({ functionId: thingFunctionTarget(), invokerContext, payload });
    const text = data.payload.toString();
    if (data.functionError) {
      // Upstream's message: the function's error body, as it returned it.
      throw new EdgeFCError(ErrorCode.FUNCTION_FAILED, text);
    }
    if (text === '') {
      return undefined;
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new EdgeFCError(ErrorCode.FUNCTION_FAILED, `the thing function answered with something other than JSON: ${text.slice(0, 200)}`);
    }
  }
}

module.exports = IoTData;

'use strict';

const { settle } = require('../core/callback');
const { EdgeFCError, ErrorCode } = require('../core/errors');
const FCClient = require('./fc');
const { RuntimeLink } = require('../core/link');
const {
  thingFunctionTarget, thingPropertiesRequest, thingServiceRequest, thingsWithTagsRequest,
} = require('../core/params');

/**
 * Publishing and thing operations, as upstream's IoTData. Thing operations
 * invoke the runtime's thing function (`THING_FUNCTION_ID`) Sync.
 */
class IoTData {
  /** No arguments inside a hosted function; elsewhere the FCClient options. */
  constructor(options) {
    this.fc = new FCClient(options);
    this._link = new RuntimeLink(options);
  }

  /** Publishes `{topic, payload}`; see FCClient#publish. */
  publish(params, callback) {
    return this.fc.publish(params, callback);
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

  async _callThing({ invokerContext, payload }) {
    const target = thingFunctionTarget();
    const outcome = await this._link.call((session) => session.invoke(target, false, invokerContext, payload));
    const text = outcome.payload.toString();
    if (outcome.functionError) {
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

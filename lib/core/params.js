'use strict';

const native = require('../../native.js');
const { invalidParams } = require('./errors');

/** Before `<gatewayId>:<target>`: that function on another gateway (the runtime's MQTT bridge). */
const GATEWAY_PREFIX = native.gatewayPrefix();

/** Upstream's rule: a parameter that is absent, undefined, null or '' is missing. */
function getRequiredParameter(params, property) {
  if (!Object.prototype.hasOwnProperty.call(params, property)) {
    return undefined;
  }
  const value = params[property];
  if (value === undefined || value === null || value === '') {
    return undefined;
  }
  return value;
}

function checkString(name, value) {
  if (typeof value !== 'string') {
    throw invalidParams(`"${name}" must be a String, got ${typeof value}`);
  }
  return value;
}

/** Payloads travel as they are: a string stays a string, bytes stay bytes. */
function toPayload(payload) {
  if (payload === undefined || payload === null) {
    return '';
  }
  if (typeof payload === 'string' || Buffer.isBuffer(payload)) {
    return payload;
  }
  if (payload instanceof Uint8Array) {
    return Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  }
  throw invalidParams(`"payload" must be a String or a Buffer, got ${typeof payload}`);
}

/**
 * Checks invokeFunction's params with exactly the upstream rules and
 * messages, plus type checks upstream lacked. Throws an EdgeFCError with
 * code ERR_INVALID_PARAMS; returns what the transport needs.
 */
function invokeRequest(params) {
  checkObject(params);
  let target = getRequiredParameter(params, 'functionId');
  if (target === undefined) {
    const serviceName = getRequiredParameter(params, 'serviceName');
    if (serviceName === undefined) {
      throw invalidParams('Can\'t find "functionId" or "serviceName". Function can be '
        + 'invoked via either "functionId" or "serviceName" and "functionName".');
    }
    const functionName = getRequiredParameter(params, 'functionName');
    if (functionName === undefined) {
      throw invalidParams('Can\'t find "functionId" or "functionName". Function can be '
        + 'invoked via either "functionId" or "serviceName" and "functionName".');
    }
    target = native.functionArn(checkString('serviceName', serviceName), checkString('functionName', functionName));
  } else {
    checkString('functionId', target);
  }
  const gatewayId = getRequiredParameter(params, 'gatewayId');
  if (gatewayId !== undefined) {
    target = `${GATEWAY_PREFIX}${checkString('gatewayId', gatewayId)}:${target}`;
  }
  const invocationType = params.invocationType === undefined || params.invocationType === null
    ? 'Sync'
    : params.invocationType;
  if (invocationType !== 'Sync' && invocationType !== 'Async') {
    throw invalidParams(`Incorrect invocationType ${invocationType}. It should be "Sync" or "Async".`);
  }
  const invokerContext = params.invokerContext || '';
  checkString('invokerContext', invokerContext);
  return {
    target,
    asynchronous: invocationType === 'Async',
    invokerContext,
    payload: toPayload(params.payload),
  };
}

function required(params, property) {
  const value = getRequiredParameter(params, property);
  if (value === undefined) {
    throw invalidParams(`Can't find required parameter "${property}".`);
  }
  return value;
}

function checkObject(params) {
  if (params === null || typeof params !== 'object') {
    throw invalidParams('"params" must be an object');
  }
}

/** publish's params: upstream's checks (topic, then payload), then types. */
function publishRequest(params) {
  checkObject(params);
  const topic = required(params, 'topic');
  const payload = required(params, 'payload');
  return { topic: checkString('topic', topic), payload: toPayload(payload) };
}

/** Outside the runtime there is no THING_FUNCTION_ID; the runtime's alias reaches the thing function all the same. */
const THING_FUNCTION_ALIAS = native.thingFunctionAlias();

/** Outside the runtime there is no ROUTER_FUNCTION_ID either; this is what the runtime gives hosted functions. */
const ROUTER_FUNCTION_ID = native.routerFunctionId();

/** Where publishes go when made as upstream makes them: an Async invoke of the router function. */
function routerFunctionTarget() {
  return process.env.ROUTER_FUNCTION_ID || ROUTER_FUNCTION_ID;
}

/** Where thing operations go. */
function thingFunctionTarget() {
  return process.env.THING_FUNCTION_ID || THING_FUNCTION_ALIAS;
}

/** The request a thing operation sends to the thing function. */
function thingRequest(topic, payload) {
  const invokerContext = Buffer.from(JSON.stringify({ custom: { topic } })).toString('base64');
  return { invokerContext, payload: payload === undefined ? '' : payload };
}

/** callThingService's params, checked in upstream's order. */
function thingServiceRequest(params) {
  checkObject(params);
  const productKey = checkString('productKey', required(params, 'productKey'));
  const deviceName = checkString('deviceName', required(params, 'deviceName'));
  const service = checkString('service', required(params, 'service'));
  return thingRequest(`/sys/things/${productKey}/${deviceName}/services/${service}`, JSON.stringify(params.payload));
}

/** getThingProperties / setThingProperties: payload first (as upstream), then the service call's checks. */
function thingPropertiesRequest(params, service) {
  checkObject(params);
  const payload = required(params, 'payload');
  return thingServiceRequest({
    productKey: params.productKey, deviceName: params.deviceName, service, payload,
  });
}

function thingsWithTagsRequest(params) {
  checkObject(params);
  const payload = required(params, 'payload');
  return thingRequest('/sys/things///services/getthingswithtags', JSON.stringify(payload));
}

/**
 * A client's options: where the runtime is (`{config}` or `{socketPath,
 * token}`, else the environment) and how long to wait. Returns them with
 * absent values as `undefined`.
 */
function clientOptions(options) {
  if (options === undefined || options === null) {
    return {};
  }
  if (typeof options !== 'object') {
    throw invalidParams(`the client options must be an object, got ${typeof options}`);
  }
  if (options.socketPath !== undefined || options.token !== undefined) {
    if (typeof options.socketPath !== 'string' || typeof options.token !== 'string') {
      throw invalidParams('options "socketPath" and "token" must both be strings');
    }
  }
  const timeoutMs = options.timeoutMs === null ? undefined : options.timeoutMs;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0)) {
    throw invalidParams(`option "timeoutMs" must be a positive number, got ${timeoutMs}`);
  }
  const { connectTimeoutMs } = options;
  if (connectTimeoutMs !== undefined && !(Number.isInteger(connectTimeoutMs) && connectTimeoutMs > 0 && connectTimeoutMs < 2 ** 32)) {
    throw invalidParams(`option "connectTimeoutMs" must be a positive whole number of milliseconds, got ${connectTimeoutMs}`);
  }
  return { ...options, timeoutMs };
}

/** A callback is a function, or absent (then the call returns a Promise). */
function checkCallback(callback) {
  if (callback !== undefined && callback !== null && typeof callback !== 'function') {
    throw invalidParams(`callback must be a function, got ${typeof callback}`);
  }
}

module.exports = {
  getRequiredParameter,
  clientOptions,
  checkCallback,
  invokeRequest,
  publishRequest,
  routerFunctionTarget,
  thingFunctionTarget,
  thingServiceRequest,
  thingPropertiesRequest,
  thingsWithTagsRequest,
};

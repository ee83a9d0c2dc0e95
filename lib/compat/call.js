'use strict';

// The one shape every caller API's facade writes and every callee flavor
// reads. The payload is the body, raw. What an HTTP call would say around
// it (content type, method, path, query, headers) rides in the invoker
// context, base64 JSON as linkedge callers write it, under the key
// `edgefc`; a linkedge callee sees it in `context.invokerContext`. The
// handler's answer comes back the same way: its status in the result, its
// content type and headers in the reply context.

const crypto = require('crypto');

const native = require('../../native.js');
const { RuntimeLink } = require('../core/link');
const { decodeValue, payloadText } = require('./values');

const CALL_KEY = 'edgefc';
const FUNCTION_NAME_PREFIX = native.functionNamePrefix();

/** The invoker context of a call described by `call` ({api, contentType, method, path, query, headers}). */
function encodeCall(call) {
  return Buffer.from(JSON.stringify({ [CALL_KEY]: call })).toString('base64');
}

/** The call description in a decoded invoker context; null for a linkedge caller's. */
function callOf(invokerContext) {
  const call = invokerContext !== null && typeof invokerContext === 'object' ? invokerContext[CALL_KEY] : undefined;
  return call !== null && typeof call === 'object' ? call : null;
}

/** The reply context a handler's answer carries: `{contentType, headers, requestId}`. */
function encodeReply(reply) {
  return JSON.stringify(reply);
}

/** The error body a function error carries (Function Compute's), parsed; `{}` when unreadable. */
function functionErrorOf(payload) {
  try {
    const body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
    return body !== null && typeof body === 'object' ? body : {};
  } catch (err) {
    return {};
  }
}

/**
 * A Sync outcome as a caller facade reads it: `{functionError, status,
 * payload, contentType, headers, requestId, error, fromRuntime}`, where
 * `error` is the parsed error body of a function error, and `fromRuntime`
 * says the runtime reported it (a timeout, the memory limit, a crash, a
 * result too large), not the handler: the worker writes a reply context
 * for every facade call it answers, the runtime none.
 */
function readReply(outcome) {
  let reply = {};
  if (outcome.replyContext) {
    try {
      reply = JSON.parse(outcome.replyContext);
    } catch (err) {
      reply = {};
    }
  }
  return {
    functionError: outcome.functionError,
    status: outcome.statusCode,
    payload: outcome.payload,
    contentType: typeof reply.contentType === 'string' ? reply.contentType : undefined,
    headers: reply.headers !== null && typeof reply.headers === 'object' ? reply.headers : {},
    // The runtime's own reports (a timeout, a crash) carry none.
    requestId: typeof reply.requestId === 'string' ? reply.requestId : crypto.randomUUID(),
    error: outcome.functionError ? functionErrorOf(outcome.payload) : null,
    fromRuntime: Boolean(outcome.functionError) && !outcome.replyContext,
  };
}

/**
 * The value of an answer, by its content type (text that is JSON, without
 * one); a body that does not parse as its type says is its text.
 */
function readValue(reply) {
  try {
    return decodeValue(reply.payload, reply.contentType, { sniffJson: true });
  } catch (err) {
    return payloadText(reply.payload);
  }
}

/** A facade's way to the runtime, made on first use from the options its `init` took. */
class FacadeLink {
  constructor() {
    this._options = undefined;
    this._link = null;
  }

  /** `options`: FCClient's ({config}, {socketPath, token}, ...), or undefined for the default. */
  configure(options) {
    this._options = options;
    this._link = null;
  }

  get() {
    if (this._link === null) {
      this._link = new RuntimeLink(this._options);
    }
    return this._link;
  }
}

/**
 * Invokes the function a caller API names `name`: by its functionName, in
 * the caller's own service first (see the runtime's name resolution).
 * Resolves with the native outcome; rejects with an EdgeFCError.
 */
function invokeByName(link, name, {
  asynchronous = false, defaultTimeoutSecs = 0, call, payload,
}) {
  return link.invoke(FUNCTION_NAME_PREFIX + name, asynchronous, encodeCall(call), payload, defaultTimeoutSecs);
}

module.exports = {
  encodeCall, callOf, encodeReply, readReply, readValue, invokeByName, FacadeLink,
};

'use strict';

// `functions.invoke` of supabase-js (and MemFire's supabase-wechat-stable-v2)
// over the local runtime. invoke() resolves `{data, error, response}` and
// never rejects, as upstream's does.

const { RuntimeLink } = require('../core/link');
const { ErrorCode } = require('../core/errors');
const { withTimeout, untilAborted } = require('../core/deadline');
const { invokeByName, readReply } = require('../compat/call');
const {
  JSON_TYPE, TEXT_TYPE, BINARY_TYPE, STRUCTURED_TYPE, mediaType, isBinary, asBuffer, decodeValue,
} = require('../compat/values');

class FunctionsError extends Error {
  constructor(message, name = 'FunctionsError', context = undefined) {
    super(message);
    this.name = name;
    this.context = context;
  }

  toJSON() {
    return { name: this.name, message: this.message, context: this.context };
  }
}

/** No runtime to send the call to; `context` is the underlying error. */
class FunctionsFetchError extends FunctionsError {
  constructor(context) {
    super('Failed to send a request to the Edge Function', 'FunctionsFetchError', context);
  }
}

/** The runtime refused the call (unknown function, queue full, timeout, too large); `context` is a Response. */
class FunctionsRelayError extends FunctionsError {
  constructor(context) {
    super('Relay Error invoking the Edge Function', 'FunctionsRelayError', context);
  }
}

/** The function threw or answered with a non-2xx status; `context` is its Response, body unread. */
class FunctionsHttpError extends FunctionsError {
  constructor(context) {
    super('Edge Function returned a non-2xx status code', 'FunctionsHttpError', context);
  }
}

const FunctionRegion = Object.freeze({
  Any: 'any',
  ApNortheast1: 'ap-northeast-1',
  ApNortheast2: 'ap-northeast-2',
  ApSouth1: 'ap-south-1',
  ApSoutheast1: 'ap-southeast-1',
  ApSoutheast2: 'ap-southeast-2',
  CaCentral1: 'ca-central-1',
  EuCentral1: 'eu-central-1',
  EuWest1: 'eu-west-1',
  EuWest2: 'eu-west-2',
  EuWest3: 'eu-west-3',
  SaEast1: 'sa-east-1',
  UsEast1: 'us-east-1',
  UsWest1: 'us-west-1',
  UsWest2: 'us-west-2',
});

/** The runtime's refusals, as the HTTP status a relay would give them. */
const RELAY_STATUS = new Map([
  [ErrorCode.FUNCTION_NOT_FOUND, 404],
  [ErrorCode.PAYLOAD_TOO_LARGE, 413],
  [ErrorCode.QUEUE_FULL, 503],
  [ErrorCode.TOO_MANY_CONNECTIONS, 503],
  [ErrorCode.SHUTTING_DOWN, 503],
  [ErrorCode.GATEWAY_OFFLINE, 503],
  [ErrorCode.TIMEOUT, 504],
]);

/** Statuses whose Response has no body. */
const NULL_BODY_STATUSES = new Set([101, 204, 205, 304]);

/**
 * The function and what follows it: a URL (MemFire passes the function's
 * address) names it by its last path segment; otherwise the first segment
 * is the name and the rest a sub-path. A query string goes to the callee.
 */
function parseFunctionName(functionName) {
  if (typeof functionName !== 'string' || functionName === '') {
    throw new TypeError(`the function name must be a non-empty string, got ${JSON.stringify(functionName)}`);
  }
  const absolute = /^[a-z][a-z0-9+.-]*:\/\//i.test(functionName);
  const url = new URL(absolute ? functionName : `http://edgefc.invalid/${functionName.replace(/^\/+/, '')}`);
  const segments = url.pathname.split('/').filter((segment) => segment !== '').map(decodeURIComponent);
  if (segments.length === 0) {
    throw new TypeError(`${functionName} names no function`);
  }
  const name = absolute ? segments[segments.length - 1] : segments[0];
  const rest = absolute ? [] : segments.slice(1);
  return { name, path: rest.map((segment) => `/${encodeURIComponent(segment)}`).join(''), query: url.search.slice(1) };
}

function hasHeader(headers, wanted) {
  return Object.keys(headers).some((name) => name.toLowerCase() === wanted);
}

/** The body as bytes or text and its content type, by upstream's rules (types that carry one keep it). */
async function encodeBody(body, headers) {
  if (body === undefined || body === null) {
    return { payload: '', contentType: undefined };
  }
  const given = hasHeader(headers, 'content-type');
  if (typeof Blob !== 'undefined' && body instanceof Blob) {
    return { payload: Buffer.from(await body.arrayBuffer()), contentType: given ? undefined : body.type || BINARY_TYPE };
  }
  if (isBinary(body)) {
    return { payload: asBuffer(body), contentType: given ? undefined : BINARY_TYPE };
  }
  if (typeof body === 'string') {
    return { payload: body, contentType: given ? undefined : TEXT_TYPE };
  }
  if (typeof FormData !== 'undefined' && body instanceof FormData) {
    const encoded = new Response(body);
    return { payload: Buffer.from(await encoded.arrayBuffer()), contentType: encoded.headers.get('content-type') };
  }
  return { payload: JSON.stringify(body), contentType: given ? undefined : JSON_TYPE };
}

function lowerCaseKeys(headers) {
  const lower = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined && value !== null) {
      lower[name.toLowerCase()] = String(value);
    }
  }
  return lower;
}

function jsonResponse(status, body, extraHeaders = {}) {
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': JSON_TYPE, ...extraHeaders } });
}

/** The runtime refused: a relay error with the status a relay would give and `{code, message}`. */
function relayError(status, code, message) {
  return new FunctionsRelayError(jsonResponse(status, { code, message }, { 'x-relay-error': 'true' }));
}

/** What the runtime itself reported about a run (not the handler), as a relay or the platform would. */
function runtimeFailure(error) {
  switch (error.errorType) {
    case 'TimeoutError':
      return relayError(504, 'TIMEOUT', error.errorMessage);
    case 'PayloadTooLarge':
      return relayError(413, 'PAYLOAD_TOO_LARGE', error.errorMessage);
    case 'MemoryLimitExceeded':
      return new FunctionsHttpError(jsonResponse(546, {
        code: 'WORKER_LIMIT', message: 'Function failed due to not having enough compute resources (please check logs)',
      }));
    default:
      // The worker ended, or could not start or load the handler: the function's failure.
      return new FunctionsHttpError(jsonResponse(500, error));
  }
}

/** The callee's headers; `set-cookie` may be several. */
function headersOf(reply) {
  const headers = new Headers();
  for (const [name, value] of Object.entries(reply.headers)) {
    for (const one of Array.isArray(value) ? value : [value]) {
      headers.append(name, String(one));
    }
  }
  if (reply.contentType !== undefined) {
    headers.set('content-type', reply.contentType);
  }
  return headers;
}

/** What the callee answered, as the Response a fetch would have given. */
function responseOf(reply) {
  if (reply.functionError) {
    return { error: reply.fromRuntime ? runtimeFailure(reply.error) : new FunctionsHttpError(jsonResponse(500, reply.error)) };
  }
  const status = reply.status || 200;
  const response = new Response(NULL_BODY_STATUSES.has(status) ? null : reply.payload, { status, headers: headersOf(reply) });
  return status >= 200 && status < 300 ? { response } : { error: new FunctionsHttpError(response) };
}

/** The body parsed as upstream parses it, by the callee's content type. */
async function dataOf(response, reply) {
  const type = mediaType(response.headers.get('content-type') || 'text/plain');
  if (type === 'application/json') {
    return response.json();
  }
  if (type === STRUCTURED_TYPE) {
    return decodeValue(reply.payload, type);
  }
  if (type === 'application/octet-stream' || type === 'application/pdf') {
    return response.blob();
  }
  if (type === 'text/event-stream') {
    return response;
  }
  if (type === 'multipart/form-data') {
    return response.formData();
  }
  return response.text();
}

class FunctionsClient {
  /**
   * `url` and `headers` as upstream (the URL need not point anywhere);
   * `edgefc` says where the runtime is, as FCClient's options do
   * (`{config}`, `{socketPath, token}`; by default the hosted function's
   * own connection or the environment).
   */
  constructor(url, {
    headers = {}, customFetch, region = FunctionRegion.Any, edgefc,
  } = {}) {
    this.url = url;
    this.headers = headers;
    this.region = region;
    this.fetch = customFetch;
    this._link = edgefc instanceof RuntimeLink ? edgefc : new RuntimeLink(edgefc);
  }

  /** As upstream: later calls carry `Authorization: Bearer <token>`. */
  setAuth(token) {
    this.headers.Authorization = `Bearer ${token}`;
  }

  /**
   * Invokes `functionName` with `{body, headers, method}` (and `region`,
   * `signal`, `timeout`); resolves `{data, error, response}`.
   */
  async invoke(functionName, options = {}) {
    let response;
    try {
      const {
        headers = {}, method = 'POST', body, region = this.region, signal, timeout,
      } = options;
      const target = parseFunctionName(functionName);
      const upperMethod = String(method).toUpperCase();
      if ((upperMethod === 'GET' || upperMethod === 'HEAD') && body !== undefined && body !== null) {
        return { data: null, error: new FunctionsFetchError(new TypeError('Request with GET/HEAD method cannot have body.')), response: undefined };
      }
      try {
        // What fetch would refuse before sending (a forbidden method, a header value with a newline), refused here.
        new Request('http://edgefc.invalid/', { method: upperMethod, headers: lowerCaseKeys({ ...this.headers, ...headers }) });
      } catch (err) {
        return { data: null, error: new FunctionsFetchError(err), response: undefined };
      }
      const allHeaders = { ...this.headers, ...headers };
      if (region && region !== FunctionRegion.Any) {
        allHeaders['x-region'] = region;
      }
      const { payload, contentType } = await encodeBody(body, allHeaders);
      const lower = lowerCaseKeys(allHeaders);
      if (contentType !== undefined) {
        lower['content-type'] = contentType;
      }
      const call = {
        api: 'supabase', contentType: lower['content-type'], method: upperMethod, path: target.path, query: target.query, headers: lower,
      };
      let outcome;
      try {
        const called = untilAborted(invokeByName(this._link, target.name, { call, payload }), signal);
        outcome = await withTimeout(called, timeout, () => new DOMException('The operation was aborted due to timeout', 'TimeoutError'));
      } catch (err) {
        const status = RELAY_STATUS.get(err.code);
        const error = status === undefined ? new FunctionsFetchError(err) : relayError(status, err.code, err.message);
        return { data: null, error, response: error.context instanceof Response ? error.context : undefined };
      }
      const reply = readReply(outcome);
      const answered = responseOf(reply);
      if (answered.error) {
        return { data: null, error: answered.error, response: answered.error.context };
      }
      response = answered.response;
      return { data: await dataOf(response, reply), error: null, response };
    } catch (error) {
      return { data: null, error, response: error instanceof FunctionsHttpError || error instanceof FunctionsRelayError ? error.context : undefined };
    }
  }
}

/** supabase-js's version string, as its X-Client-Info header carries it. */
const CLIENT_INFO = `supabase-js/edgefc; runtime=node; runtime-version=${process.version}`;

/**
 * supabase-js's `createClient`, with the part edgefc serves: `functions`
 * (a new FunctionsClient on every access, sharing the client's headers).
 */
function createClient(supabaseUrl, supabaseKey, options = {}) {
  if (supabaseUrl === undefined || supabaseUrl === null) {
    throw new Error('supabaseUrl is required.');
  }
  if (supabaseKey === undefined || supabaseKey === null) {
    throw new Error('supabaseKey is required.');
  }
  const globalHeaders = (options.global && options.global.headers) || {};
  const headers = {
    'X-Client-Info': CLIENT_INFO,
    apikey: supabaseKey,
    Authorization: `Bearer ${supabaseKey}`,
    ...globalHeaders,
  };
  const functionsUrl = `${String(supabaseUrl).replace(/\/+$/, '')}/functions/v1`;
  // One way to the runtime for every FunctionsClient the getter makes.
  const link = new RuntimeLink(options.edgefc);
  return {
    supabaseUrl,
    supabaseKey,
    get functions() {
      return new FunctionsClient(functionsUrl, { headers, edgefc: link });
    },
  };
}

module.exports = {
  createClient,
  FunctionsClient,
  FunctionsError,
  FunctionsFetchError,
  FunctionsHttpError,
  FunctionsRelayError,
  FunctionRegion,
};

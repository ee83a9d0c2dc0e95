'use strict';

// Supabase Edge Functions: a handler that takes a Web `Request` and returns
// a `Response`, given as `Deno.serve(handler)`, `export default { fetch }`
// or `module.exports = handler`. The request carries the method, headers,
// path, query and body the caller sent; the response's status, headers and
// body go back to it.

const fs = require('fs');
const path = require('path');
const { pathToFileURL } = require('url');

const { splitHandler } = require('./load');
const {
  TEXT_TYPE, BINARY_TYPE, mediaType, isTextType, asJsonIfStructured,
} = require('../compat/values');

/** The handler `Deno.serve` was given while the module loaded. */
let served = null;

/** The parts of Deno that edge functions use to start: `Deno.serve` and `Deno.env`. */
function installDeno() {
  if (globalThis.Deno !== undefined) {
    return;
  }
  const finished = new Promise(() => {});
  globalThis.Deno = {
    serve(first, second) {
      const handler = typeof first === 'function' ? first : second || (first && first.handler);
      if (typeof handler !== 'function') {
        throw new TypeError('Deno.serve needs a handler function');
      }
      served = handler;
      return {
        finished, ref() {}, unref() {}, shutdown: async () => {}, addr: { transport: 'unix', path: '' },
      };
    },
    env: {
      get: (name) => process.env[name],
      set: (name, value) => { process.env[name] = String(value); },
      delete: (name) => { delete process.env[name]; },
      has: (name) => Object.prototype.hasOwnProperty.call(process.env, name),
      toObject: () => ({ ...process.env }),
    },
  };
}

function asFetch(candidate) {
  if (typeof candidate === 'function') {
    return candidate;
  }
  if (candidate !== null && typeof candidate === 'object' && typeof candidate.fetch === 'function') {
    return candidate.fetch.bind(candidate);
  }
  return null;
}

/**
 * The handler of module `file` (or its export `name`): whatever it gave
 * `Deno.serve`, else its default export (a function, or an object with
 * `fetch`), else the CommonJS module itself.
 */
async function load(codeDir, handlerName) {
  installDeno();
  const { file, exportName: name } = splitHandler(handlerName);
  const module = await import(pathToFileURL(moduleFile(codeDir, file)).href);
  const handler = name !== '' ? asFetch(module[name] !== undefined ? module[name] : (module.default || {})[name])
    : served || asFetch(module.default) || asFetch(module.default && module.default.default);
  if (handler === null) {
    throw new TypeError(`${file} neither calls Deno.serve(handler) nor exports a handler `
      + `(export default { fetch }, or module.exports = handler)${name ? ` named "${name}"` : ''}`);
  }
  return handler;
}

/** The module `file` names: as it is, or with `.js`, `.mjs` or `.cjs` added. */
function moduleFile(codeDir, file) {
  const base = path.resolve(codeDir, file);
  const found = ['', '.js', '.mjs', '.cjs'].map((extension) => base + extension)
    .find((candidate) => fs.statSync(candidate, { throwIfNoEntry: false })?.isFile());
  if (found === undefined) {
    throw new Error(`Cannot find module '${base}' (nor ${file}.js, .mjs or .cjs)`);
  }
  return found;
}

const NO_BODY_METHODS = new Set(['GET', 'HEAD']);

/** The Request the caller's call describes; a linkedge caller's is a POST of its payload. */
function requestOf(task, call) {
  const method = (call && typeof call.method === 'string' ? call.method : 'POST').toUpperCase();
  const headers = new Headers(call && call.headers ? call.headers : {});
  const { payload, contentType } = asJsonIfStructured(task.payload, call ? call.contentType
    : typeof task.payload === 'string' ? TEXT_TYPE : BINARY_TYPE);
  if (contentType && !headers.has('content-type')) {
    headers.set('content-type', contentType);
  }
  const subPath = call && typeof call.path === 'string' ? call.path : '';
  const query = call && typeof call.query === 'string' && call.query !== '' ? `?${call.query}` : '';
  const url = `http://localhost/${encodeURIComponent(process.env.EDGEFC_FUNCTION_NAME)}${subPath}${query}`;
  const hasBody = !NO_BODY_METHODS.has(method) && !(call && call.contentType === undefined && payload === '');
  return new Request(url, { method, headers, body: hasBody ? payload : null });
}

/** Headers that describe one hop, not the reply. */
const HOP_HEADERS = new Set(['connection', 'keep-alive', 'content-length', 'transfer-encoding', 'date', 'server', 'upgrade']);

/** A Response, from Node's fetch or another implementation (undici, node-fetch). */
function isResponse(value) {
  return value !== null && typeof value === 'object' && typeof value.status === 'number'
    && typeof value.arrayBuffer === 'function' && value.headers !== null && typeof value.headers === 'object';
}

/** Whether a text body reads the same as a JS string (UTF-8, the default). */
function isUtf8(contentType) {
  const charset = /;\s*charset="?([^";]+)/i.exec(contentType || '');
  return charset === null || /^utf-?8$/i.test(charset[1]);
}

async function answer(response, call, outcome) {
  if (!isResponse(response)) {
    throw new TypeError(`the handler must return a Response, not ${response === null ? 'null' : typeof response}`);
  }
  if (response.status < 100) {
    throw new TypeError('the handler returned a network error (Response.error())');
  }
  const headers = {};
  for (const [name, value] of response.headers) {
    if (!HOP_HEADERS.has(name) && name !== 'set-cookie') {
      headers[name] = value;
    }
  }
  const cookies = typeof response.headers.getSetCookie === 'function' ? response.headers.getSetCookie() : [];
  if (cookies.length > 0) {
    headers['set-cookie'] = cookies;
  }
  const contentType = response.headers.get('content-type') || undefined;
  const bytes = Buffer.from(await response.arrayBuffer());
  // A linkedge caller gets UTF-8 text as a String, as it would from a linkedge handler; facades get the bytes.
  const asText = call === null && isTextType(mediaType(contentType || 'text/plain')) && isUtf8(contentType);
  outcome.succeed({ payload: asText ? bytes.toString('utf8') : bytes, contentType }, { status: response.status, headers });
}

function run(handler, task, { call }, outcome) {
  Promise.resolve(handler(requestOf(task, call)))
    .then((response) => answer(response, call, outcome))
    .catch((err) => outcome.unhandled(err));
}

module.exports = { load, run };

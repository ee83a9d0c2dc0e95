'use strict';

// How a value of one API's caller travels to a callee of another: as bytes
// with a content type, the way an HTTP body does. Plain data goes as JSON;
// data with binary inside (a Buffer among an object's fields) as a V8
// structured clone, so that the bytes arrive as a Buffer, byte-exact,
// rather than as JSON's {type: 'Buffer', data: [...]}.

const v8 = require('v8');

const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain;charset=UTF-8';
const BINARY_TYPE = 'application/octet-stream';
/** A V8 structured clone (Node's `v8.serialize`): objects with binary fields. */
const STRUCTURED_TYPE = 'application/vnd.edgefc.structured-clone';

/** The media type alone, lower case: `Application/JSON; charset=x` is `application/json`. */
function mediaType(contentType) {
  if (typeof contentType !== 'string') {
    return '';
  }
  // What edgefc itself writes needs no parsing (this runs for every result).
  if (contentType === BINARY_TYPE || contentType === JSON_TYPE || contentType === STRUCTURED_TYPE) {
    return contentType;
  }
  return contentType.split(';')[0].trim().toLowerCase();
}

function isJsonType(type) {
  return type === JSON_TYPE || type.endsWith('+json');
}

/** Whether a reply of this type is text a caller reads as a string. */
function isTextType(type) {
  return type.startsWith('text/') || isJsonType(type) || type === 'application/xml' || type === 'application/javascript'
    || type.endsWith('+xml');
}

function isBinary(value) {
  return Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof ArrayBuffer;
}

/** A view on the same bytes, never a copy. */
function asBuffer(value) {
  if (Buffer.isBuffer(value)) {
    return value;
  }
  if (value instanceof ArrayBuffer) {
    return Buffer.from(value);
  }
  return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
}

/** Whether binary data sits anywhere inside `value` (cycles are looked at once). */
function hasBinaryInside(value, seen = new Set()) {
  if (value === null || typeof value !== 'object' || seen.has(value)) {
    return false;
  }
  if (isBinary(value)) {
    return true;
  }
  seen.add(value);
  const children = value instanceof Map ? [...value.keys(), ...value.values()]
    : value instanceof Set ? [...value] : Object.values(value);
  return children.some((child) => hasBinaryInside(child, seen));
}

/**
 * `value` as `{payload, contentType}`: a string as text, bytes as they are,
 * anything else as JSON, or, when binary is inside and `structured` allows,
 * as a structured clone (a value that cannot be cloned, one with a
 * function, say, goes as JSON then). `undefined` (and what JSON leaves out,
 * like a function) is no payload and no content type. Throws what
 * JSON.stringify throws (a cycle, a BigInt).
 */
function encodeValue(value, { structured = true } = {}) {
  if (typeof value === 'string') {
    return { payload: value, contentType: TEXT_TYPE };
  }
  if (isBinary(value)) {
    return { payload: asBuffer(value), contentType: BINARY_TYPE };
  }
  if (structured && hasBinaryInside(value)) {
    try {
      return { payload: v8.serialize(value), contentType: STRUCTURED_TYPE };
    } catch (err) {
      // A DataCloneError: JSON's rules then, as for data without binary.
    }
  }
  const json = value === undefined ? undefined : JSON.stringify(value);
  return json === undefined ? { payload: '', contentType: undefined } : { payload: json, contentType: JSON_TYPE };
}

function payloadText(payload) {
  return typeof payload === 'string' ? payload : payload.toString('utf8');
}

/**
 * The value a payload of `contentType` holds: JSON parsed, a structured
 * clone revived, text as a string, anything else as a Buffer. Without a
 * content type (a linkedge caller's payload), text that parses as JSON is
 * that JSON when `sniffJson` says so, else the string; bytes stay a Buffer.
 * Throws a SyntaxError for JSON that is not.
 */
function decodeValue(payload, contentType, { sniffJson = false } = {}) {
  const type = mediaType(contentType);
  if (type === '') {
    if (typeof payload !== 'string') {
      return payload;
    }
    if (payload === '') {
      return undefined;
    }
    if (sniffJson) {
      try {
        return JSON.parse(payload);
      } catch (err) {
        return payload;
      }
    }
    return payload;
  }
  if (isJsonType(type)) {
    const text = payloadText(payload);
    return text === '' ? undefined : JSON.parse(text);
  }
  if (type === STRUCTURED_TYPE) {
    return v8.deserialize(typeof payload === 'string' ? Buffer.from(payload) : payload);
  }
  if (isTextType(type)) {
    return payloadText(payload);
  }
  return typeof payload === 'string' ? Buffer.from(payload) : payload;
}

/**
 * A structured clone as JSON text, for sides that read JSON (a Supabase
 * `Request`, a linkedge handler or caller): binary fields become what
 * JSON.stringify makes of a Buffer. Other payloads are returned as they are.
 */
function asJsonIfStructured(payload, contentType) {
  if (mediaType(contentType) !== STRUCTURED_TYPE) {
    return { payload, contentType };
  }
  const json = JSON.stringify(decodeValue(payload, contentType));
  return { payload: json === undefined ? '' : json, contentType: JSON_TYPE };
}

module.exports = {
  JSON_TYPE,
  TEXT_TYPE,
  BINARY_TYPE,
  STRUCTURED_TYPE,
  mediaType,
  isTextType,
  isBinary,
  asBuffer,
  encodeValue,
  decodeValue,
  asJsonIfStructured,
  payloadText,
};

'use strict';

// Replies and tasks as the addon hands them over: records in a buffer the
// session shares with it (the format is described in src/records.rs). Read
// with plain JavaScript, they cost far less than objects the addon would
// build property by property. Each batch is read whole before anything
// else runs, as the addon writes the buffer again for the next one.

/** A length with this bit set is an index into the lent values instead. */
const LENT = 0x80000000;

const COMPLETED = 0;
const ACCEPTED = 1;
const FAILED = 2;

const TEXT = 0;

/** Function Compute's functionError, by the number a record carries (0: none). */
const FUNCTION_ERRORS = [undefined, 'Handled', 'Unhandled'];

class RecordReader {
  constructor(arena, lent) {
    this.arena = arena;
    this.lent = lent;
    this.at = 0;
  }

  u8() {
    const value = this.arena[this.at];
    this.at += 1;
    return value;
  }

  u16() {
    const value = this.arena.readUInt16LE(this.at);
    this.at += 2;
    return value;
  }

  f64() {
    const value = this.arena.readDoubleLE(this.at);
    this.at += 8;
    return value;
  }

  /** What precedes a field: its length inline, or LENT plus the index of a lent value. */
  u32() {
    const value = this.arena.readUInt32LE(this.at);
    this.at += 4;
    return value;
  }

  text() {
    const header = this.u32();
    if (header >= LENT) {
      return this.lent[header - LENT];
    }
    const start = this.at;
    this.at += header;
    return header === 0 ? '' : this.arena.toString('utf8', start, this.at);
  }

  /**
   * A string, or a Buffer holding a copy of the bytes, never a view of the
   * shared buffer (a small one comes from Node's Buffer pool, as
   * `Buffer.from` does, so its `byteOffset` may not be 0).
   */
  payload() {
    const kind = this.u8();
    if (kind === TEXT) {
      return this.text();
    }
    const header = this.u32();
    if (header >= LENT) {
      return this.lent[header - LENT];
    }
    const bytes = Buffer.allocUnsafe(header);
    this.arena.copy(bytes, 0, this.at, this.at + header);
    this.at += header;
    return bytes;
  }
}

/**
 * The outcomes of submitted requests: `{tag, functionError, statusCode,
 * replyContext, payload}` for a Sync result, `{tag, acceptedId}` for what
 * was accepted, `{tag, failure: {code, message}}` for a failure.
 */
function readOutcomes(arena, count, lent) {
  const reader = new RecordReader(arena, lent);
  const outcomes = new Array(count);
  for (let i = 0; i < count; i += 1) {
    const kind = reader.u8();
    const tag = reader.f64();
    if (kind === COMPLETED) {
      const functionError = FUNCTION_ERRORS[reader.u8()];
      const statusCode = reader.u16();
      const replyContext = reader.text();
      outcomes[i] = { tag, functionError, statusCode, replyContext, payload: reader.payload() };
    } else if (kind === ACCEPTED) {
      outcomes[i] = { tag, acceptedId: reader.text() };
    } else if (kind === FAILED) {
      const code = reader.text();
      outcomes[i] = { tag, failure: { code, message: reader.text() } };
    } else {
      throw new Error(`edgefc: unknown reply record ${kind}`);
    }
  }
  return outcomes;
}

/** A worker's tasks: `{id, attempt, requestId, invokerContext, payload}`. */
function readTasks(arena, count, lent) {
  const reader = new RecordReader(arena, lent);
  const tasks = new Array(count);
  for (let i = 0; i < count; i += 1) {
    const id = reader.f64();
    const attempt = reader.u16();
    const requestId = reader.text();
    const invokerContext = reader.text();
    tasks[i] = { id, attempt, requestId, invokerContext, payload: reader.payload() };
  }
  return tasks;
}

module.exports = { readOutcomes, readTasks };

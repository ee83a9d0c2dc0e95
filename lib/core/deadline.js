'use strict';

/** `call`, or a rejection with `expired()` when it has not settled within `timeoutMs` (none when undefined). */
function withTimeout(call, timeoutMs, expired) {
  if (timeoutMs === undefined) {
    return call;
  }
  let timer;
  const late = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(expired()), timeoutMs);
  });
  return Promise.race([call, late]).finally(() => clearTimeout(timer));
}

/** `call`, or a rejection with the signal's reason when `signal` (if any) aborts first. */
function untilAborted(call, signal) {
  if (!signal) {
    return call;
  }
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason || new DOMException('This operation was aborted', 'AbortError'));
    if (signal.aborted) {
      onAbort();
      return;
    }
    signal.addEventListener('abort', onAbort, { once: true });
    call.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

module.exports = { withTimeout, untilAborted };

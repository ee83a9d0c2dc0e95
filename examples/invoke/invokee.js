'use strict';

// Called by the invokers: shows what it received and answers in kind
// (a Buffer for a Buffer, a string for a string).
exports.handler = (event, context, callback) => {
  const kind = Buffer.isBuffer(event) ? 'binary' : 'string';
  console.log(`got a ${kind} event: ${event.toString()}`);
  console.log(`invoker context: ${JSON.stringify(context.invokerContext)}`);
  const answer = `Invokee read ${event.length} ${kind === 'binary' ? 'bytes' : 'characters'}.`;
  callback(null, kind === 'binary' ? Buffer.from(answer) : answer);
};

'use strict';

// Receives what the routes deliver: the payload as published, and
// context.invokerContext.custom = {source, topic}.
exports.handler = function (event, context, callback) {
  const { source, topic } = context.invokerContext.custom;
  console.log(`${topic} from ${source}: ${event}`);
  callback(null);
};

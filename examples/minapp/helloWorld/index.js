'use strict';

// Seed 003's cloud function.
exports.main = function helloWorld(event, callback) {
  console.log(event);
  callback(null, `hello ${event.data.name}`);
};

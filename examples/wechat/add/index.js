'use strict';

// Seed 004's cloud function: the returned value completes the call, although `cb` is declared.
exports.add = (event, _context, _cb) => {
  return event.x + event.y;
};

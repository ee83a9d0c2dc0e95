'use strict';

/** Each function's `flavor` (edgefc.json): how its handler is loaded and called. */
module.exports = {
  linkedge: require('./linkedge'),
  wechat: require('./wechat'),
  minapp: require('./minapp'),
  supabase: require('./supabase'),
};

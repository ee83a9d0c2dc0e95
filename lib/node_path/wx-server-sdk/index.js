'use strict';

// Hosted functions `require('wx-server-sdk')` as on WeChat cloud; the
// runtime puts this directory on NODE_PATH so the name resolves to edgefc's facade.
module.exports = require('../../wechat');

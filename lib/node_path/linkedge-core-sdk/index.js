'use strict';

// Hosted functions `require('linkedge-core-sdk')` as on Link IoT Edge; the
// runtime puts this directory on NODE_PATH so the name resolves to edgefc.
module.exports = require('../../../index.js');

'use strict';

// `require('edgefc/minapp')`: 知晓云's BaaS, as `BaaS` and as mini programs
// reach it, `wx.BaaS`. Hosted 知晓云 functions also find it as a global.

const BaaS = require('./baas');

module.exports = { BaaS, wx: { BaaS } };

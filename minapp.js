'use strict';

module.exports = require('./lib/minapp');

'use strict';

const FCClient = require('./lib/fc');
const { EdgeFCError, ErrorCode } = require('./lib/errors');
const { Runtime, startRuntime } = require('./lib/runtime');

module.exports = { FCClient, EdgeFCError, ErrorCode, Runtime, startRuntime };

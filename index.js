'use strict';

const CredentialProviderChain = require('./lib/linkedge/credential-provider-chain');
const FCClient = require('./lib/linkedge/fc');
const IoTData = require('./lib/linkedge/iot');
const { EdgeFCError, ErrorCode } = require('./lib/core/errors');
const { Runtime, startRuntime } = require('./lib/runtime');

module.exports = {
  IoTData,
  FCClient,
  CredentialProviderChain,
  EdgeFCError,
  ErrorCode,
  Runtime,
  startRuntime,
};

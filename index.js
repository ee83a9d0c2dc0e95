'use strict';

const CredentialProviderChain = require('./lib/credential-provider-chain');
const FCClient = require('./lib/fc');
const IoTData = require('./lib/iot');
const { EdgeFCError, ErrorCode } = require('./lib/errors');
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

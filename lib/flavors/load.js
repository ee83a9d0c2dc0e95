'use strict';

const path = require('path');

/** `require`s the handler's file, relative to the function's code directory. */
function requireHandlerFile(codeDir, file) {
  return require(path.resolve(codeDir, file));
}

/** The function `exportName` of a handler module, or a TypeError that says what is missing. */
function exportedFunction(module, file, exportName) {
  const handler = module[exportName];
  if (typeof handler !== 'function') {
    throw new TypeError(`${file} does not export a function named "${exportName}"`);
  }
  return handler;
}

/** Loads `file.export` (Function Compute's handler notation) from `codeDir`. */
function loadExport(codeDir, handlerName) {
  const dot = handlerName.lastIndexOf('.');
  const file = handlerName.slice(0, dot);
  return exportedFunction(requireHandlerFile(codeDir, file), file, handlerName.slice(dot + 1));
}

module.exports = { requireHandlerFile, exportedFunction, loadExport };

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

/** `file.export` (Function Compute's handler notation) as `{file, exportName}`; a bare `file` has export ''. */
function splitHandler(handlerName) {
  const dot = handlerName.lastIndexOf('.');
  return dot > 0 ? { file: handlerName.slice(0, dot), exportName: handlerName.slice(dot + 1) } : { file: handlerName, exportName: '' };
}

/** Loads `file.export` from `codeDir`. */
function loadExport(codeDir, handlerName) {
  const { file, exportName } = splitHandler(handlerName);
  return exportedFunction(requireHandlerFile(codeDir, file), file, exportName);
}

module.exports = { splitHandler, loadExport };

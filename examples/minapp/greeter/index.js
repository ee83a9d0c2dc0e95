'use strict';

/* global BaaS */

// An async 知晓云 function that calls helloWorld through the platform's global BaaS.
exports.main = async (event) => {
  const res = await BaaS.invoke('helloWorld', { name: event.data.name });
  if (res.code !== 0) {
    throw new Error(res.error.message);
  }
  return { greeting: res.data };
};

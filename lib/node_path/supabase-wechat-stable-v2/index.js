'use strict';

// MemFire's fork of supabase-js, as hosted functions require it; see ../wx-server-sdk.
module.exports = require('../../supabase');

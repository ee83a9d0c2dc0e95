'use strict';

module.exports = require('./lib/supabase');

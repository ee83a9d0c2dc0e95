'use strict';

/* global Deno */

// A Supabase Edge Function, unchanged: a Web Request in, a Response out.
Deno.serve(async (req) => {
  const url = new URL(req.url);
  if (req.method === 'GET') {
    return new Response(`hello from ${url.pathname}${url.search}`, { headers: { 'content-type': 'text/plain' } });
  }
  const { name } = await req.json();
  if (!name) {
    return new Response(JSON.stringify({ error: 'name is required' }), { status: 400, headers: { 'content-type': 'application/json' } });
  }
  return new Response(JSON.stringify({ message: `Hello ${name}!`, action: url.searchParams.get('action') }), {
    headers: { 'content-type': 'application/json' },
  });
});

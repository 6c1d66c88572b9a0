// The server's tests as a user's program sees it: the official OpenAI client (npm
// package openai) and plain fetch against a running `xorpatch serve`.
//
//   node client.mjs MODE BASE_URL REFS.json [API_KEY]
//
// REFS.json holds what `generate --patch` gives offline: {"completions": [{model, prompt,
// max_tokens, text}], "chat": [{model, user, max_tokens, text}]}. Modes:
//   api    completions, chat, both streamed, the model list, logprobs, the "patch" field
//   load   16 concurrent clients, 200 greedy requests over every case, each compared
//   bad    every bad input with its status and OpenAI error body, then a good request
//   auth   the API key: none, wrong, right; /health needs none
//   cut    a stream the client abandons frees its slot
// Prints one line per check; any failure exits 1 with what differed.
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

const require = createRequire(import.meta.url);
const cache = process.env.XP_CACHE || new URL('../../.cache', import.meta.url).pathname;
const { default: OpenAI } = require(`${cache}/npm-openai4/node_modules/openai`);

const [mode, baseURL, refsPath, apiKey] = process.argv.slice(2);
const refs = JSON.parse(readFileSync(refsPath, 'utf8'));
const client = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: apiKey || 'unused', maxRetries: 0 });

let failures = 0;
function check(ok, what, detail) {
  if (ok) {
    console.log(`ok   ${what}`);
  } else {
    failures++;
    console.log(`FAIL ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
  }
}

async function complete(c, stream) {
  const body = { model: c.model, prompt: c.prompt, max_tokens: c.max_tokens, temperature: 0 };
  if (!stream) {
    const r = await client.completions.create(body);
    return { text: r.choices[0].text, finish: r.choices[0].finish_reason, usage: r.usage };
  }
  let text = '', finish = null;
  for await (const chunk of await client.completions.create({ ...body, stream: true })) {
    for (const ch of chunk.choices) {
      text += ch.text;
      finish = ch.finish_reason || finish;
    }
  }
  return { text, finish };
}

async function chat(c, stream, extra = {}) {
  const body = { model: c.model, messages: [{ role: 'user', content: c.user }],
                 max_tokens: c.max_tokens, ...extra };
  if (!stream) {
    const r = await client.chat.completions.create(body);
    return { text: r.choices[0].message.content, finish: r.choices[0].finish_reason, r };
  }
  let text = '', finish = null, role = null;
  const s = await client.chat.completions.create({ ...body, stream: true,
                                                   stream_options: { include_usage: true } });
  let usage = null;
  for await (const chunk of s) {
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      role = ch.delta.role || role;
      text += ch.delta.content || '';
      finish = ch.finish_reason || finish;
    }
  }
  return { text, finish, role, usage };
}

async function api() {
  const ids = (await client.models.list()).data.map((m) => m.id);
  check(ids[0] === 'base' && ids.includes('base+row') && ids.includes('base+block') &&
        ids.includes('base+neagari-steps') && ids.includes('base+search-row-bankai') &&
        ids.includes('base+scale'), 'models.list names base and base+PATCH', ids);
  for (const c of refs.completions.slice(0, 6)) {
    const a = await complete(c, false), b = await complete(c, true);
    check(a.text === c.text, `completion ${c.model} "${c.prompt}"`, { got: a.text, want: c.text });
    check(b.text === c.text && b.finish === a.finish, `streamed completion ${c.model}`,
          { got: b.text, want: c.text });
    check(a.usage.completion_tokens > 0 && a.usage.total_tokens ===
          a.usage.prompt_tokens + a.usage.completion_tokens, 'usage adds up', a.usage);
  }
  for (const c of refs.chat) {
    const a = await chat(c, false), b = await chat(c, true);
    check(a.text === c.text, `chat ${c.model}`, { got: a.text, want: c.text });
    check(b.text === c.text && b.role === 'assistant' && b.usage &&
          b.usage.completion_tokens === a.r.usage.completion_tokens, `streamed chat ${c.model}`,
          { got: b.text, role: b.role, usage: b.usage });
  }
  const c = refs.chat[0];
  const lp = await chat(c, false, { logprobs: true, top_logprobs: 3 });
  const content = lp.r.choices[0].logprobs.content;
  check(content.length === lp.r.usage.completion_tokens &&
        content.every((t) => t.logprob <= 0 && t.top_logprobs.length === 3 &&
                             t.top_logprobs[0].logprob >= t.logprob - 1e-6),
        'chat logprobs: one per token, the top ones first', content.slice(0, 2));
  const [p, patch] = [refs.completions.find((x) => x.model.includes('+')), null];
  const name = p.model.slice('base+'.length);
  const viaField = await client.completions.create({ model: 'base', patch: name, prompt: p.prompt,
                                                     max_tokens: p.max_tokens });
  check(viaField.choices[0].text === p.text && viaField.model === p.model,
        'the "patch" field picks the patch', { got: viaField.choices[0].text, model: viaField.model });
  void patch;
}

async function load() {
  const cases = refs.completions;
  let next = 0, errors = 0, wrong = 0, done = 0;
  const perModel = {};
  async function worker() {
    while (next < 200) {
      const i = next++;
      const c = cases[i % cases.length];
      try {
        const r = await complete(c, i % 2 === 1);
        if (r.text !== c.text) {
          wrong++;
          console.log(`FAIL request ${i} ${c.model} "${c.prompt}": ${JSON.stringify(r.text)} ` +
                      `!= ${JSON.stringify(c.text)}`);
        }
        perModel[c.model] = (perModel[c.model] || 0) + 1;
        done++;
      } catch (e) {
        errors++;
        console.log(`FAIL request ${i}: ${e}`);
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker));
  check(done === 200 && errors === 0 && wrong === 0,
        `200 requests from 16 clients over ${Object.keys(perModel).length} models`,
        { done, errors, wrong, perModel });
}

async function raw(path, init = {}) {
  const headers = { 'Content-Type': 'application/json', ...(init.headers || {}) };
  const r = await fetch(`${baseURL}${path}`, { ...init, headers });
  const text = await r.text();
  let body = null;
  try { body = JSON.parse(text); } catch { body = text; }
  return { status: r.status, body };
}

function isError(body, type, param) {
  return body && body.error && typeof body.error.message === 'string' && body.error.message &&
         body.error.type === type && (param === undefined || body.error.param === param);
}

async function bad() {
  const post = (path, body) => raw(path, { method: 'POST',
                                            body: typeof body === 'string' ? body : JSON.stringify(body) });
  const cases = [
    ['malformed JSON', () => post('/v1/completions', '{"prompt": "x",'), 400, 'invalid_request_error'],
    ['a body that is no object', () => post('/v1/completions', '[1, 2]'), 400, 'invalid_request_error'],
    ['max_tokens of the wrong type', () => post('/v1/completions', { prompt: 'x', max_tokens: 'ten' }),
     400, 'invalid_request_error', 'max_tokens'],
    ['temperature out of range', () => post('/v1/completions', { prompt: 'x', temperature: 9 }),
     400, 'invalid_request_error', 'temperature'],
    ['max_tokens over the limit', () => post('/v1/completions', { prompt: 'x', max_tokens: 1000000 }),
     400, 'invalid_request_error', 'max_tokens'],
    ['stream of the wrong type', () => post('/v1/completions', { prompt: 'x', stream: 'yes' }),
     400, 'invalid_request_error', 'stream'],
    ['stop of the wrong type', () => post('/v1/completions', { prompt: 'x', stop: 7 }),
     400, 'invalid_request_error', 'stop'],
    ['n other than 1', () => post('/v1/completions', { prompt: 'x', n: 2 }), 400, 'invalid_request_error', 'n'],
    ['no prompt', () => post('/v1/completions', { model: 'base' }), 400, 'invalid_request_error', 'prompt'],
    ['several prompts', () => post('/v1/completions', { prompt: ['a', 'b'] }), 400, 'invalid_request_error', 'prompt'],
    ['a token id outside the vocabulary', () => post('/v1/completions', { prompt: [1, -4] }),
     400, 'invalid_request_error', 'prompt'],
    ['a prompt longer than the context', () => post('/v1/completions',
                                                    { prompt: Array(300).fill(785), max_tokens: 4 }),
     400, 'invalid_request_error'],
    ['no messages', () => post('/v1/chat/completions', { model: 'base' }), 400, 'invalid_request_error', 'messages'],
    ['a message without role', () => post('/v1/chat/completions', { messages: [{ content: 'x' }] }),
     400, 'invalid_request_error', 'messages'],
    ['an unknown role', () => post('/v1/chat/completions', { messages: [{ role: 'robot', content: 'x' }] }),
     400, 'invalid_request_error', 'messages'],
    ['model of the wrong type', () => post('/v1/completions', { model: 3, prompt: 'x' }),
     400, 'invalid_request_error', 'model'],
    ['an unknown model', () => post('/v1/completions', { model: 'gpt-4', prompt: 'x' }), 404, 'not_found_error', 'model'],
    ['an unknown patch', () => post('/v1/completions', { model: 'base+nope', prompt: 'x' }),
     404, 'not_found_error', 'model'],
    ['an unknown patch in the patch field', () => post('/v1/chat/completions',
                                                       { patch: 'nope', messages: [{ role: 'user', content: 'x' }] }),
     404, 'not_found_error', 'model'],
    ['a refused patch', () => post('/v1/completions', { model: 'base+other-base', prompt: 'x' }),
     404, 'not_found_error', 'model'],
    ['a patch name that is a path', () => post('/v1/completions', { model: 'base+../../etc/passwd', prompt: 'x' }),
     400, 'invalid_request_error', 'model'],
    ['a patch twice in a stack', () => post('/v1/completions', { model: 'base+row+row', prompt: 'x' }),
     400, 'invalid_request_error', 'model'],
    ['a body over 1 MiB', () => post('/v1/completions', { prompt: 'x'.repeat(1100000) }),
     413, 'invalid_request_error'],
    ['an unknown route', () => raw('/v1/engines'), 404, 'not_found_error'],
    ['a route with the wrong method', () => raw('/v1/completions'), 405, 'invalid_request_error'],
  ];
  for (const [what, run, status, type, param] of cases) {
    const r = await run();
    check(r.status === status && isError(r.body, type, param), `${what}: ${status}`, r);
  }
  const refused = (await raw('/v1/models')).body.refused || [];
  check(refused.some((x) => x.file === 'other-base.json' && /made for the base model/.test(x.reason)),
        'the patch for another base is listed as refused with its reason', refused);
  const c = refs.completions[1];
  const after = await complete(c, false);
  check(after.text === c.text, 'still answering correctly afterwards', { got: after.text, want: c.text });
  check((await raw('/health')).status === 200, '/health after the bad inputs');
}

async function auth() {
  const body = JSON.stringify({ prompt: 'The capital of France is', max_tokens: 2 });
  const none = await raw('/v1/completions', { method: 'POST', body });
  const wrong = await raw('/v1/completions', { method: 'POST', body,
                                               headers: { Authorization: `Bearer ${apiKey}x` } });
  const shorter = await raw('/v1/models', { headers: { Authorization: `Bearer ${apiKey.slice(1)}` } });
  const right = await raw('/v1/completions', { method: 'POST', body,
                                               headers: { Authorization: `Bearer ${apiKey}` } });
  check(none.status === 401 && isError(none.body, 'invalid_request_error'), 'no key: 401', none);
  check(wrong.status === 401 && shorter.status === 401, 'a wrong key: 401', [wrong, shorter]);
  check(right.status === 200 && right.body.choices[0].text.length > 0, 'the key: 200', right);
  const c = refs.completions[0];
  check((await complete(c, true)).text === c.text, 'the openai client with the key, streaming');
  check((await raw('/health')).status === 200, '/health needs no key');
  const bad = new OpenAI({ baseURL: `${baseURL}/v1`, apiKey: 'nope', maxRetries: 0 });
  let status = 0;
  try { await bad.models.list(); } catch (e) { status = e.status; }
  check(status === 401, 'the openai client with a wrong key gets 401', status);
}

async function metric(name) {
  const text = (await raw('/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

async function cut() {
  const before = await metric('xorpatch_requests_cancelled_total');
  const ac = new AbortController();
  const s = await client.completions.create({ prompt: 'The capital of France is', max_tokens: 900,
                                              stream: true }, { signal: ac.signal });
  let chunks = 0;
  try {
    for await (const chunk of s) {
      void chunk;
      if (++chunks === 3) ac.abort();
    }
  } catch { /* the abort */ }
  let running = 1, cancelled = before;
  for (let i = 0; i < 50 && (running !== 0 || cancelled === before); i++) {
    await new Promise((r) => setTimeout(r, 20));
    running = await metric('xorpatch_running');
    cancelled = await metric('xorpatch_requests_cancelled_total');
  }
  check(running === 0 && cancelled === before + 1, 'an abandoned stream frees its slot at once',
        { running, cancelled, before });
  const c = refs.completions[0];
  check((await complete(c, false)).text === c.text, 'answering correctly afterwards');
}

const modes = { api, load, bad, auth, cut };
try {
  await modes[mode]();
} catch (e) {
  failures++;
  console.log(`FAIL ${mode}: ${e && e.stack ? e.stack : e}`);
}
process.exit(failures ? 1 : 0);

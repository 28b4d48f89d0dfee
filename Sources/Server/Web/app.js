// SwiftGPT web chat: talks to the same-origin OpenAI-compatible API
// (GET v1/models, POST v1/chat/completions with stream + logprobs).
// Plain ES2020, no dependencies. Everything that comes from the user or
// the model is put into the page with textContent only, never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const ui = {
  messages: $('messages'), input: $('input'), send: $('send'), stop: $('stop'),
  regenerate: $('regenerate'), newChat: $('new-chat'), modelName: $('model-name'),
  settings: $('settings'), system: $('system'), temperature: $('temperature'),
  topP: $('top-p'), maxTokens: $('max-tokens'), seed: $('seed'),
  topLogprobs: $('top-logprobs'), colorTokens: $('color-tokens'),
  apiKey: $('api-key'), authNote: $('auth-note'), tokenInfo: $('token-info'),
};

const KEY_STORAGE = 'swiftgpt.apiKey';
const SETTINGS_STORAGE = 'swiftgpt.settings';

const state = {
  model: null,        // id from /v1/models
  history: [],        // [{role, content, el}] — the conversation sent to the server
  controller: null,   // AbortController of the request in flight, if any
  chatId: 0,          // bumped by "New chat" so a late finishing stream is ignored
  pinned: null,       // token span whose info panel was pinned by a click
};

// Logprob entries of each token span (kept out of the DOM).
const tokenData = new WeakMap();

// ---------- small DOM helpers ----------

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function nearBottom() {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

// Probability (from a natural-log probability) as a short percentage.
function percent(logprob) {
  const p = Math.exp(logprob) * 100;
  if (p >= 99.95) return '100%';
  if (p < 0.01) return '<0.01%';
  return p.toFixed(p < 10 ? 2 : 1) + '%';
}

// Token text with whitespace made visible, e.g. " the" -> "␣the", "\n" -> "↵".
function showToken(token) {
  if (token === '') return '∅';
  return token.replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥');
}

// ---------- settings and API key (persisted in localStorage) ----------

const persisted = ['system', 'temperature', 'topP', 'maxTokens', 'seed', 'topLogprobs'];

function loadSettings() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(SETTINGS_STORAGE)) || {}; } catch (_) { /* ignore */ }
  for (const name of persisted) {
    if (typeof saved[name] === 'string') ui[name].value = saved[name];
  }
  ui.colorTokens.checked = saved.colorTokens === true;
  ui.messages.classList.toggle('color-tokens', ui.colorTokens.checked);
  ui.apiKey.value = localStorage.getItem(KEY_STORAGE) || '';
}

function saveSettings() {
  const out = { colorTokens: ui.colorTokens.checked };
  for (const name of persisted) out[name] = ui[name].value;
  try { localStorage.setItem(SETTINGS_STORAGE, JSON.stringify(out)); } catch (_) { /* ignore */ }
}

function saveApiKey() {
  const key = ui.apiKey.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  ui.authNote.hidden = true;
  loadModel();
}

// Called on HTTP 401: open the settings and ask for a key.
function promptForKey() {
  ui.settings.open = true;
  ui.authNote.hidden = false;
  ui.apiKey.focus();
}

function apiHeaders(extra) {
  const headers = Object.assign({}, extra);
  const key = localStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

// Turns a non-2xx response into a readable message, using the OpenAI
// error body {"error": {"message", "type", "code"}} when there is one.
async function describeHttpError(res) {
  let text = '';
  try { text = await res.text(); } catch (_) { /* body unreadable */ }
  let message = `HTTP ${res.status}${res.statusText ? ' ' + res.statusText : ''}`;
  try {
    const err = JSON.parse(text).error;
    if (err) {
      message += `: ${typeof err === 'string' ? err : err.message || '(no message)'}`;
      if (err.code) message += ` [${err.code}]`;
      return message;
    }
  } catch (_) { /* not JSON */ }
  if (text.trim()) message += `: ${text.trim().slice(0, 500)}`;
  return message;
}

// ---------- model name ----------

async function loadModel() {
  ui.modelName.textContent = 'connecting…';
  try {
    const res = await fetch('v1/models', { headers: apiHeaders() });
    if (res.status === 401) {
      ui.modelName.textContent = 'API key required';
      promptForKey();
      return;
    }
    if (!res.ok) throw new Error(await describeHttpError(res));
    const list = await res.json();
    const first = Array.isArray(list.data) ? list.data[0] : null;
    state.model = first ? String(first.id) : null;
    ui.modelName.textContent = state.model || 'no model';
    ui.modelName.title = state.model ? `Model: ${state.model}` : '';
  } catch (err) {
    ui.modelName.textContent = 'offline';
    ui.modelName.title = String(err.message || err);
  }
}

// ---------- Server-Sent Events ----------

// Yields the data of each SSE event in a fetch body. Lines may be split
// across network chunks, and UTF-8 characters across chunk boundaries
// (TextDecoder with stream: true keeps the partial bytes).
async function* sseEvents(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let data = [];
  try {
    for (;;) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      const lines = buffer.split('\n');
      buffer = done ? '' : lines.pop();   // keep the unfinished last line
      for (let line of lines) {
        if (line.endsWith('\r')) line = line.slice(0, -1);
        if (line === '') {                 // blank line ends an event
          if (data.length) yield data.join('\n');
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue; // comment / keep-alive
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
      }
      if (done) {
        if (data.length) yield data.join('\n');
        return;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

// ---------- messages ----------

function addMessageEl(role) {
  const node = el('div', `message ${role}`);
  node.append(el('div', 'role', role === 'user' ? 'You' : 'Assistant'), el('div', 'content'));
  ui.messages.append(node);
  return node;
}

function addUserMessage(text) {
  const node = addMessageEl('user');
  node.querySelector('.content').textContent = text;
  state.history.push({ role: 'user', content: text, el: node });
  scrollToBottom();
}

// One span per token; entries are the logprob records the text came from.
function tokenSpan(text, entries) {
  const span = el('span', 'tok', text);
  if (entries.length) {
    tokenData.set(span, entries);
    const p = entries.reduce((acc, e) => acc * Math.exp(e.logprob), 1);
    span.style.setProperty('--p', p.toFixed(3));
    span.classList.add('has-info');
  }
  return span;
}

function buildRequest() {
  const messages = [];
  const system = ui.system.value.trim();
  if (system) messages.push({ role: 'system', content: system });
  for (const m of state.history) messages.push({ role: m.role, content: m.content });

  const body = {
    model: state.model || 'swiftgpt',
    messages,
    stream: true,
    stream_options: { include_usage: true },
    logprobs: true,
  };
  // Only send the fields the user filled in with a valid number.
  const num = (input, parse) => {
    const v = input.value.trim();
    if (v === '') return undefined;
    const n = parse(v);
    return Number.isFinite(n) ? n : undefined;
  };
  const temperature = num(ui.temperature, parseFloat);
  const topP = num(ui.topP, parseFloat);
  const maxTokens = num(ui.maxTokens, (v) => parseInt(v, 10));
  const seed = num(ui.seed, (v) => parseInt(v, 10));
  const top = num(ui.topLogprobs, (v) => parseInt(v, 10));
  if (temperature !== undefined) body.temperature = temperature;
  if (topP !== undefined) body.top_p = topP;
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  if (seed !== undefined) body.seed = seed;
  body.top_logprobs = Math.min(20, Math.max(0, top === undefined ? 5 : top));
  return body;
}

// Asks for the next assistant reply to state.history and streams it in.
async function runCompletion() {
  const chatId = state.chatId;
  const reply = addMessageEl('assistant');
  const contentEl = reply.querySelector('.content');
  reply.classList.add('streaming');
  scrollToBottom();

  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);

  const t0 = performance.now();
  let tFirst = null;      // time the first token arrived
  let text = '';          // the reply so far
  let finish = null;      // finish_reason
  let usage = null;       // usage from the final chunk
  let logprobCount = 0;   // tokens with logprobs
  let pieceCount = 0;     // content deltas (fallback token count)
  let pending = [];       // logprob entries whose text has not arrived yet
  let error = null;

  // Appends one streamed piece of text with its logprob entries.
  const addPiece = (piece, entries) => {
    const stick = nearBottom();
    if (entries.length && entries.map((e) => e.token).join('') === piece) {
      for (const e of entries) contentEl.append(tokenSpan(e.token, [e]));
    } else {
      // Token texts don't add up to the delta (e.g. a UTF-8 character
      // split across tokens): one span for the piece, with all entries.
      contentEl.append(tokenSpan(piece, entries));
    }
    if (stick) scrollToBottom();
  };

  // Handles one parsed chunk (also used for a non-streamed JSON answer).
  const handleChunk = (chunk) => {
    if (chunk.error) {
      throw new Error(chunk.error.message || JSON.stringify(chunk.error));
    }
    if (chunk.usage) usage = chunk.usage;
    const choice = Array.isArray(chunk.choices) ? chunk.choices[0] : null;
    if (!choice) return;
    const delta = choice.delta || choice.message || {};
    const piece = typeof delta.content === 'string' ? delta.content : '';
    const fresh = (choice.logprobs && choice.logprobs.content) || [];
    logprobCount += fresh.length;
    if ((piece || fresh.length) && tFirst === null) tFirst = performance.now();
    const entries = pending.concat(fresh);
    if (piece) {
      pieceCount += 1;
      text += piece;
      addPiece(piece, entries);
      pending = [];
    } else {
      pending = entries;
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  };

  try {
    const res = await fetch('v1/chat/completions', {
      method: 'POST',
      headers: apiHeaders({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
      body: JSON.stringify(buildRequest()),
      signal: controller.signal,
    });
    if (!res.ok) {
      if (res.status === 401) promptForKey();
      throw new Error(await describeHttpError(res));
    }
    const type = res.headers.get('Content-Type') || '';
    if (type.includes('application/json')) {
      handleChunk(await res.json());    // server answered without streaming
    } else {
      for await (const data of sseEvents(res.body)) {
        if (data.trim() === '[DONE]') break;
        let chunk;
        try { chunk = JSON.parse(data); } catch (_) { continue; } // skip malformed events
        handleChunk(chunk);
      }
    }
  } catch (err) {
    if (err.name === 'AbortError') finish = finish || 'stopped';
    else error = err;
  } finally {
    if (state.controller === controller) state.controller = null;
  }

  if (chatId !== state.chatId) return;   // "New chat" was pressed meanwhile

  // Text of pending entries that never got a content delta.
  if (pending.length) {
    addPiece(pending.map((e) => e.token).join(''), pending);
  }
  if (text) {
    state.history.push({ role: 'assistant', content: text, el: reply });
  }
  if (error) {
    reply.classList.add('error');
    reply.append(el('div', 'error-text', String(error.message || error)));
    finish = 'error';
  } else if (!text) {
    contentEl.append(el('span', 'muted', finish === 'stopped' ? '(stopped)' : '(empty reply)'));
  }

  // Stats: tokens, time to first token, decode speed, finish reason.
  const tEnd = performance.now();
  const tokens = usage && Number.isFinite(usage.completion_tokens)
    ? usage.completion_tokens : (logprobCount || pieceCount);
  const parts = [];
  if (!error || tokens) parts.push(`${tokens} token${tokens === 1 ? '' : 's'}`);
  if (tFirst !== null) {
    parts.push(`first token ${Math.round(tFirst - t0)} ms`);
    const seconds = (tEnd - tFirst) / 1000;
    if (tokens > 1 && seconds > 0) parts.push(`${((tokens - 1) / seconds).toFixed(1)} tok/s`);
  }
  if (usage && Number.isFinite(usage.prompt_tokens)) parts.push(`prompt ${usage.prompt_tokens}`);
  parts.push(`finish: ${finish || 'unknown'}`);
  reply.append(el('div', 'stats', parts.join(' · ')));

  reply.classList.remove('streaming');
  reply.dataset.finishReason = finish || 'unknown';
  reply.dataset.done = 'true';
  setBusy(false);
  if (nearBottom()) scrollToBottom();
}

// ---------- actions ----------

function setBusy(busy) {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy;
  ui.regenerate.disabled = busy || !state.history.some((m) => m.role === 'user');
  document.body.classList.toggle('busy', busy);
}

function send() {
  const text = ui.input.value;
  if (!text.trim() || state.controller) return;
  ui.input.value = '';
  autosize();
  hideTokenInfo(true);
  addUserMessage(text);
  runCompletion();
}

function stop() {
  if (state.controller) state.controller.abort();
}

// Re-asks the last user message, replacing whatever came after it.
function regenerate() {
  if (state.controller) return;
  let i = state.history.length - 1;
  while (i >= 0 && state.history[i].role !== 'user') i--;
  if (i < 0) return;
  const userEl = state.history[i].el;
  state.history.length = i + 1;
  while (userEl.nextSibling) userEl.nextSibling.remove();   // old reply, error notes
  hideTokenInfo(true);
  runCompletion();
}

function newChat() {
  if (state.controller) state.controller.abort();
  state.controller = null;   // the aborted stream finishes on its own, ignored
  state.chatId += 1;
  state.history = [];
  ui.messages.replaceChildren();
  hideTokenInfo(true);
  setBusy(false);
  ui.input.focus();
}

// Grows the input with its content, up to the CSS max-height.
function autosize() {
  ui.input.style.height = 'auto';
  ui.input.style.height = `${ui.input.scrollHeight}px`;
}

// ---------- token info panel ----------

function showTokenInfo(span) {
  const entries = tokenData.get(span);
  if (!entries) return;
  const box = ui.tokenInfo;
  box.replaceChildren();
  for (const e of entries) {
    const head = el('div', 'ti-head');
    head.append(el('code', 'ti-token', showToken(e.token)),
      el('span', 'ti-prob', percent(e.logprob)));
    box.append(head, el('div', 'ti-logprob', `logprob ${Number(e.logprob).toFixed(4)}`));
    const alts = Array.isArray(e.top_logprobs) ? e.top_logprobs : [];
    if (alts.length) {
      const table = el('table', 'ti-alts');
      for (const alt of alts) {
        const row = el('tr', alt.token === e.token ? 'chosen' : '');
        const bar = el('span', 'ti-bar');
        bar.style.width = `${Math.max(1, Math.exp(alt.logprob) * 100).toFixed(1)}%`;
        const barCell = el('td', 'ti-barcell');
        barCell.append(bar);
        row.append(el('td', 'ti-alt', showToken(alt.token)), barCell,
          el('td', 'ti-altp', percent(alt.logprob)));
        table.append(row);
      }
      box.append(table);
    }
  }
  // Show below the token, or above it when there is no room.
  box.hidden = false;
  const r = span.getBoundingClientRect();
  const w = box.offsetWidth;
  const h = box.offsetHeight;
  const left = Math.max(8, Math.min(r.left, window.innerWidth - w - 8));
  let top = r.bottom + 6;
  if (top + h > window.innerHeight - 8) top = Math.max(8, r.top - h - 6);
  box.style.left = `${left}px`;
  box.style.top = `${top}px`;
  document.querySelectorAll('.tok.active').forEach((s) => s.classList.remove('active'));
  span.classList.add('active');
}

function hideTokenInfo(unpin) {
  if (unpin) state.pinned = null;
  if (state.pinned) return;
  ui.tokenInfo.hidden = true;
  document.querySelectorAll('.tok.active').forEach((s) => s.classList.remove('active'));
}

// ---------- wiring ----------

ui.messages.addEventListener('mouseover', (ev) => {
  const span = ev.target.closest('.tok.has-info');
  if (span && !state.pinned) showTokenInfo(span);
});
ui.messages.addEventListener('mouseout', (ev) => {
  if (ev.target.closest('.tok.has-info') && !state.pinned) hideTokenInfo(false);
});
// Click a token to pin its panel (useful on touch screens); click again or elsewhere to close.
document.addEventListener('click', (ev) => {
  if (ui.tokenInfo.contains(ev.target)) return;
  const span = ev.target.closest('.tok.has-info');
  if (span && span !== state.pinned) {
    state.pinned = span;
    showTokenInfo(span);
  } else {
    hideTokenInfo(true);
  }
});
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') hideTokenInfo(true);
});
ui.messages.addEventListener('scroll', () => hideTokenInfo(true));

ui.input.addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    send();
  }
});
ui.input.addEventListener('input', autosize);
ui.send.addEventListener('click', send);
ui.stop.addEventListener('click', stop);
ui.regenerate.addEventListener('click', regenerate);
ui.newChat.addEventListener('click', newChat);
ui.colorTokens.addEventListener('change', () => {
  ui.messages.classList.toggle('color-tokens', ui.colorTokens.checked);
  saveSettings();
});
for (const name of persisted) ui[name].addEventListener('change', saveSettings);
ui.apiKey.addEventListener('change', saveApiKey);

loadSettings();
setBusy(false);
loadModel();
ui.input.focus();

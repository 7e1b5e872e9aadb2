// The web console: sign in with an API key, see the balance and 30 days of spending, create
// tasks for every operation with a quote first, and watch them run and play.

import './style.css';
import { Api, ApiFailure, isFinal, type ModelDetail, type Task } from './api';
import { modelColours, spendChart } from './chart';
import { dataUri, requestBody, typedUrls, type MediaInput } from './form';

const KEY_STORAGE = 'seedgate.key';
const SPEND_DAYS = 30;
const TASKS_SHOWN = 50;
const POLL_MS = 1500;
const STREAM_RETRY_MS = 2000;
const QUOTE_DELAY_MS = 300;

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing`);
  return node as T;
};

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attributes: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  node.append(...children);
  return node;
}

const usd = (amount: string) => `$${amount}`;
const when = (unixSeconds: number) => new Date(unixSeconds * 1000).toLocaleString();
const failureText = (e: unknown) =>
  e instanceof ApiFailure ? `${e.message} (${e.code})` : String(e);

let api: Api | null = null;
let models: ModelDetail[] = [];
const tasks = new Map<string, Task>();
let selected: string | null = null;
let pollTimer: number | undefined;

// ---- sign-in ----

async function signIn(key: string): Promise<void> {
  const candidate = new Api(key);
  const account = await candidate.account();
  api = candidate;
  sessionStorage.setItem(KEY_STORAGE, key);
  $('account-name').textContent = account.name;
  $('account-mode').textContent = account.mode;
  $('account-mode').className = `badge ${account.mode}`;
  $('balance').textContent = usd(account.balance_decimal);
  $('sign-in').hidden = true;
  $('dashboard').hidden = false;
  models = await candidate.models();
  fillModels(account.models);
  await Promise.all([refreshSpend(), refreshTasks()]);
  await openFromAddress();
  void followEvents();
  // The running task's elapsed time ticks between events.
  window.setInterval(() => renderDetail(), 1000);
}

function signOut(): void {
  sessionStorage.removeItem(KEY_STORAGE);
  location.reload();
}

async function refreshAccount(): Promise<void> {
  if (!api) return;
  const account = await api.account();
  $('balance').textContent = usd(account.balance_decimal);
}

// ---- spending ----

async function refreshSpend(): Promise<void> {
  if (!api) return;
  const usage = await api.usage(SPEND_DAYS);
  $('spend-total').textContent = `· ${usd(usage.total_cost_decimal)}`;
  $('chart').replaceChildren(spendChart(usage.daily, usage.start_date, usage.days));
  const colours = modelColours(usage.daily.map((d) => d.model));
  $('legend').replaceChildren(
    ...usage.by_model.map((m) =>
      h('li', {}, h('span', { class: 'swatch', style: `background:${colours.get(m.model)}` }),
        `${m.model}${m.leg ? ` (${m.leg}s)` : ''} · ${usd(m.cost_decimal)} · ${m.requests} ${m.requests === 1 ? 'task' : 'tasks'}`),
    ),
  );
}

// ---- the create form ----

const model = () => models.find((m) => m.id === $<HTMLSelectElement>('model').value);

function options(select: HTMLSelectElement, values: string[], chosen?: string): void {
  const keep = chosen ?? select.value;
  select.replaceChildren(...values.map((v) => h('option', { value: v }, v)));
  if (values.includes(keep)) select.value = keep;
}

function fillModels(allowed: string[]): void {
  const ids = models.map((m) => m.id).filter((id) => allowed.length === 0 || allowed.includes(id));
  options($<HTMLSelectElement>('model'), ids);
  modelChanged();
}

function modelChanged(): void {
  const spec = model()?.tokenlab;
  if (!spec) return;
  options($<HTMLSelectElement>('operation'), spec.operations);
  options($<HTMLSelectElement>('resolution'), spec.resolutions, spec.default_resolution);
  const durations: string[] = [];
  for (let s = spec.duration.min; s <= spec.duration.max; s++) durations.push(String(s));
  options($<HTMLSelectElement>('duration'), durations, String(spec.duration.default));
  options($<HTMLSelectElement>('aspect-ratio'), spec.aspect_ratios, '16:9');
  $('draft-option').hidden = !spec.draft;
  if (!spec.draft) $<HTMLInputElement>('draft').checked = false;
  operationChanged();
}

function operationChanged(): void {
  const operation = $<HTMLSelectElement>('operation').value;
  for (const fieldset of document.querySelectorAll<HTMLFieldSetElement>('#create-form fieldset')) {
    const shown = fieldset.dataset.operations === operation;
    fieldset.hidden = !shown;
    fieldset.disabled = !shown;
  }
  if (operation === 'video-extension') fillExtendable();
  scheduleQuote();
}

function buildMediaFields(): void {
  for (const fieldset of document.querySelectorAll<HTMLFieldSetElement>('fieldset.media')) {
    const field = fieldset.dataset.field!;
    const multiple = fieldset.dataset.multiple !== undefined;
    const file = h('input', { type: 'file', id: `${field}-file`, accept: fieldset.dataset.accept! });
    file.multiple = multiple;
    const url = multiple
      ? h('textarea', { id: `${field}-url`, rows: '2', placeholder: 'or URLs / asset://…, one per line' })
      : h('input', { id: `${field}-url`, type: 'url', placeholder: 'or a URL / asset://…' });
    fieldset.append(file, url);
  }
}

async function mediaInputs(): Promise<MediaInput[]> {
  const inputs: MediaInput[] = [];
  for (const fieldset of document.querySelectorAll<HTMLFieldSetElement>('fieldset.media')) {
    if (fieldset.hidden) continue;
    const field = fieldset.dataset.field!;
    const files = [...($<HTMLInputElement>(`${field}-file`).files ?? [])];
    const urls = typedUrls(($(`${field}-url`) as HTMLInputElement | HTMLTextAreaElement).value);
    const values = [...(await Promise.all(files.map(dataUri))), ...urls];
    inputs.push({ field, multiple: fieldset.dataset.multiple !== undefined, values });
  }
  return inputs;
}

async function currentBody(): Promise<Record<string, unknown>> {
  return requestBody({
    model: $<HTMLSelectElement>('model').value,
    operation: $<HTMLSelectElement>('operation').value,
    prompt: $<HTMLTextAreaElement>('prompt').value,
    resolution: $<HTMLSelectElement>('resolution').value,
    duration: Number($<HTMLSelectElement>('duration').value),
    aspectRatio: $<HTMLSelectElement>('aspect-ratio').value,
    generateAudio: $<HTMLInputElement>('generate-audio').checked,
    draft: $<HTMLInputElement>('draft').checked,
    media: await mediaInputs(),
    extendTaskId: $<HTMLSelectElement>('extend-task').value,
  });
}

function fillExtendable(): void {
  const done = [...tasks.values()].filter((t) => t.status === 'completed');
  const select = $<HTMLSelectElement>('extend-task');
  select.replaceChildren(
    ...done.map((t) => h('option', { value: t.id }, `${t.id} · ${t.model} · ${t.operation}`)),
  );
}

let quoteTimer: number | undefined;
let quoteGeneration = 0;

function scheduleQuote(): void {
  $<HTMLButtonElement>('submit').disabled = true;
  window.clearTimeout(quoteTimer);
  quoteTimer = window.setTimeout(() => void showQuote(), QUOTE_DELAY_MS);
}

/** Prices what the form holds; only the latest answer is shown, and only it enables Generate. */
async function showQuote(): Promise<void> {
  if (!api) return;
  const generation = ++quoteGeneration;
  const out = $('quote');
  out.className = 'muted';
  out.textContent = 'Pricing…';
  try {
    const quote = await api.quote(await currentBody());
    if (generation !== quoteGeneration) return;
    out.className = 'quote';
    out.textContent = `${quote.width}×${quote.height}, ${quote.output_seconds} s · ` +
      `${quote.tokens.billed.toLocaleString()} tokens · at most ${usd(quote.cost.amount)} (¥${quote.cost.cny})`;
    $<HTMLButtonElement>('submit').disabled = false;
  } catch (e) {
    if (generation !== quoteGeneration) return;
    out.className = 'error';
    out.textContent = failureText(e);
  }
}

async function submit(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  if (!api) return;
  const button = $<HTMLButtonElement>('submit');
  const error = $('create-error');
  button.disabled = true;
  error.hidden = true;
  try {
    const task = await api.create(await currentBody());
    tasks.set(task.id, task);
    select(task.id);
    renderTasks();
    void refreshAccount();
    schedulePoll();
  } catch (e) {
    error.textContent = failureText(e);
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
}

// ---- tasks ----

async function refreshTasks(): Promise<void> {
  if (!api) return;
  for (const task of await api.tasks(TASKS_SHOWN)) tasks.set(task.id, task);
  renderTasks();
  schedulePoll();
}

function statusBadge(task: Task): HTMLElement {
  const label = task.cancelled ? 'cancelled' : task.status;
  return h('span', { class: `status ${label}` }, label);
}

function costText(task: Task): string {
  if (task.cost) return usd(task.cost.amount);
  return isFinal(task.status) ? '$0' : `≤ ${usd(task.estimated_cost.amount)}`;
}

function renderTasks(): void {
  const ordered = [...tasks.values()].sort((a, b) => b.created_at - a.created_at || (a.id < b.id ? 1 : -1));
  $('no-tasks').hidden = ordered.length > 0;
  $('task-rows').replaceChildren(
    ...ordered.slice(0, TASKS_SHOWN).map((task) => {
      const row = h('tr', { 'data-task': task.id, class: task.id === selected ? 'selected' : '' },
        h('td', {}, statusBadge(task)),
        h('td', {}, task.model),
        h('td', {}, task.operation),
        h('td', { class: 'num' }, costText(task)),
        h('td', {}, when(task.created_at)),
      );
      row.addEventListener('click', () => select(task.id));
      return row;
    }),
  );
}

function select(id: string): void {
  selected = id;
  // Each task has an address: /console#/tasks/<id> opens it (the CLI's `generate --open`).
  if (location.hash !== `#/tasks/${id}`) history.replaceState(null, '', `#/tasks/${id}`);
  renderTasks();
  renderDetail(true);
}

/** Opens the task the address names, reading it when the list does not hold it. */
async function openFromAddress(): Promise<void> {
  const id = /^#\/tasks\/([A-Za-z0-9_-]+)$/.exec(location.hash)?.[1];
  if (!api || !id || id === selected) return;
  if (!tasks.has(id)) {
    try {
      tasks.set(id, await api.task(id));
    } catch {
      return;
    }
  }
  select(id);
  schedulePoll();
}

/** What the detail pane shows depends on these; re-rendering only when they change keeps a
 * playing video playing while the list refreshes. */
let shownState = '';

function renderDetail(force = false): void {
  const task = selected ? tasks.get(selected) : undefined;
  const pane = $('detail');
  if (!task) return;
  const state = `${task.id}/${task.status}/${task.cancelled}/${task.result?.video_url !== null}/${standing(task.id)}`;
  if (!force && state === shownState) {
    const elapsed = pane.querySelector('.elapsed');
    if (elapsed) elapsed.textContent = `${Math.round(Date.now() / 1000 - task.created_at)} s`;
    return;
  }
  shownState = state;
  const facts = h('dl', {},
    h('dt', {}, 'Status'), h('dd', {}, statusBadge(task)),
    h('dt', {}, 'Model'), h('dd', {}, task.model),
    h('dt', {}, 'Operation'), h('dd', {}, task.operation),
    h('dt', {}, 'Provider'), h('dd', {}, task.provider),
    h('dt', {}, 'Cost'), h('dd', {}, costText(task)),
    h('dt', {}, 'Created'), h('dd', {}, when(task.created_at)),
  );
  const body: Node[] = [h('h2', {}, h('code', {}, task.id)), facts];
  if (task.request?.prompt) body.push(h('p', { class: 'prompt' }, task.request.prompt));
  const result = task.result;
  if (task.status === 'completed' && result?.video_url) {
    const video = h('video', {
      id: 'player',
      controls: '',
      playsinline: '',
      preload: 'metadata',
      src: result.video_url,
    });
    if (result.last_frame_url) video.poster = result.last_frame_url;
    if (task.provider === 'sandbox') {
      body.push(h('p', { class: 'banner', id: 'sandbox-banner' },
        'Sandbox result: rendered on this server to test the flow, not by Seedance. ' +
        'A live key with a configured channel makes real videos.'));
    }
    body.push(video, h('p', { class: 'muted' },
      `${result.width}×${result.height} · ${result.duration.toFixed(2)} s · `,
      h('a', { href: result.video_url, download: `${task.id}.mp4` }, 'Download MP4')));
    if (task.draft_task_id && (task.draft_expires_at ?? 0) > Date.now() / 1000) {
      body.push(finalControls(task, task.draft_task_id, task.draft_expires_at ?? 0));
    }
  } else if (task.status === 'completed') {
    body.push(h('p', { class: 'muted' }, 'The files of this task have expired.'));
  } else if (task.status === 'failed') {
    body.push(h('p', { class: 'error' }, task.error ? `${task.error.message} (${task.error.code})` : 'Failed.'));
  } else {
    const cancel = h('button', { type: 'button', id: 'cancel' }, 'Cancel');
    cancel.addEventListener('click', () => void cancelTask(task.id));
    body.push(h('p', { class: 'running' }, h('span', { class: 'spinner' }),
      `${task.status === 'pending' ? 'Queued' : 'Generating'}${standing(task.id)} · `, h('span', { class: 'elapsed' },
        `${Math.round(Date.now() / 1000 - task.created_at)} s`)), cancel);
  }
  pane.replaceChildren(...body);
}

/** A completed draft's "Render final": its prompt, inputs, length, ratio and audio at a chosen
 * resolution, as a task of its own. */
function finalControls(task: Task, draftTaskId: string, expiresAt: number): HTMLElement {
  const spec = models.find((m) => m.id === task.model)?.tokenlab;
  const resolution = h('select', { id: 'final-resolution', 'aria-label': 'Final resolution' });
  options(resolution, spec?.resolutions ?? [], spec?.default_resolution);
  const render = h('button', { type: 'button', id: 'render-final' }, 'Render final');
  const error = h('p', { class: 'error', role: 'alert', id: 'final-error' });
  error.hidden = true;
  render.addEventListener('click', () => {
    if (!api) return;
    render.disabled = true;
    error.hidden = true;
    api.create({ model: task.model, draft_task_id: draftTaskId, resolution: resolution.value })
      .then((created) => {
        tasks.set(created.id, created);
        select(created.id);
        void refreshAccount();
        schedulePoll();
      })
      .catch((e: unknown) => {
        error.textContent = failureText(e);
        error.hidden = false;
        render.disabled = false;
      });
  });
  return h('div', { class: 'row final' },
    h('span', { class: 'muted' }, `Draft, valid until ${when(expiresAt)}`), resolution, render, error);
}

/** ` · 2 ahead · ETA ~14 s`, as far as the events said. */
function standing(id: string): string {
  const known = progress.get(id);
  if (!known) return '';
  return (known.ahead !== null ? ` · ${known.ahead} ahead` : '') +
    (known.eta !== null ? ` · ETA ~${known.eta} s` : '');
}

async function cancelTask(id: string): Promise<void> {
  if (!api) return;
  try {
    tasks.set(id, await api.cancel(id));
  } catch (e) {
    alert(failureText(e));
  }
  renderTasks();
  renderDetail();
}

/** Live status: every running task is re-read until it ends; an ending refreshes the money. */
function schedulePoll(): void {
  window.clearTimeout(pollTimer);
  // While the event stream is open it brings every change; polling only stands in for it.
  if (streaming || ![...tasks.values()].some((t) => !isFinal(t.status))) return;
  pollTimer = window.setTimeout(() => void poll(), POLL_MS);
}

async function poll(): Promise<void> {
  if (!api) return;
  let ended = false;
  const running = [...tasks.values()].filter((t) => !isFinal(t.status));
  await Promise.all(running.map(async (t) => {
    try {
      const fresh = await api!.task(t.id);
      tasks.set(fresh.id, fresh);
      ended ||= isFinal(fresh.status);
    } catch {
      // Shown as it was; the next poll tries again.
    }
  }));
  renderTasks();
  renderDetail();
  if (ended) void Promise.all([refreshAccount(), refreshSpend()]);
  schedulePoll();
}

/** Where each unfinished task stands in the queue, and its ETA, as the events said last. */
const progress = new Map<string, { ahead: number | null; eta: number | null }>();
let streaming = false;

/** Follows the key's event stream for as long as the page is open, resuming after its last
 * event when it drops; polling stands in while it is down. */
async function followEvents(): Promise<void> {
  let lastEventId: string | null = null;
  for (;;) {
    if (!api) return;
    try {
      const stream = api.events(lastEventId, (event) => {
        streaming = true;
        window.clearTimeout(pollTimer);
        lastEventId = event.id;
        const data = event.data;
        progress.set(data.task_id, { ahead: data.queue_position, eta: data.eta_seconds });
        if (data.task) tasks.set(data.task.id, data.task);
        renderTasks();
        renderDetail();
        if (isFinal(data.status)) void Promise.all([refreshAccount(), refreshSpend()]);
      });
      await stream;
    } catch {
      // Dropped or refused: polled until it is back.
    }
    streaming = false;
    schedulePoll();
    await new Promise((resume) => window.setTimeout(resume, STREAM_RETRY_MS));
  }
}

// ---- start ----

function start(): void {
  buildMediaFields();
  $('sign-in-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const error = $('sign-in-error');
    error.hidden = true;
    signIn($<HTMLInputElement>('key').value.trim()).catch((e) => {
      error.textContent = failureText(e);
      error.hidden = false;
    });
  });
  $('sign-out').addEventListener('click', signOut);
  $('model').addEventListener('change', modelChanged);
  $('operation').addEventListener('change', operationChanged);
  const form = $<HTMLFormElement>('create-form');
  form.addEventListener('input', (event) => {
    if (event.target !== $('model') && event.target !== $('operation')) scheduleQuote();
  });
  form.addEventListener('submit', (event) => void submit(event));
  window.addEventListener('hashchange', () => void openFromAddress());
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch(() => sessionStorage.removeItem(KEY_STORAGE));
  }
}

start();

// The web console, a playground: sign in with an API key; the form on the left prices and
// creates tasks for every operation, the result plays on the right, past tasks fill a gallery
// below, and spending has a view of its own. Every task has an address (#/tasks/<id>), can
// refill the form and can be copied as code.

import './style.css';
import { Api, ApiFailure, isFinal, type ModelDetail, type Task, type TaskFilter } from './api';
import { modelColours, spendChart } from './chart';
import {
  clipSeconds, dataUri, fieldLimits, fileSize, requestBody, typedUrls,
  type MediaInput, type Picked,
} from './form';
import { marker, snippet, taskBody, type Body, type LocalFile, type SnippetKind } from './snippets';

const KEY_STORAGE = 'seedgate.key';
const THEME_STORAGE = 'seedgate.theme';
const SPEND_DAYS = 30;
const PAGE_SIZE = 24;
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

function button(label: string, attributes: Record<string, string>, onClick: () => void): HTMLButtonElement {
  const node = h('button', { type: 'button', ...attributes }, label);
  node.addEventListener('click', onClick);
  return node;
}

const usd = (amount: string) => `$${amount}`;
const when = (unixSeconds: number) => new Date(unixSeconds * 1000).toLocaleString();
const failureText = (e: unknown) =>
  e instanceof ApiFailure ? `${e.message} (${e.code})` : String(e);

let api: Api | null = null;
let models: ModelDetail[] = [];
/** Every task the page has read, by id. */
const tasks = new Map<string, Task>();
let selected: string | null = null;
let pollTimer: number | undefined;

// ---- theme ----

const darkScheme = window.matchMedia('(prefers-color-scheme: dark)');

/** `system` follows the browser; the choice is remembered in this browser. */
function applyTheme(choice: string): void {
  localStorage.setItem(THEME_STORAGE, choice);
  const dark = choice === 'dark' || (choice === 'system' && darkScheme.matches);
  document.documentElement.dataset.theme = dark ? 'dark' : 'light';
}

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
  await Promise.all([refreshSpend(), loadGallery()]);
  await route();
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

// ---- views ----

/** The address picks the view: `#/usage`, `#/tasks/<id>`, or the playground. */
async function route(): Promise<void> {
  const usage = location.hash === '#/usage';
  $('usage').hidden = !usage;
  $('playground').hidden = usage;
  for (const [id, current] of [['nav-playground', !usage], ['nav-usage', usage]] as const) {
    if (current) $(id).setAttribute('aria-current', 'page');
    else $(id).removeAttribute('aria-current');
  }
  if (usage) {
    await refreshSpend();
    return;
  }
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
  const filter = $<HTMLSelectElement>('filter-model');
  filter.replaceChildren(h('option', { value: '' }, 'All'), ...ids.map((id) => h('option', { value: id }, id)));
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
  renderPicks();
  scheduleQuote();
}

/** The local files chosen for each media field, in order. */
const picks = new Map<string, Picked[]>();

const mediaFieldsets = () => document.querySelectorAll<HTMLFieldSetElement>('fieldset.media');

function buildMediaFields(): void {
  for (const fieldset of mediaFieldsets()) {
    const field = fieldset.dataset.field!;
    const kind = fieldset.dataset.kind!;
    const multiple = fieldset.dataset.multiple !== undefined;
    picks.set(field, []);
    const file = h('input', { type: 'file', id: `${field}-file`, accept: fieldset.dataset.accept! });
    file.multiple = multiple;
    file.addEventListener('change', () => {
      const chosen = [...(file.files ?? [])];
      // Cleared so that the same file can be chosen again after a remove.
      file.value = '';
      void addPicks(field, kind, chosen);
    });
    const url = multiple
      ? h('textarea', { id: `${field}-url`, rows: '2', placeholder: 'https://… or asset://…, one per line' })
      : h('input', { id: `${field}-url`, type: 'url', placeholder: 'https://… or asset://…' });
    url.addEventListener('input', () => renderPicks());
    fieldset.append(
      h('p', { class: 'limits muted', id: `${field}-limits` }),
      h('label', {}, multiple ? 'Files' : 'File', file),
      h('ul', { class: 'picks', id: `${field}-picks` }),
      h('label', {}, multiple ? 'Or URLs' : 'Or a URL', url),
      h('p', { class: 'error', id: `${field}-problem`, role: 'alert', hidden: '' }),
    );
  }
}

async function addPicks(field: string, kind: string, files: File[]): Promise<void> {
  const added = files.map((file) => ({ file, preview: URL.createObjectURL(file), duration: null as number | null }));
  picks.get(field)!.push(...added);
  renderPicks();
  scheduleQuote();
  if (kind === 'image') return;
  await Promise.all(added.map(async (pick) => {
    pick.duration = await clipSeconds(pick.preview, kind);
  }));
  renderPicks();
}

function removePick(field: string, pick: Picked): void {
  const list = picks.get(field)!;
  list.splice(list.indexOf(pick), 1);
  URL.revokeObjectURL(pick.preview);
  renderPicks();
  scheduleQuote();
  $(`${field}-file`).focus();
}

/** Each shown media field: its limits for the chosen model, a preview of every file with a
 * remove button, and what breaks the limits before the server is asked. */
function renderPicks(): void {
  const spec = model()?.tokenlab;
  if (!spec) return;
  for (const fieldset of mediaFieldsets()) {
    if (fieldset.hidden) continue;
    const field = fieldset.dataset.field!;
    const kind = fieldset.dataset.kind!;
    const limits = fieldLimits(field, kind, fieldset.dataset.multiple !== undefined, spec);
    $(`${field}-limits`).textContent = limits.text;
    const list = picks.get(field)!;
    $(`${field}-picks`).replaceChildren(...list.map((pick) => {
      const thumb = kind === 'image'
        ? h('img', { src: pick.preview, alt: '' })
        : kind === 'video'
          ? h('video', { src: pick.preview, muted: '', preload: 'metadata', 'aria-hidden': 'true' })
          : h('span', { class: 'audio-thumb', 'aria-hidden': 'true' }, '♪');
      const facts = [fileSize(pick.file.size)];
      if (pick.duration !== null) facts.push(`${pick.duration.toFixed(1)} s`);
      const outside = limits.clip && pick.duration !== null &&
        (pick.duration < limits.clip.min || pick.duration > limits.clip.max);
      return h('li', { class: outside ? 'pick outside' : 'pick' }, thumb,
        h('span', {}, h('strong', {}, pick.file.name), ` · ${facts.join(' · ')}`,
          outside ? h('span', { class: 'error' }, ` · outside ${limits.clip!.min}–${limits.clip!.max} s`) : ''),
        button('Remove', { class: 'secondary', 'aria-label': `Remove ${pick.file.name}` },
          () => removePick(field, pick)));
    }));
    const typed = typedUrls(($(`${field}-url`) as HTMLInputElement | HTMLTextAreaElement).value).length;
    const problem = $(`${field}-problem`);
    problem.hidden = list.length + typed <= limits.most;
    problem.textContent = `${list.length + typed} given; ${model()!.id} takes at most ${limits.most}.`;
  }
}

/** The media fields the shown operation takes. In code, local files stand as markers. */
async function mediaInputs(forCode: boolean): Promise<{ inputs: MediaInput[]; files: LocalFile[] }> {
  const inputs: MediaInput[] = [];
  const files: LocalFile[] = [];
  for (const fieldset of mediaFieldsets()) {
    if (fieldset.hidden) continue;
    const field = fieldset.dataset.field!;
    const chosen = picks.get(field)!.map((p) => p.file);
    const local = chosen.map((file) => ({ field, name: file.name }));
    files.push(...local);
    const urls = typedUrls(($(`${field}-url`) as HTMLInputElement | HTMLTextAreaElement).value);
    const inline = forCode ? local.map(marker) : await Promise.all(chosen.map(dataUri));
    inputs.push({ field, multiple: fieldset.dataset.multiple !== undefined, values: [...inline, ...urls] });
  }
  return { inputs, files };
}

async function formBody(forCode = false): Promise<{ body: Body; files: LocalFile[] }> {
  const { inputs, files } = await mediaInputs(forCode);
  const seed = $<HTMLInputElement>('seed').value.trim();
  const body = requestBody({
    model: $<HTMLSelectElement>('model').value,
    operation: $<HTMLSelectElement>('operation').value,
    prompt: $<HTMLTextAreaElement>('prompt').value,
    resolution: $<HTMLSelectElement>('resolution').value,
    duration: Number($<HTMLSelectElement>('duration').value),
    aspectRatio: $<HTMLSelectElement>('aspect-ratio').value,
    generateAudio: $<HTMLInputElement>('generate-audio').checked,
    draft: $<HTMLInputElement>('draft').checked,
    media: inputs,
    extendTaskId: $<HTMLSelectElement>('extend-task').value,
  });
  if (seed !== '') body.seed = Number(seed);
  return { body, files };
}

function fillExtendable(): void {
  const done = [...tasks.values()].filter((t) => t.status === 'completed');
  const select = $<HTMLSelectElement>('extend-task');
  options(select, done.map((t) => t.id));
  for (const option of select.options) {
    const task = tasks.get(option.value)!;
    option.textContent = `${task.id} · ${task.model} · ${task.operation}`;
  }
}

/** Puts a select on `value`, adding it when the select lacks it (a length the model's range
 * does not list, such as -1). */
function setSelect(id: string, value: string): void {
  const select = $<HTMLSelectElement>(id);
  if (![...select.options].some((o) => o.value === value)) select.append(h('option', { value }, value));
  select.value = value;
}

/** "Use these settings": the form takes the task's model, operation, prompt, settings and
 * every input it can (inline files are not kept by the server, so they are asked for again). */
function useSettings(task: Task): void {
  const request = task.request;
  if (!request) return;
  setSelect('model', task.model);
  modelChanged();
  setSelect('operation', task.operation);
  operationChanged();
  $<HTMLTextAreaElement>('prompt').value = request.prompt ?? '';
  if (!request.draft) setSelect('resolution', request.resolution);
  setSelect('duration', String(request.duration));
  setSelect('aspect-ratio', request.aspect_ratio);
  $<HTMLInputElement>('generate-audio').checked = request.generate_audio;
  $<HTMLInputElement>('draft').checked = request.draft;
  $<HTMLInputElement>('seed').value = request.seed === null ? '' : String(request.seed);
  for (const [field, list] of picks) {
    for (const pick of list) URL.revokeObjectURL(pick.preview);
    picks.set(field, []);
    const url = document.getElementById(`${field}-url`) as HTMLInputElement | null;
    if (url) url.value = '';
  }
  let inline = 0;
  for (const input of request.inputs ?? []) {
    if (input.source === 'task' && input.url) {
      setSelect('extend-task', input.url);
    } else if (input.url) {
      const url = $<HTMLInputElement>(`${input.field}-url`);
      url.value = url.value ? `${url.value}\n${input.url}` : input.url;
    } else {
      inline += 1;
    }
  }
  const note = $('refill-note');
  note.textContent = `Settings of ${task.id}.` + (inline > 0
    ? ` Its ${inline} local ${inline === 1 ? 'file was' : 'files were'} sent inline and not kept: choose ${inline === 1 ? 'it' : 'them'} again.`
    : '');
  note.hidden = false;
  renderPicks();
  scheduleQuote();
  $('create').scrollIntoView({ block: 'nearest' });
  $('prompt').focus();
}

let quoteTimer: number | undefined;
let quoteGeneration = 0;
/** Ctrl/⌘+Enter before the quote arrives generates as soon as it does. */
let generateWhenPriced = false;

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
    const quote = await api.quote((await formBody()).body);
    if (generation !== quoteGeneration) return;
    out.className = 'quote';
    out.textContent = `${quote.width}×${quote.height}, ${quote.output_seconds} s · ` +
      `${quote.tokens.billed.toLocaleString()} tokens · at most ${usd(quote.cost.amount)} (¥${quote.cost.cny})`;
    $<HTMLButtonElement>('submit').disabled = false;
    if (generateWhenPriced) $<HTMLFormElement>('create-form').requestSubmit();
  } catch (e) {
    if (generation !== quoteGeneration) return;
    // An empty prompt is where every form starts, not a mistake.
    const unwritten = e instanceof ApiFailure && e.param === 'prompt' && !$<HTMLTextAreaElement>('prompt').value.trim();
    out.className = unwritten ? 'muted' : 'error';
    out.textContent = unwritten ? 'Write a prompt to see the price.' : failureText(e);
  } finally {
    generateWhenPriced = false;
  }
}

async function submit(event: SubmitEvent): Promise<void> {
  event.preventDefault();
  const submitButton = $<HTMLButtonElement>('submit');
  if (!api || submitButton.disabled) return;
  const error = $('create-error');
  submitButton.disabled = true;
  error.hidden = true;
  try {
    const task = await api.create((await formBody()).body);
    taskCreated(task);
  } catch (e) {
    error.textContent = failureText(e);
    error.hidden = false;
  } finally {
    submitButton.disabled = false;
  }
}

function taskCreated(task: Task): void {
  tasks.set(task.id, task);
  showInGallery(task);
  select(task.id);
  void refreshAccount();
  schedulePoll();
}

// ---- code ----

async function showSnippet(kind: SnippetKind, of: 'form' | Task): Promise<void> {
  let text: string;
  let hint = 'The key is read from SEEDGATE_API_KEY.';
  if (of === 'form') {
    const { body, files } = await formBody(true);
    text = snippet(kind, location.origin, body, files);
  } else {
    const { body, inline } = taskBody(of);
    text = snippet(kind, location.origin, body);
    if (inline > 0) hint += ` ${of.id} sent ${inline} local ${inline === 1 ? 'file' : 'files'} inline; the server did not keep ${inline === 1 ? 'it' : 'them'}, so the code leaves ${inline === 1 ? 'it' : 'them'} out.`;
  }
  const names: Record<SnippetKind, string> = { curl: 'curl', cli: 'seedgate CLI', python: 'Python' };
  $('snippet-title').textContent = `${of === 'form' ? 'This form' : of.id} as ${names[kind]}`;
  $('snippet-hint').textContent = hint;
  $('snippet').textContent = text;
  $('snippet-copied').textContent = '';
  $<HTMLDialogElement>('snippet-dialog').showModal();
}

async function copySnippet(): Promise<void> {
  const status = $('snippet-copied');
  try {
    await navigator.clipboard.writeText($('snippet').textContent ?? '');
    status.textContent = 'Copied.';
  } catch {
    status.textContent = 'This browser refused the clipboard: select the text and copy it.';
  }
}

// ---- the gallery ----

const gallery = {
  filter: { status: '', model: '' } as TaskFilter,
  /** The cursor each page was read from; the first page has none. */
  cursors: [null] as (string | null)[],
  page: 0,
  ids: [] as string[],
  hasMore: false,
};

async function loadGallery(): Promise<void> {
  if (!api) return;
  const page = await api.tasks(PAGE_SIZE, gallery.filter, gallery.cursors[gallery.page]);
  for (const task of page.data) tasks.set(task.id, task);
  gallery.ids = page.data.map((t) => t.id);
  gallery.hasMore = page.has_more;
  gallery.cursors[gallery.page + 1] = page.next_cursor;
  renderGallery();
  schedulePoll();
}

function filterChanged(): void {
  gallery.filter = {
    status: $<HTMLSelectElement>('filter-status').value,
    model: $<HTMLSelectElement>('filter-model').value,
  };
  gallery.cursors = [null];
  gallery.page = 0;
  void loadGallery();
}

function turnPage(by: number): void {
  gallery.page += by;
  void loadGallery();
}

const matchesFilter = (task: Task) =>
  (!gallery.filter.status || gallery.filter.status === task.status) &&
  (!gallery.filter.model || gallery.filter.model === task.model);

/** A task new to the page goes first on the newest page; a known one is redrawn in place. */
function showInGallery(task: Task): void {
  const known = gallery.ids.includes(task.id);
  if (!known && gallery.page === 0 && matchesFilter(task)) {
    gallery.ids.unshift(task.id);
    if (gallery.ids.length > PAGE_SIZE) {
      gallery.ids.length = PAGE_SIZE;
      gallery.hasMore = true;
    }
  }
  if (!known) {
    if (gallery.ids.includes(task.id)) renderGallery();
    return;
  }
  // Only its own tile changes, so the rest (and the keyboard's place among them) stays.
  const shown = $('gallery').querySelector<HTMLElement>(`[data-task="${task.id}"]`);
  if (!shown) return;
  const focused = document.activeElement === shown;
  const redrawn = tile(task);
  shown.closest('li')?.replaceWith(redrawn);
  if (focused) redrawn.querySelector<HTMLElement>('[data-task]')?.focus();
}

function statusBadge(task: Task): HTMLElement {
  const label = task.cancelled ? 'cancelled' : task.status;
  return h('span', { class: `status ${label}` }, label);
}

function costText(task: Task): string {
  if (task.cost) return usd(task.cost.amount);
  return isFinal(task.status) ? '$0' : `≤ ${usd(task.estimated_cost.amount)}`;
}

function tile(task: Task): HTMLElement {
  const frame = task.result?.last_frame_url;
  const thumb = frame
    ? h('img', { src: frame, alt: '', loading: 'lazy' })
    : h('span', { class: 'no-thumb' }, task.status === 'completed' ? 'expired' : task.operation);
  const link = h('a', { href: `#/tasks/${task.id}`, class: 'tile', 'data-task': task.id },
    h('span', { class: 'thumb' }, thumb),
    h('span', { class: 'tile-prompt' }, task.request?.prompt || `(${task.operation})`),
    h('span', { class: 'tile-meta' }, statusBadge(task), ` ${task.model} · ${costText(task)}`),
  );
  if (task.id === selected) link.setAttribute('aria-current', 'true');
  return h('li', {}, link);
}

function renderGallery(): void {
  const shown = gallery.ids.map((id) => tasks.get(id)).filter((t): t is Task => t !== undefined);
  // A redraw keeps the keyboard where it was.
  const focused = (document.activeElement as HTMLElement | null)?.closest<HTMLElement>('#gallery [data-task]')?.dataset.task;
  $('gallery').replaceChildren(...shown.map(tile));
  if (focused) $('gallery').querySelector<HTMLElement>(`[data-task="${focused}"]`)?.focus();
  $('no-tasks').hidden = shown.length > 0;
  $('no-tasks').textContent = gallery.filter.status || gallery.filter.model
    ? 'No tasks match these filters.' : 'No tasks yet.';
  $<HTMLButtonElement>('page-newer').disabled = gallery.page === 0;
  $<HTMLButtonElement>('page-older').disabled = !gallery.hasMore;
  $('page-number').textContent = `Page ${gallery.page + 1}`;
}

// ---- the result ----

function select(id: string): void {
  selected = id;
  // Each task has an address: /console#/tasks/<id> opens it (the CLI's `generate --open`).
  if (location.hash !== `#/tasks/${id}`) history.replaceState(null, '', `#/tasks/${id}`);
  renderGallery();
  renderDetail(true);
}

/** What cancelling each task came to, shown beside it. */
const cancelNotes = new Map<string, { text: string; error: boolean }>();

/** What the detail pane shows depends on these; re-rendering only when they change keeps a
 * playing video playing while the list refreshes. */
let shownState = '';

function renderDetail(force = false): void {
  const task = selected ? tasks.get(selected) : undefined;
  const pane = $('detail');
  if (!task) return;
  const note = cancelNotes.get(task.id);
  const state = `${task.id}/${task.status}/${task.cancelled}/${task.result?.video_url !== null}/${standing(task.id)}/${note?.text}`;
  if (!force && state === shownState) {
    const elapsed = pane.querySelector('.elapsed');
    if (elapsed) elapsed.textContent = `${Math.round(Date.now() / 1000 - task.created_at)} s`;
    return;
  }
  const focused = document.activeElement instanceof HTMLElement && pane.contains(document.activeElement)
    ? document.activeElement.id : '';
  shownState = state;
  const body: Node[] = [h('h2', {}, 'Result ', h('code', {}, task.id))];
  body.push(...outcome(task));
  if (note) body.push(h('p', { class: note.error ? 'error' : 'note', id: 'cancel-note', role: 'status' }, note.text));
  if (task.request?.prompt) body.push(h('p', { class: 'prompt' }, task.request.prompt));
  body.push(facts(task), taskActions(task));
  pane.replaceChildren(...body);
  if (focused) document.getElementById(focused)?.focus();
}

function facts(task: Task): HTMLElement {
  const request = task.request;
  const rows: [string, Node | string][] = [
    ['Status', statusBadge(task)],
    ['Model', task.model],
    ['Operation', task.operation],
    ['Provider', task.provider],
    ['Cost', costText(task)],
    ['Created', when(task.created_at)],
  ];
  if (request) {
    rows.push(['Settings', `${request.draft ? 'draft' : request.resolution} · ${request.duration} s · ` +
      `${request.aspect_ratio} · ${request.generate_audio ? 'audio' : 'no audio'}` +
      (request.seed !== null ? ` · seed ${request.seed}` : '')]);
    for (const input of request.inputs ?? []) {
      const measures = [input.mime, input.bytes ? fileSize(input.bytes) : undefined,
        input.width ? `${input.width}×${input.height}` : undefined,
        input.duration ? `${input.duration.toFixed(1)} s` : undefined].filter(Boolean).join(' · ');
      rows.push([input.field, input.url ?? `inline ${input.kind} · ${measures}`]);
    }
  }
  return h('dl', {}, ...rows.flatMap(([term, value]) => [h('dt', {}, term), h('dd', {}, value)]));
}

/** The video, the failure, or where the task stands (with Cancel while it can succeed). */
function outcome(task: Task): Node[] {
  const result = task.result;
  if (task.status === 'completed' && result?.video_url) {
    const video = h('video', {
      id: 'player', controls: '', playsinline: '', preload: 'metadata', src: result.video_url,
      'aria-label': `Video of ${task.id}`,
    });
    if (result.last_frame_url) video.poster = result.last_frame_url;
    const shown: Node[] = [];
    if (task.provider === 'sandbox') {
      shown.push(h('p', { class: 'banner', id: 'sandbox-banner' },
        'Sandbox result: rendered on this server to test the flow, not by Seedance. ' +
        'A live key with a configured channel makes real videos.'));
    }
    shown.push(video, h('p', { class: 'muted' },
      `${result.width}×${result.height} · ${result.duration.toFixed(2)} s · `,
      h('a', { href: result.video_url, download: `${task.id}.mp4` }, 'Download MP4')));
    if (task.draft_task_id && (task.draft_expires_at ?? 0) > Date.now() / 1000) {
      shown.push(finalControls(task, task.draft_task_id, task.draft_expires_at ?? 0));
    }
    return shown;
  }
  if (task.status === 'completed') return [h('p', { class: 'muted' }, 'The files of this task have expired.')];
  if (task.status === 'failed') {
    if (task.cancelled) return [h('p', { class: 'muted' }, 'Cancelled.')];
    return [h('p', { class: 'error' }, task.error ? `${task.error.message} (${task.error.code})` : 'Failed.')];
  }
  const running: Node[] = [h('p', { class: 'running' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }),
    `${task.status === 'pending' ? 'Queued' : 'Generating'}${standing(task.id)} · `,
    h('span', { class: 'elapsed' }, `${Math.round(Date.now() / 1000 - task.created_at)} s`))];
  // Only a task that has not started can be withdrawn; a started one is refused.
  if (task.status === 'pending') {
    const cancelling = cancelNotes.get(task.id)?.text === 'Cancelling…';
    const cancel = button('Cancel', { id: 'cancel', class: 'secondary' }, () => void cancelTask(task.id));
    cancel.disabled = cancelling;
    running.push(cancel);
  }
  return running;
}

function taskActions(task: Task): HTMLElement {
  const actions = h('div', { class: 'row task-actions' });
  if (task.request && !task.request.draft_task_id) {
    actions.append(button('Use these settings', { id: 'use-settings' }, () => useSettings(task)));
  }
  const copy = h('span', { class: 'copy-as', role: 'group', 'aria-label': `Copy ${task.id} as` }, 'Copy as');
  for (const [kind, label] of [['curl', 'curl'], ['cli', 'CLI'], ['python', 'Python']] as const) {
    copy.append(' ', button(label, { class: 'secondary', 'data-snippet': kind, 'data-of': 'task' },
      () => void showSnippet(kind, task)));
  }
  actions.append(copy);
  return actions;
}

/** A completed draft's "Render final": its prompt, inputs, length, ratio and audio at a chosen
 * resolution, as a task of its own. */
function finalControls(task: Task, draftTaskId: string, expiresAt: number): HTMLElement {
  const spec = models.find((m) => m.id === task.model)?.tokenlab;
  const resolution = h('select', { id: 'final-resolution', 'aria-label': 'Final resolution' });
  options(resolution, spec?.resolutions ?? [], spec?.default_resolution);
  const error = h('p', { class: 'error', role: 'alert', id: 'final-error' });
  error.hidden = true;
  const render = button('Render final', { id: 'render-final' }, () => {
    if (!api) return;
    render.disabled = true;
    error.hidden = true;
    api.create({ model: task.model, draft_task_id: draftTaskId, resolution: resolution.value })
      .then(taskCreated)
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
  cancelNotes.set(id, { text: 'Cancelling…', error: false });
  renderDetail();
  try {
    const task = await api.cancel(id);
    tasks.set(id, task);
    cancelNotes.set(id, { text: `Cancelled. ${task.cost ? `Charged ${usd(task.cost.amount)}.` : 'Nothing was charged.'}`, error: false });
    showInGallery(task);
    void refreshAccount();
  } catch (e) {
    cancelNotes.set(id, { text: `Not cancelled: ${failureText(e)}`, error: true });
  }
  renderDetail();
}

// ---- live status ----

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
  renderGallery();
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
        if (data.task) {
          tasks.set(data.task.id, data.task);
          showInGallery(data.task);
        }
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
  const theme = $<HTMLSelectElement>('theme');
  theme.value = localStorage.getItem(THEME_STORAGE) ?? 'system';
  applyTheme(theme.value);
  theme.addEventListener('change', () => applyTheme(theme.value));
  darkScheme.addEventListener('change', () => applyTheme(theme.value));
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
  form.addEventListener('keydown', (event) => {
    if (event.key !== 'Enter' || !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    if ($<HTMLButtonElement>('submit').disabled) generateWhenPriced = true;
    else form.requestSubmit();
  });
  for (const copy of form.querySelectorAll<HTMLButtonElement>('[data-snippet]')) {
    copy.addEventListener('click', () => void showSnippet(copy.dataset.snippet as SnippetKind, 'form'));
  }
  $('snippet-copy').addEventListener('click', () => void copySnippet());
  $('snippet-close').addEventListener('click', () => $<HTMLDialogElement>('snippet-dialog').close());
  $('filter-status').addEventListener('change', filterChanged);
  $('filter-model').addEventListener('change', filterChanged);
  $('page-newer').addEventListener('click', () => turnPage(-1));
  $('page-older').addEventListener('click', () => turnPage(1));
  window.addEventListener('hashchange', () => void route());
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) {
    signIn(saved).catch(() => sessionStorage.removeItem(KEY_STORAGE));
  }
}

start();

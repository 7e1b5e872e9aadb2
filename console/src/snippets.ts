// A task's request as a create body, and any create body as code a person can run: curl,
// the seedgate CLI, or Python. The key is read from SEEDGATE_API_KEY, never written out.

import type { Task } from './api';

export type SnippetKind = 'curl' | 'cli' | 'python';

export type Body = Record<string, unknown>;

/** Media fields that hold several values. */
const LIST_FIELDS = new Set(['reference_images', 'video_urls', 'audio_urls']);

/** A local file of the form: sent inline, so code names it instead of carrying its bytes. */
export interface LocalFile {
  field: string;
  name: string;
}

/** The create body that makes the same job as `task`, and the inputs it could not carry
 * (inline files, whose bytes the server does not keep). */
export function taskBody(task: Task): { body: Body; inline: number } {
  const request = task.request;
  if (!request) return { body: { model: task.model, operation: task.operation }, inline: 0 };
  if (request.draft_task_id) {
    return {
      body: { model: task.model, draft_task_id: request.draft_task_id, resolution: request.resolution },
      inline: 0,
    };
  }
  const body: Body = { model: task.model, operation: task.operation };
  if (request.prompt) body.prompt = request.prompt;
  if (request.draft) {
    body.draft = true;
  } else {
    body.resolution = request.resolution;
  }
  body.duration = request.duration;
  body.aspect_ratio = request.aspect_ratio;
  body.generate_audio = request.generate_audio;
  if (request.seed !== null && request.seed !== undefined) body.seed = request.seed;
  if (request.watermark) body.watermark = true;
  if (request.output_format && request.output_format !== 'mp4') body.output_format = request.output_format;
  let inline = 0;
  for (const input of request.inputs ?? []) {
    if (!input.url) {
      inline += 1;
      continue;
    }
    if (LIST_FIELDS.has(input.field)) {
      body[input.field] = [...((body[input.field] as string[] | undefined) ?? []), input.url];
    } else {
      body[input.field] = input.url;
    }
  }
  return { body, inline };
}

/** A string as one shell word. */
export const shellWord = (text: string): string =>
  /^[A-Za-z0-9_./:=@%+,-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;

/** A JSON value as a Python literal. */
function python(value: unknown, indent: string): string {
  if (value === null || value === undefined) return 'None';
  if (value === true) return 'True';
  if (value === false) return 'False';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return JSON.stringify(value);
  const inner = `${indent}    `;
  if (Array.isArray(value)) {
    return `[${value.map((v) => python(v, inner)).join(', ')}]`;
  }
  const entries = Object.entries(value as Body).map(
    ([key, v]) => `${inner}${JSON.stringify(key)}: ${python(v, inner)},`,
  );
  return `{\n${entries.join('\n')}\n${indent}}`;
}

/** Where the body stands for local files, the code says so in its own comment syntax. */
function localFilesNote(files: LocalFile[], comment: string): string {
  if (files.length === 0) return '';
  const names = files.map((f) => `${f.name} (${f.field})`).join(', ');
  return `${comment} Local files go inline as data: URIs; put each in place of its marker: ${names}\n`;
}

function curl(origin: string, body: Body, files: LocalFile[]): string {
  return localFilesNote(files, '#') +
    `curl -sS -X POST ${shellWord(`${origin}/v1/videos/generations`)} \\\n` +
    `  -H "Authorization: Bearer $SEEDGATE_API_KEY" \\\n` +
    `  -H 'Content-Type: application/json' \\\n` +
    `  -d ${shellWord(JSON.stringify(body))}\n`;
}

/** `seedgate generate` takes local files by path, so the CLI needs no marker. */
function cli(origin: string, body: Body, files: LocalFile[]): string {
  const args: string[] = ['seedgate', 'generate', '--url', origin, '--model', String(body.model)];
  const flag = (name: string, value: unknown) => {
    if (value !== undefined && value !== null) args.push(`--${name}`, String(value));
  };
  if (body.draft_task_id) {
    flag('final', body.draft_task_id);
    flag('resolution', body.resolution);
  } else {
    flag('operation', body.operation);
    flag('prompt', body.prompt);
    flag('resolution', body.resolution);
    flag('duration', body.duration);
    flag('aspect-ratio', body.aspect_ratio);
    flag('seed', body.seed);
    flag('output-format', body.output_format);
    if (body.generate_audio === false) args.push('--no-audio');
    if (body.draft) args.push('--draft');
    const local = new Map(files.map((f) => [marker(f), f.name]));
    const media: [string, string][] = [
      ['image', 'image_url'], ['image', 'start_image'], ['image', 'end_image'],
      ['image', 'reference_images'], ['video', 'video_url'], ['video', 'video_urls'],
      ['audio', 'audio_urls'], ['extend', 'task_id'],
    ];
    for (const [name, field] of media) {
      const value = body[field];
      for (const item of Array.isArray(value) ? value : value === undefined ? [] : [value]) {
        flag(name, local.get(String(item)) ?? item);
      }
    }
  }
  return `# export SEEDGATE_API_KEY=sg_…\n${args.map(shellWord).join(' ')}\n`;
}

function pythonCode(origin: string, body: Body, files: LocalFile[]): string {
  return localFilesNote(files, '#') +
    'import os\n\nimport requests\n\n' +
    'response = requests.post(\n' +
    `    ${JSON.stringify(`${origin}/v1/videos/generations`)},\n` +
    '    headers={"Authorization": f"Bearer {os.environ[\'SEEDGATE_API_KEY\']}"},\n' +
    `    json=${python(body, '    ')},\n` +
    ')\n' +
    'response.raise_for_status()\n' +
    'task = response.json()\n' +
    'print(task["id"], task["poll_url"])\n';
}

/** What stands in the body for a local file's data: URI. */
export const marker = (file: LocalFile): string => `<data: URI of ${file.name}>`;

export function snippet(kind: SnippetKind, origin: string, body: Body, files: LocalFile[] = []): string {
  switch (kind) {
    case 'curl':
      return curl(origin, body, files);
    case 'cli':
      return cli(origin, body, files);
    case 'python':
      return pythonCode(origin, body, files);
  }
}

// The API reference: this server's /openapi.json rendered by the bundled Redoc, with curl
// examples written for the host the page was loaded from.

declare const Redoc: {
  init(spec: object, options: object, element: HTMLElement | null, callback?: (error?: unknown) => void): void;
};

interface Example {
  summary?: string;
  value?: unknown;
}

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  requestBody?: { content?: Record<string, { examples?: Record<string, Example> }> };
  'x-codeSamples'?: { lang: string; label: string; source: string }[];
}

type Spec = { servers?: { url: string }[]; paths: Record<string, Record<string, Operation>> };

const here = location.origin;

function curlPost(path: string, body: unknown): string {
  // Inside single quotes the shell ends the string at a quote, so each one is closed, escaped
  // and reopened.
  const json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
  return [
    `curl -X POST "${here}${path}" \\`,
    '  -H "Authorization: Bearer $SEEDGATE_API_KEY" \\',
    '  -H "Content-Type: application/json" \\',
    `  -d '${json.replace(/\n/g, '\n  ')}'`,
  ].join('\n');
}

/** The document's own request examples, which tests send as they stand, as curl for this host. */
function writtenSamples(path: string, operation: Operation): { label: string; source: string }[] {
  const examples = operation.requestBody?.content?.['application/json']?.examples ?? {};
  return Object.values(examples)
    .filter((example) => example.value !== undefined)
    .map((example) => ({ label: example.summary ?? 'curl', source: curlPost(path, example.value) }));
}

/** A curl line for any operation without a written example: its method, path and secret. */
function genericSample(method: string, path: string, operation: Operation): string {
  const scheme = Object.keys(operation.security?.[0] ?? {})[0];
  const secret = scheme === 'management_token' ? '$SEEDGATE_MANAGEMENT_TOKEN' : '$SEEDGATE_API_KEY';
  const lines = [`curl -X ${method.toUpperCase()} "${here}${path}"`];
  if (scheme) lines.push(`  -H "Authorization: Bearer ${secret}"`);
  if (operation.requestBody) lines.push('  -H "Content-Type: application/json"', "  -d '{…}'");
  return lines.join(' \\\n');
}

/** Long first paragraphs make poor headings: they become the description, and the operation
 * is titled by its id (`create_task` → "Create task"). */
function shortenSummary(operation: Operation): void {
  const summary = operation.summary ?? '';
  if (summary.length <= 60 || !operation.operationId) return;
  operation.description = [summary, operation.description].filter(Boolean).join('\n\n');
  const words = operation.operationId.replace(/_/g, ' ');
  operation.summary = words.charAt(0).toUpperCase() + words.slice(1);
}

function addSamples(spec: Spec): void {
  spec.servers = [{ url: here }];
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      shortenSummary(operation);
      const written = writtenSamples(path, operation);
      const list = written.length ? written : [{ label: 'curl', source: genericSample(method, path, operation) }];
      operation['x-codeSamples'] = list.map((s) => ({ lang: 'Shell', ...s }));
    }
  }
}

async function render(): Promise<void> {
  const response = await fetch('/openapi.json');
  if (!response.ok) throw new Error(`/openapi.json answered ${response.status}`);
  const spec = (await response.json()) as Spec;
  addSamples(spec);
  Redoc.init(spec, { expandResponses: '200', hideRequestPayloadSample: true }, document.getElementById('redoc'));
}

render().catch((error: unknown) => {
  const out = document.getElementById('docs-error')!;
  out.textContent = `The reference could not be loaded: ${String(error)}`;
  out.hidden = false;
});

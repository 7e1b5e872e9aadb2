// The API reference: this server's /openapi.json rendered by the bundled Redoc, with curl
// examples written for the host the page was loaded from.

declare const Redoc: {
  init(spec: object, options: object, element: HTMLElement | null, callback?: (error?: unknown) => void): void;
};

interface Operation {
  operationId?: string;
  summary?: string;
  description?: string;
  security?: Record<string, string[]>[];
  requestBody?: unknown;
  'x-codeSamples'?: { lang: string; label: string; source: string }[];
}

type Spec = { servers?: { url: string }[]; paths: Record<string, Record<string, Operation>> };

const here = location.origin;

function curlPost(path: string, body: object): string {
  return [
    `curl -X POST "${here}${path}" \\`,
    '  -H "Authorization: Bearer $SEEDGATE_API_KEY" \\',
    '  -H "Content-Type: application/json" \\',
    `  -d '${JSON.stringify(body, null, 2).replace(/\n/g, '\n  ')}'`,
  ].join('\n');
}

// The platform's own examples, pointed at this host.
const fastTextToVideo = {
  model: 'seedance-2.0-fast',
  operation: 'text-to-video',
  prompt: '白色棚拍背景上的干净商品揭示镜头，镜头轻微推进。',
  duration: 5,
  resolution: '720p',
  aspect_ratio: '16:9',
};
const referenceToVideo4k = {
  model: 'seedance-2.0',
  operation: 'reference-to-video',
  prompt: '保持同一商品身份和布光，生成缓慢电影感旋转镜头。',
  reference_images: ['https://example.com/product-front.jpg', 'https://example.com/product-side.jpg'],
  video_urls: ['https://example.com/motion-reference.mp4'],
  duration: 6,
  resolution: '4k',
  aspect_ratio: '16:9',
};

const samples: Record<string, { label: string; source: string }[]> = {
  create_task: [
    { label: 'Fast and Mini', source: curlPost('/v1/videos/generations', fastTextToVideo) },
    { label: '4K reference-to-video', source: curlPost('/v1/videos/generations', referenceToVideo4k) },
  ],
  quote_task: [{ label: 'curl', source: curlPost('/v1/videos/quote', fastTextToVideo) }],
};

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
      const written = samples[operation.operationId ?? ''];
      const list = written ?? [{ label: 'curl', source: genericSample(method, path, operation) }];
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

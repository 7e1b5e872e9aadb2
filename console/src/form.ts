// The create form: which inputs each operation takes, and the request body they make.
// Local files travel as data: URIs; URLs and asset:// references as typed.

/** A media field of the create body, as the form collected it. */
export interface MediaInput {
  field: string;
  multiple: boolean;
  values: string[];
}

export interface FormValues {
  model: string;
  operation: string;
  prompt: string;
  resolution: string;
  duration: number;
  aspectRatio: string;
  generateAudio: boolean;
  /** A draft is made at the model's draft resolution, so the form's resolution is not sent. */
  draft: boolean;
  media: MediaInput[];
  extendTaskId: string;
}

/** The create (and quote) body for what the form holds: only the fields the operation takes. */
export function requestBody(form: FormValues): Record<string, unknown> {
  const body: Record<string, unknown> = {
    model: form.model,
    operation: form.operation,
    resolution: form.resolution,
    duration: form.duration,
    aspect_ratio: form.aspectRatio,
    generate_audio: form.generateAudio,
  };
  if (form.draft) {
    body.draft = true;
    delete body.resolution;
  }
  if (form.prompt.trim()) body.prompt = form.prompt.trim();
  for (const input of form.media) {
    if (input.values.length === 0) continue;
    body[input.field] = input.multiple ? input.values : input.values[0];
  }
  if (form.operation === 'video-extension' && form.extendTaskId) body.task_id = form.extendTaskId;
  return body;
}

const dataUris = new WeakMap<File, Promise<string>>();

/** A local file as a data: URI, read once per file. */
export function dataUri(file: File): Promise<string> {
  let uri = dataUris.get(file);
  if (!uri) {
    uri = new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(reader.result as string);
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
    dataUris.set(file, uri);
  }
  return uri;
}

/** The URLs typed into a field: one per line, blanks ignored. */
export function typedUrls(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
}

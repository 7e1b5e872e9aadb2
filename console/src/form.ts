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

/** A model's limits for one media field, as the Models API states them. */
export interface FieldLimits {
  /** How many values the field takes. */
  most: number;
  /** Seconds each clip may last; null for images. */
  clip: { min: number; max: number } | null;
  /** What the form says under the field. */
  text: string;
}

export interface ModelLimits {
  reference_limits: { images: number; videos: number; audios: number };
  input_clips: { min_seconds: number; max_seconds: number; total_seconds: number };
}

/** The limits of `field` (of media `kind`) for a model. */
export function fieldLimits(field: string, kind: string, multiple: boolean, model: ModelLimits): FieldLimits {
  const clips = model.input_clips;
  const clip = kind === 'image' ? null : { min: clips.min_seconds, max: clips.max_seconds };
  const each = clip ? `, ${clip.min}–${clip.max} s each, ${clips.total_seconds} s in all` : '';
  if (!multiple) {
    return {
      most: 1,
      clip,
      text: clip ? `One clip of ${clip.min}–${clip.max} s.` : 'One PNG, JPEG or WebP image.',
    };
  }
  const most = field === 'reference_images' ? model.reference_limits.images
    : field === 'video_urls' ? model.reference_limits.videos
      : model.reference_limits.audios;
  const noun = kind === 'image' ? 'images' : kind === 'video' ? 'videos' : 'clips';
  return { most, clip, text: `Up to ${most} ${noun}${each}.` };
}

/** A chosen local file, measured in the browser for its preview. */
export interface Picked {
  file: File;
  /** An object URL for the preview; revoked when removed. */
  preview: string;
  /** Seconds, for video and audio once the browser has read them. */
  duration: number | null;
}

/** Reads a clip's length from its metadata; null when the browser cannot. */
export function clipSeconds(preview: string, kind: string): Promise<number | null> {
  return new Promise((resolve) => {
    const media = document.createElement(kind === 'audio' ? 'audio' : 'video');
    media.preload = 'metadata';
    media.onloadedmetadata = () => resolve(Number.isFinite(media.duration) ? media.duration : null);
    media.onerror = () => resolve(null);
    media.src = preview;
  });
}

export const fileSize = (bytes: number): string =>
  bytes >= 1_048_576 ? `${(bytes / 1_048_576).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;

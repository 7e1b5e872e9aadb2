// The public API as the console uses it: every call carries the signed-in key; every refusal
// becomes an ApiFailure with the server's stable code and message.

export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly param?: string,
  ) {
    super(message);
  }
}

export interface Account {
  id: string;
  name: string;
  mode: 'live' | 'test';
  organization_id: string;
  balance_decimal: string;
  used_amount_decimal: string;
  limit_amount_decimal: string | null;
  models: string[];
}

export interface DailySpend {
  date: string;
  model: string;
  requests: number;
  cost_decimal: string;
}

export interface AccountUsage {
  start_date: string;
  days: number;
  total_cost_decimal: string;
  daily: DailySpend[];
  by_model: { model: string; leg?: string; requests: number; tokens: number; cost_decimal: string }[];
}

export interface DurationRange {
  min: number;
  max: number;
  default: number;
}

export interface ModelDetail {
  id: string;
  tokenlab: {
    name: string;
    operations: string[];
    resolutions: string[];
    default_resolution: string;
    aspect_ratios: string[];
    duration: DurationRange;
    /** Its draft mode, null when it has none. */
    draft: { resolution: string; valid_days: number } | null;
    reference_limits: { images: number; videos: number; audios: number };
    input_clips: { min_seconds: number; max_seconds: number; total_seconds: number };
  };
}

export type Status = 'pending' | 'processing' | 'completed' | 'failed';

export interface Task {
  id: string;
  model: string;
  /** `sandbox`, or the upstream serving it. */
  provider: string;
  operation: string;
  status: Status;
  cancelled: boolean;
  created_at: number;
  request: TaskRequest | null;
  result: {
    video_url: string | null;
    last_frame_url: string | null;
    width: number;
    height: number;
    duration: number;
    expired: boolean;
  } | null;
  cost: { amount: string } | null;
  estimated_cost: { amount: string };
  error?: { code: string; message: string };
  /** A completed draft's handle for its final, and until when (Unix seconds) it is valid. */
  draft_task_id?: string;
  draft_expires_at?: number;
}

/** One input as the task summarises it: a URL as sent, or an inline file's size. */
export interface InputSummary {
  field: string;
  kind: 'image' | 'video' | 'audio';
  source: 'url' | 'data' | 'asset' | 'task';
  url?: string;
  mime?: string;
  bytes?: number;
  width?: number;
  height?: number;
  duration?: number;
}

/** What the task was asked to make. */
export interface TaskRequest {
  resolution: string;
  aspect_ratio: string;
  duration: number;
  generate_audio: boolean;
  watermark: boolean;
  seed: number | null;
  output_format: string;
  draft: boolean;
  draft_task_id?: string | null;
  prompt?: string | null;
  inputs?: InputSummary[];
}

export interface TaskPage {
  data: Task[];
  has_more: boolean;
  next_cursor: string | null;
}

/** What the gallery shows: `status` and `model` narrow it; empty means any. */
export interface TaskFilter {
  status: string;
  model: string;
}

export interface Quote {
  resolution: string;
  width: number;
  height: number;
  output_seconds: number;
  tokens: { billed: number };
  cost: { amount: string; cny: string };
}

/** One Server-Sent Event of a task stream. */
export interface TaskEvent {
  event: string;
  id: string;
  data: {
    task_id: string;
    status: Status;
    queue_position: number | null;
    eta_seconds: number | null;
    task?: Task;
  };
}

export const isFinal = (status: Status): boolean => status === 'completed' || status === 'failed';

export class Api {
  constructor(private readonly key: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}` };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiFailure(0, 'unreachable', 'The server cannot be reached.');
    }
    const text = await response.text();
    let json: unknown = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // Not JSON: reported below by status.
    }
    if (!response.ok) {
      const error = (json as { error?: { code?: string; message?: string; param?: string } })?.error;
      throw new ApiFailure(
        response.status,
        error?.code ?? 'http_error',
        error?.message ?? `The server answered ${response.status}.`,
        error?.param,
      );
    }
    return json as T;
  }

  account = () => this.call<Account>('GET', '/v1/account');
  usage = (days: number) => this.call<AccountUsage>('GET', `/v1/account/usage?days=${days}`);
  models = async (): Promise<ModelDetail[]> => {
    const list = await this.call<{ data: { id: string }[] }>('GET', '/v1/models');
    return Promise.all(
      list.data.map((m) => this.call<ModelDetail>('GET', `/v1/models/${encodeURIComponent(m.id)}`)),
    );
  };
  tasks = (limit: number, filter: TaskFilter, after: string | null) => {
    const query = new URLSearchParams({ limit: String(limit) });
    if (filter.status) query.set('status', filter.status);
    if (filter.model) query.set('model', filter.model);
    if (after) query.set('after', after);
    return this.call<TaskPage>('GET', `/v1/tasks?${query}`);
  };
  task = (id: string) => this.call<Task>('GET', `/v1/tasks/${encodeURIComponent(id)}`);
  quote = (body: object) => this.call<Quote>('POST', '/v1/videos/quote', body);
  create = (body: object) => this.call<Task>('POST', '/v1/videos/generations', body);
  cancel = (id: string) => this.call<Task>('POST', `/v1/tasks/${encodeURIComponent(id)}/cancel`);

  /** Follows every task of the key (`GET /v1/tasks/events`) from after `lastEventId`, handing
   * each event to `onEvent`, until the stream ends or breaks. EventSource cannot send the key,
   * so the stream is read through fetch. */
  async events(lastEventId: string | null, onEvent: (event: TaskEvent) => void): Promise<void> {
    const headers: Record<string, string> = { Authorization: `Bearer ${this.key}` };
    if (lastEventId) headers['Last-Event-ID'] = lastEventId;
    const response = await fetch('/v1/tasks/events', { headers });
    if (!response.ok || !response.body) throw new ApiFailure(response.status, 'http_error', 'No event stream.');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const fields = new Map<string, string>();
        for (const line of block.split('\n')) {
          const colon = line.indexOf(':');
          if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1).trimStart());
        }
        const data = fields.get('data');
        if (data === undefined) continue;
        onEvent({ event: fields.get('event') ?? 'message', id: fields.get('id') ?? '', data: JSON.parse(data) });
      }
    }
  }
}

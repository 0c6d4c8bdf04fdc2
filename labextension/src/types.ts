/**
 * Shapes of the hubctl server extension's REST replies and events.
 */

/**
 * The schema id of the hub events on jupyter_server's event bus (it ends in
 * the schema's version; the server's `EVENT_ID` in jupyter_hub_ctl/server/app.py).
 */
export const HUB_EVENT_SCHEMA_ID =
  'https://events.jupyter-hub-ctl.dev/hubctl/hub/v2';

export type HubState = 'stopped' | 'starting' | 'running' | 'stopping' | 'failed';

/**
 * What a running hub says of its own health: `degraded` when something is
 * wrong (e.g. its task database cannot write because the disk is full) while
 * it keeps scheduling tasks.
 */
export interface IHealth {
  state: 'ok' | 'degraded';
  /** One sentence per problem. */
  reasons: string[];
  /** ISO time it became degraded (null when ok). */
  degraded_since: string | null;
  /** Whether every connection to the hub is encrypted (CurveZMQ). */
  encrypted?: boolean;
}

export interface IHub {
  id: string;
  name: string;
  state: HubState;
  error: string | null;
  /** Number of registered engines. */
  engines: number;
  /** Number of engines requested. */
  n: number;
  launcher: string;
  profile: string;
  created: string;
  updated: string;
  /** Null while the hub is not running or has not said. */
  health?: IHealth | null;
  /**
   * How a stopped or failed hub ended; the server keeps such hubs listed
   * until they are dismissed (DELETE).
   */
  ended?: IHubEnd | null;
}

export interface IHubEnd {
  /** ISO time the hub was seen to end. */
  time: string | null;
  /** Why, in a sentence (null for a requested stop). */
  reason: string | null;
  /** Exit codes of the controller and of the engines (null: unknown). */
  exit_codes: { controller: number | null; engines: (number | null)[] };
  /** The last lines of the hub's log. */
  log_tail: string[];
}

/** The engine counts a request may ask for. */
export interface IEngineLimits {
  /** Engines of a new hub when the request does not say. */
  default: number;
  minimum: number;
  maximum: number;
}

/** The processes connected to a hub as clients (kernels, scripts). */
export interface IClients {
  /** Null when the server cannot tell. */
  count: number | null;
  clients: IClientInfo[];
}

export interface IClientInfo {
  pid: number | null;
  host: string;
  /** A notebook or console of this Jupyter server, when the client is one of its kernels. */
  kernel: { id: string; name: string; path: string | null } | null;
}

export interface IEngine {
  id: number | string;
  uuid: string;
  host: string;
  pid: number | null;
  state: string;
  queue: number;
  tasks: number;
  completed: number;
  last_heartbeat: string | null;
  /** The engine's latest report of itself (null: it reports nothing, e.g. ipyparallel's). */
  metrics?: IEngineSample | null;
}

/** What an engine reports of itself every metrics interval. */
export interface IEngineSample {
  /** Hub time, epoch seconds. */
  time: number;
  /** CPU percent (100 = one core). */
  cpu: number;
  /** Resident memory, bytes. */
  rss: number;
  threads: number;
  /** msg_id of the running task, null when idle. */
  task: string | null;
  task_name: string | null;
}

export interface IHostSample {
  time: number;
  load1: number;
  cpus: number;
  mem_total: number;
  mem_used: number;
}

export type TaskState = 'pending' | 'queued' | 'running' | 'ok' | 'error' | 'aborted';

/** One task as the task stream reports it (times in epoch seconds, hub clock). */
export interface IStreamTask {
  msg_id: string;
  engine_id: number | null;
  name: string;
  label: string | null;
  submitted: number | null;
  started: number | null;
  completed: number | null;
  state: TaskState;
}

export interface ITaskStream {
  /** The hub's clock at the reply: pass it back as `since`. */
  now: number;
  /** Oldest change first. */
  tasks: IStreamTask[];
  /** More changed than the limit; only the newest are listed. */
  truncated: boolean;
}

/** All of a hub's engines added up (the REST API pages the engines themselves). */
export interface IEngineSummary {
  total: number;
  states: { [state: string]: number };
  hosts: number;
  queue: number;
  tasks: number;
  completed: number;
}

/** A page of a hub's engines, in id order. */
export interface IEnginePage {
  engines: IEngine[];
  total: number;
  offset: number;
  limit: number;
  summary: IEngineSummary;
  /** The hosts the engines report from (their latest figures), by host name. */
  hosts?: { [host: string]: IHostSample };
  /** The server's clock (ISO) when it answered. */
  time?: string;
}

export interface IQueueCounts {
  queue: number;
  tasks: number;
  completed: number;
}

export interface IQueues {
  engines: { [id: string]: IQueueCounts };
  unassigned: number;
  totals: IQueueCounts;
}

/** The subset of JSON schema the create form understands. */
export interface IOptionSchema {
  type?: string | string[];
  title?: string;
  description?: string;
  default?: unknown;
  enum?: unknown[];
  minimum?: number;
  maximum?: number;
  /** Options most people leave alone; the form folds them away. */
  advanced?: boolean;
  /** An example of a value (for fields without a default). */
  examples?: unknown[];
  items?: IOptionSchema;
  additionalProperties?: IOptionSchema | boolean;
  properties?: { [name: string]: IOptionSchema };
  required?: string[];
}

/** One reply of `GET hubs/{id}/dashboard`. */
export interface IDashboardSnapshot {
  /** The server's clock (ISO) when it answered. */
  time: string;
  hub: IHub;
  engines: IEngine[];
  /** The latest figures of each host the engines report from, by host name. */
  hosts?: { [host: string]: IHostSample };
  queues: IQueues;
  /** Null when the hub could not say (e.g. an ipcontroller without the task stream). */
  stream: ITaskStream | null;
  stream_error?: string | null;
}

export interface ILaunchers {
  launchers: ILauncher[];
  /** The launcher of a hub whose request names none. */
  default?: string;
  /** How many engines a request may ask for. */
  engines?: IEngineLimits;
}

export interface ILauncher {
  name: string;
  description: string;
  schema: IOptionSchema;
}

export interface IConnection {
  snippet: string;
  connection_file: string;
}

export interface IVersion {
  server: string;
  controller: string;
  panel: string;
}

export interface ICreateHubRequest {
  name?: string;
  launcher?: string;
  n?: number;
  options?: { [name: string]: unknown };
}

export type HubAction = 'state' | 'engines' | 'queues' | 'health' | 'removed';

/** The data of one hub event (jupyter_server flattens it next to `schema_id`). */
export interface IHubEvent {
  action: HubAction;
  hub_id: string;
  hub?: IHub;
  engines?: IEngine[];
  total?: number;
  limit?: number;
  summary?: IEngineSummary;
  queues?: IQueues;
  health?: IHealth;
}

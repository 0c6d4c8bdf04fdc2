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
  items?: IOptionSchema;
  properties?: { [name: string]: IOptionSchema };
  required?: string[];
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

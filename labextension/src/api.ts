import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import {
  IClients,
  ICreateHubRequest,
  IConnection,
  IEnginePage,
  IHub,
  ILaunchers,
  IDashboardSnapshot,
  IQueues,
  IVersion
} from './types';

/** Where the server extension's REST API lives, relative to the base URL. */
export const API_PATH = 'hubctl/api';

/**
 * A failed call to the hubctl REST API.
 *
 * `status` is the HTTP status, or 0 when the Jupyter server could not be
 * reached at all.
 */
export class HubCtlError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'HubCtlError';
  }

  /** Whether the server extension is missing (the route itself is unknown). */
  get notEnabled(): boolean {
    return this.status === 404;
  }

  /** Whether the server (or a proxy in front of it) could not serve the call. */
  get unreachable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

/**
 * A typed client of the hubctl REST API.
 *
 * It goes through `ServerConnection`, so the base URL, the token and the
 * XSRF cookie are handled as for every other JupyterLab request.
 */
export class HubCtlAPI {
  constructor(readonly serverSettings: ServerConnection.ISettings) {}

  listHubs(): Promise<{ hubs: IHub[] }> {
    return this._json('hubs');
  }

  getHub(id: string): Promise<IHub> {
    return this._json(hubPath(id));
  }

  createHub(request: ICreateHubRequest): Promise<IHub> {
    return this._json('hubs', {
      method: 'POST',
      body: JSON.stringify(request)
    });
  }

  scaleHub(id: string, n: number): Promise<IHub> {
    return this._json(hubPath(id), {
      method: 'PATCH',
      body: JSON.stringify({ n })
    });
  }

  /**
   * Stop a hub (or forget an ended one). With `keep`, the stopped hub stays
   * listed, as stopped, until it is dismissed (another DELETE).
   */
  async stopHub(id: string, keep = false): Promise<void> {
    await this._request(keep ? `${hubPath(id)}?keep=true` : hubPath(id), { method: 'DELETE' });
  }

  /**
   * A page of the hub's engines in id order, from `offset`, with the total
   * and a summary of all of them; `time` is the server's clock (ISO) when it
   * answered.
   */
  engines(id: string, offset: number, limit: number): Promise<IEnginePage> {
    const query = new URLSearchParams({ offset: String(offset), limit: String(limit) });
    return this._json(`${hubPath(id)}/engines?${query}`);
  }

  /** The processes connected to the hub as clients. */
  clients(id: string): Promise<IClients> {
    return this._json(`${hubPath(id)}/clients`);
  }

  /**
   * What a dashboard shows, in one reply: the hub, its engines with their
   * metrics, queue counts, and the tasks that changed since `since` (the
   * `stream.now` of an earlier reply; null: the latest changes).
   */
  dashboard(id: string, since: number | null, limit: number): Promise<IDashboardSnapshot> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (since !== null) {
      query.set('since', String(since));
    }
    return this._json(`${hubPath(id)}/dashboard?${query}`);
  }

  queues(id: string): Promise<IQueues> {
    return this._json(`${hubPath(id)}/queues`);
  }

  connection(id: string): Promise<IConnection> {
    return this._json(`${hubPath(id)}/connection`);
  }

  launchers(): Promise<ILaunchers> {
    return this._json('launchers');
  }

  version(): Promise<IVersion> {
    return this._json('version');
  }

  private async _json<T>(path: string, init: RequestInit = {}): Promise<T> {
    const body = await this._request(path, init);
    if (body === undefined) {
      throw new HubCtlError(`The server sent no data for ${path}`, 200);
    }
    return body as T;
  }

  private async _request(
    path: string,
    init: RequestInit
  ): Promise<unknown | undefined> {
    const settings = this.serverSettings;
    const url = URLExt.join(settings.baseUrl, API_PATH, path);
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, settings);
    } catch (reason) {
      throw new HubCtlError(
        `Cannot reach the Jupyter server (${describe(reason)})`,
        0
      );
    }
    const text = response.status === 204 ? '' : await response.text();
    let body: unknown = undefined;
    if (text) {
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
    }
    if (!response.ok) {
      throw new HubCtlError(errorMessage(response, body), response.status);
    }
    if (text && body === undefined) {
      throw new HubCtlError(`The server sent a reply that is not JSON`, 200);
    }
    return body;
  }
}

function hubPath(id: string): string {
  return `hubs/${encodeURIComponent(id)}`;
}

function errorMessage(response: Response, body: unknown): string {
  if (body && typeof body === 'object') {
    const message = (body as { message?: unknown }).message;
    if (typeof message === 'string' && message) {
      return message;
    }
  }
  const reason = response.statusText ? ` ${response.statusText}` : '';
  return `HTTP ${response.status}${reason}`;
}

/** A short, human readable description of anything thrown. */
export function describe(reason: unknown): string {
  if (reason instanceof Error) {
    return reason.message || reason.name;
  }
  return String(reason);
}

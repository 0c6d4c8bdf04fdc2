import { Poll } from '@lumino/polling';

import { describe, HubCtlAPI, HubCtlError } from './api';
import { IEngine, IQueues } from './types';

/** How often (ms) the selected hub's engines and queues are re-read while the panel shows them. */
export const DETAIL_INTERVAL = 2000;

/**
 * The selected hub's engines and queue counts, re-read every few seconds
 * while the panel is visible (heartbeat ages and counts stay current), and
 * replaced at once by server events.
 */
export class HubDetail {
  constructor(options: HubDetail.IOptions) {
    this._api = options.api;
    this._changed = options.changed;
    this._onGone = options.onGone;
    this._poll = new Poll({
      auto: false,
      factory: () => this.load(),
      frequency: { interval: DETAIL_INTERVAL, backoff: true, max: DETAIL_INTERVAL * 8 },
      name: 'jupyter-hub-ctl:detail',
      standby: () => (this._id && options.isActive() ? 'when-hidden' : true)
    });
    void this._poll.start();
  }

  get id(): string | null {
    return this._id;
  }

  /** Engines of the selected hub, or null until they are known. */
  get engines(): readonly IEngine[] | null {
    return this._engines;
  }

  /** Queue counts of the selected hub, or null until they are known. */
  get queues(): IQueues | null {
    return this._queues;
  }

  get error(): string | null {
    return this._error;
  }

  /** How far (ms) this browser's clock runs ahead of the server's. */
  get skew(): number {
    return this._skew;
  }

  select(id: string | null): void {
    this._id = id;
    this._engines = null;
    this._queues = null;
    this._error = null;
    if (id) {
      void this._poll.refresh();
    }
  }

  setEngines(engines: IEngine[]): void {
    this._engines = engines;
    this._error = null;
  }

  setQueues(queues: IQueues): void {
    this._queues = queues;
    this._error = null;
  }

  /** Re-read the selected hub's engines and queues (never rejects). */
  async load(): Promise<void> {
    const id = this._id;
    if (!id) {
      return;
    }
    try {
      const [engines, queues] = await Promise.all([this._api.engines(id), this._api.queues(id)]);
      if (id !== this._id) {
        return;
      }
      this._engines = engines.engines;
      this._queues = queues;
      this._error = null;
      const serverTime = engines.time ? Date.parse(engines.time) : NaN;
      this._skew = Number.isNaN(serverTime) ? 0 : Date.now() - serverTime;
    } catch (reason) {
      if (id !== this._id) {
        return;
      }
      this._error = describe(reason);
      if (reason instanceof HubCtlError && reason.status === 404) {
        // The hub is gone, or not quite there yet: the list decides.
        await this._onGone();
        return;
      }
    }
    this._changed();
  }

  dispose(): void {
    this._poll.dispose();
  }

  private _api: HubCtlAPI;
  private _changed: () => void;
  private _onGone: () => Promise<unknown>;
  private _poll: Poll;
  private _id: string | null = null;
  private _engines: IEngine[] | null = null;
  private _queues: IQueues | null = null;
  private _error: string | null = null;
  private _skew = 0;
}

export namespace HubDetail {
  export interface IOptions {
    api: HubCtlAPI;
    /** Whether anyone looks at the panel; the poll stands by otherwise. */
    isActive: () => boolean;
    /** Called after a load changed something. */
    changed: () => void;
    /** Called when the selected hub answered 404. */
    onGone: () => Promise<unknown>;
  }
}

import { Poll } from '@lumino/polling';

import { describe, HubCtlAPI, HubCtlError } from './api';
import { SILENT_AFTER } from './format';
import { IEngine, IEnginePage, IEngineSummary, IQueues } from './types';

/** How often (ms) the selected hub's engines and queues are re-read while the panel shows them. */
export const DETAIL_INTERVAL = 2000;

/**
 * How often (ms) the poll re-reads the pages after the first one (the first
 * is re-read every DETAIL_INTERVAL): often enough that no engine looks silent
 * (SILENT_AFTER) for want of a read, seldom enough that a user who showed
 * thousands of engines does not make the server page through them every 2 s.
 */
export const LATER_PAGES_INTERVAL = (SILENT_AFTER * 1000) / 2;

/** Engines per page until the server says its own page size. */
const DEFAULT_PAGE = 200;

/** What a first page of engines (a REST reply or an `engines` event) may carry. */
type FirstPage = Partial<Pick<IEnginePage, 'total' | 'limit' | 'summary'>> & { engines: IEngine[] };

/**
 * The selected hub's engines and queue counts, re-read every few seconds
 * while the panel is visible (heartbeat ages and counts stay current), and
 * replaced at once by server events.
 *
 * A hub may have thousands of engines: the server pages them, and this holds
 * the pages the user asked for ("Show more"), the first one to begin with,
 * with the total and the summary of all of them. The number asked for is kept
 * across re-reads and events until another hub is selected.
 */
export class HubDetail {
  constructor(options: HubDetail.IOptions) {
    this._api = options.api;
    this._changed = options.changed;
    this._onGone = options.onGone;
    this._poll = new Poll({
      auto: false,
      factory: () => this.load(false),
      frequency: { interval: DETAIL_INTERVAL, backoff: true, max: DETAIL_INTERVAL * 8 },
      name: 'jupyter-hub-ctl:detail',
      standby: () => (this._id && options.isActive() ? 'when-hidden' : true)
    });
    void this._poll.start();
  }

  get id(): string | null {
    return this._id;
  }

  /** The selected hub's engines read so far (the pages shown), or null until they are known. */
  get engines(): readonly IEngine[] | null {
    return this._engines;
  }

  /** How many engines the selected hub has in all. */
  get total(): number {
    return this._total;
  }

  /** All the selected hub's engines added up, or null until the server said. */
  get summary(): IEngineSummary | null {
    return this._summary;
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
    this._total = 0;
    this._summary = null;
    this._wanted = 0;
    this._queues = null;
    this._error = null;
    this._generation++;
    if (id) {
      void this._poll.refresh();
    }
  }

  /**
   * The first page of engines an event brought; the rows after it stay until
   * the next read (a read of later pages under way goes on).
   */
  setEngines(page: FirstPage): void {
    this._takeFirstPage(page);
    this._error = null;
  }

  setQueues(queues: IQueues): void {
    this._queues = queues;
    this._error = null;
  }

  /** Show one more page of engines (never rejects). */
  async showMore(): Promise<void> {
    const id = this._id;
    const shown = this._engines?.length ?? 0;
    if (!id || shown >= this._total) {
      return;
    }
    this._wanted = shown + this._pageSize;
    await this._readPages(id, shown, this._generation);
    this._changed();
  }

  /**
   * Re-read the selected hub's engines and queues (never rejects): the first
   * page, and the pages after it that are shown when `all`, when rows asked
   * for are missing (a "Show more" this read took over) or when they were
   * read longer than LATER_PAGES_INTERVAL ago.
   */
  async load(all = true): Promise<void> {
    const id = this._id;
    if (!id) {
      return;
    }
    try {
      const [page, queues] = await Promise.all([
        this._api.engines(id, 0, this._pageSize),
        this._api.queues(id)
      ]);
      if (id !== this._id) {
        return;
      }
      this._takeFirstPage(page);
      const generation = ++this._generation;
      this._queues = queues;
      this._error = null;
      const serverTime = page.time ? Date.parse(page.time) : NaN;
      this._skew = Number.isNaN(serverTime) ? 0 : Date.now() - serverTime;
      const missing = (this._engines?.length ?? 0) < Math.min(this._wanted, this._total);
      if (all || missing || Date.now() - this._laterPagesRead >= LATER_PAGES_INTERVAL) {
        await this._readPages(id, page.engines.length, generation);
      }
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

  /**
   * Put a first page in front of the engines shown: the rows after it stay
   * (up to the new total) until their pages are read again, so the table does
   * not shrink and grow back on every event.
   */
  private _takeFirstPage(page: FirstPage): void {
    this._pageSize = page.limit ?? this._pageSize;
    this._total = page.total ?? page.engines.length;
    this._summary = page.summary ?? null;
    const keep = Math.min(this._wanted, this._total);
    const first = new Set(page.engines.map(engine => String(engine.id)));
    const tail = (this._engines ?? [])
      .slice(page.engines.length, Math.max(keep, page.engines.length))
      .filter(engine => !first.has(String(engine.id))); // engines went: the rows moved up a little
    this._engines = [...page.engines, ...tail];
  }

  /**
   * Read the pages from `offset` on until the engines the user asked for (or
   * all) are there, each replacing the rows it covers. Stops when another hub
   * is selected or a newer read took over (`generation`).
   */
  private async _readPages(id: string, offset: number, generation: number): Promise<void> {
    try {
      while (offset < Math.min(this._wanted, this._total)) {
        const page = await this._api.engines(id, offset, this._pageSize);
        if (generation !== this._generation || !this._engines) {
          return;
        }
        this._total = page.total;
        this._summary = page.summary;
        const end = offset + page.engines.length;
        const tail = page.engines.length < this._pageSize ? [] : this._engines.slice(end);
        this._engines = [...this._engines.slice(0, offset), ...page.engines, ...tail];
        if (!page.engines.length) {
          break; // engines went while the pages were read
        }
        offset = end;
        this._changed();
      }
      this._laterPagesRead = Date.now();
    } catch (reason) {
      if (generation === this._generation) {
        this._error = describe(reason);
      }
    }
  }

  private _api: HubCtlAPI;
  private _changed: () => void;
  private _onGone: () => Promise<unknown>;
  private _poll: Poll;
  private _id: string | null = null;
  private _engines: IEngine[] | null = null;
  private _total = 0;
  private _summary: IEngineSummary | null = null;
  /** Engines the user asked to see ("Show more"); 0: the first page. */
  private _wanted = 0;
  /** The server's page of engines, as its last page said. */
  private _pageSize = DEFAULT_PAGE;
  /** Date.now() when the pages after the first were last read up to those shown. */
  private _laterPagesRead = 0;
  /** Counts selections and reads: a read of later pages stops when it changed. */
  private _generation = 0;
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

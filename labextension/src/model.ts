import { Event } from '@jupyterlab/services';
import { IDisposable } from '@lumino/disposable';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { describe, HubCtlAPI, HubCtlError } from './api';
import { HubDetail } from './detail';
import { FALLBACK_LIMITS } from './options';
import {
  HUB_EVENT_SCHEMA_ID,
  IClients,
  ICreateHubRequest,
  IEngine,
  IEngineLimits,
  IEngineSummary,
  IHub,
  IHubEvent,
  ILauncher,
  IQueues
} from './types';

/**
 * What the panel can say about the server as a whole.
 *
 * - `loading`: the first list has not arrived yet
 * - `ready`: hubs are listed
 * - `disabled`: the server answers, but has no hubctl extension (404)
 * - `unreachable`: the server or the extension could not answer
 */
export type ServiceStatus = 'loading' | 'ready' | 'disabled' | 'unreachable';

export type SnippetStyle = 'client' | 'magic';

/** The smallest and default fallback poll intervals, in seconds. */
export const MIN_POLL_INTERVAL = 5;
export const DEFAULT_POLL_INTERVAL = 30;

/** How long (ms) a hub created here stays listed before the server lists it. */
const PENDING_GRACE = 60_000;

/** How long to wait before re-listing hubs after an event without a model. */
const EVENT_REFRESH_DELAY = 250;

/** How long (ms) a requested scaling is shown while the engine count has not reached it. */
const SCALE_GRACE = 120_000;

/** A scaling under way: from the registered count to the requested one. */
export interface IScaling {
  from: number;
  to: number;
  /** Date.now() after which it is no longer shown. */
  until: number;
}

/** States of a hub that runs or is on its way (it can be scaled, stopped, connected to). */
export const ACTIVE_STATES: ReadonlySet<string> = new Set(['starting', 'running']);

/**
 * The state behind the hubs panel: the hub list, the selected hub's engines
 * and queues, and the actions on hubs.
 *
 * Server events update it as they come; a slow poll re-reads everything in
 * case events were missed. Errors never throw out of it: they become
 * `status` (for the list) or `detailError` / `actionError` messages.
 */
export class HubCtlModel implements IDisposable {
  constructor(options: HubCtlModel.IOptions) {
    this.api = options.api;
    this._isActive = options.isActive ?? (() => true);
    const interval = this._pollMs(DEFAULT_POLL_INTERVAL);
    this._poll = new Poll({
      auto: false,
      factory: () => this._pollTick(),
      frequency: { interval, backoff: true, max: interval * 4 },
      name: 'jupyter-hub-ctl:refresh',
      standby: () => (this._isActive() ? 'when-hidden' : true)
    });
    if (options.events) {
      options.events.stream.connect(this._onEvent, this);
      this._events = options.events;
    }
    this._detail = new HubDetail({
      api: this.api,
      isActive: this._isActive,
      changed: () => this._changed.emit(),
      onGone: () => this._refreshList()
    });
  }

  readonly api: HubCtlAPI;

  /** Emitted whenever anything shown by the panel changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get status(): ServiceStatus {
    return this._status;
  }

  /** Why the list is not shown (for `disabled` and `unreachable`). */
  get statusMessage(): string {
    return this._statusMessage;
  }

  get hubs(): readonly IHub[] {
    return this._hubs;
  }

  get launchers(): readonly ILauncher[] | null {
    return this._launchers;
  }

  get launchersError(): string | null {
    return this._launchersError;
  }

  /** The server's default launcher (when it said). */
  get defaultLauncher(): string | undefined {
    return this._defaultLauncher;
  }

  /** How many engines a request may ask for. */
  get engineLimits(): IEngineLimits {
    return this._engineLimits;
  }

  /** Names of hubs that are starting or running. */
  get activeNames(): ReadonlySet<string> {
    return new Set(
      this._hubs.filter(hub => ACTIVE_STATES.has(hub.state)).flatMap(hub => [hub.id, hub.name])
    );
  }

  /** The scaling under way on a hub, if any. */
  scaling(id: string): IScaling | null {
    const scaling = this._scaling.get(id);
    if (!scaling) {
      return null;
    }
    const hub = this._hubs.find(h => h.id === id);
    const reached = hub && hub.engines === scaling.to && hub.n === scaling.to;
    if (!hub || !ACTIVE_STATES.has(hub.state) || reached || Date.now() > scaling.until) {
      this._scaling.delete(id);
      return null;
    }
    return scaling;
  }

  get selectedId(): string | null {
    return this._selectedId;
  }

  get selectedHub(): IHub | null {
    return this._hubs.find(hub => hub.id === this._selectedId) ?? null;
  }

  /** Engines of the selected hub read so far (pages of `engineTotal`), or null until they are known. */
  get engines(): readonly IEngine[] | null {
    return this._detail.engines;
  }

  /** How many engines the selected hub has in all. */
  get engineTotal(): number {
    return this._detail.total;
  }

  /** All the selected hub's engines added up, or null until the server said. */
  get engineSummary(): IEngineSummary | null {
    return this._detail.summary;
  }

  /** Show one more page of the selected hub's engines (kept across refreshes and events). */
  showMoreEngines(): Promise<void> {
    return this._detail.showMore();
  }

  /** Queue counts of the selected hub, or null until they are known. */
  get queues(): IQueues | null {
    return this._detail.queues;
  }

  get detailError(): string | null {
    return this._detail.error;
  }

  /** How far (ms) this browser's clock runs ahead of the server's. */
  get clockSkew(): number {
    return this._detail.skew;
  }

  /** The last failed action (create, scale, stop, snippet), until dismissed. */
  get actionError(): string | null {
    return this._actionError;
  }

  /** Whether the create form is open. */
  get formOpen(): boolean {
    return this._formOpen;
  }

  /** Whether an action on this hub (or `'create'`) is under way. */
  isBusy(key: string): boolean {
    return this._busy.has(key);
  }

  get snippetStyle(): SnippetStyle {
    return this._snippetStyle;
  }

  set snippetStyle(style: SnippetStyle) {
    this._snippetStyle = style === 'magic' ? 'magic' : 'client';
  }

  /** The fallback poll interval, in seconds. */
  set pollInterval(seconds: number) {
    const interval = this._pollMs(seconds);
    this._poll.frequency = { interval, backoff: true, max: interval * 4 };
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /**
   * Start the fallback poll. It stands by while the panel is hidden; the
   * panel refreshes the model whenever it is shown.
   */
  start(): void {
    void this._poll.start();
  }

  /**
   * Re-read the hub list, and the selected hub's engines and queues.
   *
   * Never rejects: failures are recorded in `status` and the messages.
   */
  async refresh(): Promise<void> {
    if (!(await this._refreshList())) {
      return;
    }
    const loads: Promise<void>[] = [this._detail.load()];
    if (this._launchers === null) {
      loads.push(this._loadLaunchers());
    }
    await Promise.all(loads);
  }

  /** Select a hub (or none) and load its engines and queues. */
  select(id: string | null): void {
    if (id === this._selectedId) {
      return;
    }
    this._selectedId = id;
    this._detail.select(id);
    this._changed.emit();
  }

  openForm(): void {
    this._formOpen = true;
    this._changed.emit();
    if (this._launchers === null && this._status === 'ready') {
      void this._loadLaunchers();
    }
  }

  closeForm(): void {
    this._formOpen = false;
    this._changed.emit();
  }

  dismissError(): void {
    this._actionError = null;
    this._changed.emit();
  }

  /** Start a new hub; resolves with it (selected), or null on failure. */
  async create(request: ICreateHubRequest): Promise<IHub | null> {
    const hub = await this._act('create', () => this.api.createHub(request));
    if (hub) {
      this._pending.set(hub.id, Date.now() + PENDING_GRACE);
      this._upsert(hub);
      this._formOpen = false;
      this.select(hub.id);
      this._changed.emit();
    }
    return hub;
  }

  /** Scale a hub; it shows as scaling (from its registered count to `n`) from the request on. */
  async scale(id: string, n: number): Promise<void> {
    const from = this._hubs.find(h => h.id === id)?.engines ?? 0;
    this._scaling.set(id, { from, to: n, until: Date.now() + SCALE_GRACE });
    const hub = await this._act(id, () => this.api.scaleHub(id, n));
    if (hub) {
      this._upsert(hub);
    } else {
      this._scaling.delete(id);
    }
    this._changed.emit();
  }

  /**
   * The processes connected to a hub as clients, or null when the server
   * cannot tell (then a stop should still be confirmed).
   */
  async connectedClients(id: string): Promise<IClients | null> {
    try {
      const clients = await this.api.clients(id);
      return clients.count === null ? null : clients;
    } catch {
      return null;
    }
  }

  /** Forget a stopped or failed hub the server keeps listed. */
  async dismiss(id: string): Promise<void> {
    const done = await this._act(id, async () => {
      try {
        await this.api.stopHub(id);
      } catch (reason) {
        if (!(reason instanceof HubCtlError && reason.status === 404)) {
          throw reason;
        }
      }
      return true;
    });
    if (done) {
      this._remove(id);
      this._changed.emit();
    }
  }

  async stop(id: string): Promise<void> {
    const done = await this._act(id, async () => {
      await this.api.stopHub(id, true);
      return true;
    });
    if (done) {
      // The server reports the way down through events; re-read in case
      // they do not come.
      await this._refreshHub(id);
    }
  }

  /**
   * The code a notebook runs to connect to a hub, in the configured style.
   *
   * Rejects with a `HubCtlError` when the server cannot provide it.
   */
  async snippet(id: string): Promise<string> {
    if (this._snippetStyle === 'magic') {
      return magicSnippet(id);
    }
    const { snippet } = await this.api.connection(id);
    return snippet;
  }

  /** Record an error from outside the model (e.g. inserting a snippet). */
  reportError(message: string): void {
    this._actionError = message;
    this._changed.emit();
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._events?.stream.disconnect(this._onEvent, this);
    this._poll.dispose();
    this._detail.dispose();
    window.clearTimeout(this._eventRefreshTimer);
    window.clearTimeout(this._detailLoadTimer);
    Signal.clearData(this);
  }

  private async _pollTick(): Promise<void> {
    await this.refresh();
    if (this._status === 'unreachable') {
      // Rejecting makes the poll back off while the server is away.
      throw new Error(this._statusMessage);
    }
  }

  private _pollMs(seconds: number): number {
    const value = Number.isFinite(seconds) ? seconds : DEFAULT_POLL_INTERVAL;
    return Math.max(MIN_POLL_INTERVAL, value) * 1000;
  }

  private _setFailure(reason: unknown): void {
    if (reason instanceof HubCtlError && reason.notEnabled) {
      this._status = 'disabled';
      this._statusMessage = reason.message;
    } else {
      this._status = 'unreachable';
      this._statusMessage = describe(reason);
    }
  }

  /** Re-read the hub list only; resolves whether it could be read. */
  private async _refreshList(): Promise<boolean> {
    const seq = ++this._refreshSeq;
    try {
      const { hubs } = await this.api.listHubs();
      if (seq !== this._refreshSeq || this._isDisposed) {
        return false;
      }
      this._hubs = sortHubs([...hubs, ...this._pendingHubs(hubs)]);
      this._status = 'ready';
      this._statusMessage = '';
      if (this._selectedId && !this.selectedHub) {
        this._clearSelection();
      }
    } catch (reason) {
      if (seq !== this._refreshSeq || this._isDisposed) {
        return false;
      }
      this._setFailure(reason);
      this._changed.emit();
      return false;
    }
    this._changed.emit();
    return true;
  }

  /**
   * Hubs this panel created that a list does not show yet: kept for a grace
   * period, so a server that lists a new hub a moment after answering the
   * POST does not make it flicker away (and lose its selection).
   */
  private _pendingHubs(listed: IHub[]): IHub[] {
    const now = Date.now();
    const ids = new Set(listed.map(hub => hub.id));
    for (const [id, deadline] of this._pending) {
      if (ids.has(id) || now > deadline) {
        this._pending.delete(id);
      }
    }
    return this._hubs.filter(hub => this._pending.has(hub.id));
  }

  private async _loadLaunchers(): Promise<void> {
    try {
      const reply = await this.api.launchers();
      this._launchers = reply.launchers;
      this._defaultLauncher = reply.default;
      this._engineLimits = reply.engines ?? FALLBACK_LIMITS;
      this._launchersError = null;
    } catch (reason) {
      this._launchersError = describe(reason);
    }
    this._changed.emit();
  }

  private async _refreshHub(id: string): Promise<void> {
    try {
      this._upsert(await this.api.getHub(id));
    } catch (reason) {
      if (reason instanceof HubCtlError && reason.status === 404) {
        this._remove(id);
      }
    }
    this._changed.emit();
  }

  private async _act<T>(key: string, action: () => Promise<T>): Promise<T | null> {
    this._busy.add(key);
    this._actionError = null;
    this._changed.emit();
    try {
      return await action();
    } catch (reason) {
      this._actionError = describe(reason);
      if (reason instanceof HubCtlError && reason.unreachable) {
        void this.refresh();
      }
      return null;
    } finally {
      this._busy.delete(key);
      this._changed.emit();
    }
  }

  private _onEvent(_: unknown, emission: Event.Emission): void {
    if (emission.schema_id !== HUB_EVENT_SCHEMA_ID || this._isDisposed) {
      return;
    }
    const event = emission as unknown as IHubEvent;
    const id = event.hub_id;
    if (typeof id !== 'string') {
      return;
    }
    let known = true;
    switch (event.action) {
      case 'removed':
        this._remove(id);
        break;
      case 'state':
        known = !!event.hub;
        if (id === this._selectedId && (this.detailError || this.engines === null)) {
          this._scheduleDetailLoad();
        }
        break;
      case 'engines':
        if (id === this._selectedId && Array.isArray(event.engines)) {
          this._detail.setEngines({ ...event, engines: event.engines });
        }
        break;
      case 'queues':
        if (id === this._selectedId && event.queues) {
          this._detail.setQueues(event.queues);
        }
        break;
      case 'health':
        known = !!event.hub;
        break;
      default:
        known = false;
    }
    if (event.hub && event.action !== 'removed') {
      this._upsert(event.hub);
    } else if (event.action === 'engines' && Array.isArray(event.engines)) {
      this._setEngineCount(id, event.summary ?? null, event.engines);
    }
    if (!known || (!this._hubs.some(hub => hub.id === id) && event.action !== 'removed')) {
      // Something about a hub this panel cannot fully place: re-list soon,
      // once for a burst of such events.
      this._scheduleRefresh();
    }
    if (this._status === 'ready') {
      this._changed.emit();
    }
  }

  private _scheduleDetailLoad(): void {
    window.clearTimeout(this._detailLoadTimer);
    this._detailLoadTimer = window.setTimeout(
      () => void this._detail.load(),
      EVENT_REFRESH_DELAY
    );
  }

  private _scheduleRefresh(): void {
    window.clearTimeout(this._eventRefreshTimer);
    this._eventRefreshTimer = window.setTimeout(
      () => void this.refresh(),
      EVENT_REFRESH_DELAY
    );
  }

  /** A hub's registered engines from an event without the hub: all of them when it has a summary. */
  private _setEngineCount(id: string, summary: IEngineSummary | null, engines: IEngine[]): void {
    const hub = this._hubs.find(h => h.id === id);
    if (hub) {
      const states: [string, number][] = summary
        ? Object.entries(summary.states)
        : engines.map(e => [e.state, 1]);
      const alive = states.reduce((n, [state, count]) => (DEAD_ENGINE_STATES.has(state) ? n : n + count), 0);
      this._upsert({ ...hub, engines: alive });
    }
  }

  private _upsert(hub: IHub): void {
    const others = this._hubs.filter(h => h.id !== hub.id);
    this._hubs = sortHubs([...others, hub]);
  }

  private _remove(id: string): void {
    this._pending.delete(id);
    this._hubs = this._hubs.filter(h => h.id !== id);
    if (id === this._selectedId) {
      this._clearSelection();
    }
  }

  private _clearSelection(): void {
    this._selectedId = null;
    this._detail.select(null);
  }

  private _changed = new Signal<this, void>(this);
  private _status: ServiceStatus = 'loading';
  private _statusMessage = '';
  private _hubs: IHub[] = [];
  private _launchers: ILauncher[] | null = null;
  private _launchersError: string | null = null;
  private _defaultLauncher: string | undefined = undefined;
  private _engineLimits: IEngineLimits = FALLBACK_LIMITS;
  private _scaling = new Map<string, IScaling>();
  private _selectedId: string | null = null;
  private _detail: HubDetail;
  private _actionError: string | null = null;
  private _formOpen = false;
  private _busy = new Set<string>();
  private _pending = new Map<string, number>();
  private _snippetStyle: SnippetStyle = 'client';
  private _refreshSeq = 0;
  private _eventRefreshTimer = 0;
  private _detailLoadTimer = 0;
  private _isDisposed = false;
  private _isActive: () => boolean;
  private _poll: Poll;
  private _events: Event.IManager | null = null;
}

export namespace HubCtlModel {
  export interface IOptions {
    api: HubCtlAPI;
    /** jupyter_server's event bus; without it the panel only polls. */
    events?: Event.IManager | null;
    /** Whether anyone looks at the panel; the poll stands by otherwise. */
    isActive?: () => boolean;
  }
}

/** Engine states that do not count as registered. */
const DEAD_ENGINE_STATES = new Set(['dead', 'unregistered', 'stopped']);

/** Newest hubs first, then by name. */
function sortHubs(hubs: IHub[]): IHub[] {
  return [...hubs].sort(
    (a, b) =>
      (b.created || '').localeCompare(a.created || '') ||
      a.name.localeCompare(b.name)
  );
}

/** The `%hub` magic way to connect a notebook to a hub. */
export function magicSnippet(id: string): string {
  return `%load_ext jupyter_hub_ctl\n%hub connect ${id}`;
}

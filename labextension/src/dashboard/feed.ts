/**
 * Feeds a dashboard from the server extension: one `GET hubs/{id}/dashboard`
 * a second while the dashboard is visible (none while it is hidden), each
 * asking only for the tasks that changed since the previous reply. No kernel
 * is involved, so a busy or blocked notebook cannot stop it.
 */

import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { describe, HubCtlAPI, HubCtlError } from '../api';
import { DashboardStore } from './store';

/** How often (ms) a visible dashboard asks the server. */
export const FEED_INTERVAL = 1000;

/** Most task changes the first reply carries: the latest of the hub's history. */
export const FIRST_LIMIT = 10_000;

/**
 * Most task changes a later reply carries. After a burst with more changes
 * than that, the hub sends the oldest ones and the point they end at; the
 * dashboard asks again at once from there until it has caught up, so its
 * counts miss nothing. (Much larger replies after a burst of 100,000 tasks
 * took the hub longer than the server's query timeout.)
 */
export const STREAM_LIMIT = 10_000;

/** Ingest times kept for the responsiveness figures. */
const INGEST_SAMPLES = 120;

/**
 * - `loading`: no reply yet
 * - `live`: replies come
 * - `unknown`: this Jupyter server does not manage the hub (404)
 * - `error`: the last request failed (the data shown is older)
 */
export type FeedStatus = 'loading' | 'live' | 'unknown' | 'error';

export class DashboardFeed {
  constructor(
    private _api: HubCtlAPI,
    readonly hubId: string,
    readonly store: DashboardStore,
    isVisible: () => boolean
  ) {
    this._poll = new Poll({
      auto: false,
      factory: () => this._tick(),
      frequency: { interval: FEED_INTERVAL, backoff: true, max: FEED_INTERVAL * 10 },
      name: `jupyter-hub-ctl:dashboard:${hubId}`,
      standby: () => (isVisible() ? 'when-hidden' : true)
    });
  }

  /** Emitted after every reply (or failure). */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  get status(): FeedStatus {
    return this._status;
  }

  get message(): string {
    return this._message;
  }

  /** Time (ms) the last reply took to take in. */
  get ingestMs(): number {
    return this._ingestMs[this._ingestMs.length - 1] ?? 0;
  }

  /** Times (ms) the last replies took to take in. */
  get ingestTimes(): readonly number[] {
    return this._ingestMs;
  }

  start(): void {
    void this._poll.start();
  }

  /** Ask now (e.g. when the dashboard is shown again). */
  refresh(): void {
    void this._poll.refresh();
  }

  dispose(): void {
    this._poll.dispose();
    Signal.clearData(this);
  }

  private async _tick(): Promise<void> {
    try {
      const snapshot = await this._api.dashboard(
        this.hubId,
        this.store.since,
        this.store.since === null ? FIRST_LIMIT : STREAM_LIMIT
      );
      const started = performance.now();
      this.store.ingest(snapshot, started);
      if (snapshot.stream?.truncated) {
        // more changes wait after this reply's end: read them now, not in a second
        setTimeout(() => void this._poll.refresh(), 0);
      }
      this._ingestMs.push(performance.now() - started);
      if (this._ingestMs.length > INGEST_SAMPLES) {
        this._ingestMs.shift();
      }
      this._status = 'live';
      this._message = '';
    } catch (reason) {
      if (reason instanceof HubCtlError && reason.status === 404) {
        this._status = 'unknown';
        this._message = this.store.hub
          ? `Hub ${this.hubId} is gone: it was stopped or removed.`
          : `This Jupyter server does not manage a hub named ${this.hubId}.`;
      } else {
        this._status = 'error';
        this._message = describe(reason);
      }
      this._changed.emit();
      // Rejecting makes the poll back off while the server cannot answer.
      throw reason;
    }
    this._changed.emit();
  }

  private _poll: Poll;
  private _changed = new Signal<this, void>(this);
  private _status: FeedStatus = 'loading';
  private _message = '';
  private _ingestMs: number[] = [];
}

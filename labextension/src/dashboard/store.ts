/**
 * What one dashboard holds of a hub: a bounded window of it, never its whole
 * history. Tasks are kept for `windowSeconds` (and at most `maxTasks` of
 * them), throughput in one-second bins and queue depth in samples over the
 * same window, progress as counters per function or label (at most
 * `maxGroups`), and the latest engines and queue counts.
 */

import { hubLoad } from '../format';
import { IDashboardSnapshot, IEngine, IHostSample, IHub, IQueues, IStreamTask } from '../types';

export interface IStoreOptions {
  /** Seconds of tasks, throughput and queue depth kept (and shown). */
  windowSeconds: number;
  /** Most tasks kept for the task stream; the oldest finished ones go first. */
  maxTasks: number;
  /** Most functions / labels counted in the progress view. */
  maxGroups: number;
}

export const DEFAULT_STORE_OPTIONS: IStoreOptions = {
  windowSeconds: 180,
  maxTasks: 20_000,
  maxGroups: 40
};

/** The shortest span (s) the charts show: a dashboard opened a moment ago zooms in this far. */
export const MIN_SPAN = 30;

/** Most unfinished tasks remembered for progress counts (a huge backlog is counted, not kept). */
const MAX_OPEN = 200_000;

const FINISHED: ReadonlySet<string> = new Set(['ok', 'error', 'aborted']);

export function isFinished(task: IStreamTask): boolean {
  return FINISHED.has(task.state);
}

export function isFailed(task: IStreamTask): boolean {
  return task.state === 'error' || task.state === 'aborted';
}

/** Progress of one function or label. */
export interface IGroup {
  key: string;
  total: number;
  done: number;
  failed: number;
  /** Hub time of its last change (for eviction). */
  touched: number;
}

export interface IQueueSample {
  time: number;
  running: number;
  queued: number;
  unassigned: number;
}

/** What groups a task in the progress view and colours it: its label, else its function. */
export function groupKey(task: IStreamTask): string {
  return task.label || task.name || '(unnamed)';
}

export class DashboardStore {
  constructor(readonly options: IStoreOptions = DEFAULT_STORE_OPTIONS) {}

  /** Bumped on every change: views redraw when it moved. */
  version = 0;
  hub: IHub | null = null;
  engines: IEngine[] = [];
  hosts: { [host: string]: IHostSample } = {};
  queues: IQueues | null = null;
  /** Tasks on engines, within the window (by msg_id). */
  readonly tasks = new Map<string, IStreamTask>();
  /** One-second bins of finished tasks: hub second -> [ok, failed]. */
  readonly throughput = new Map<number, [number, number]>();
  readonly queueSamples: IQueueSample[] = [];
  readonly groups = new Map<string, IGroup>();
  /** Hub time of the last reply that had more changes after it (a burst being caught up). */
  truncatedAt: number | null = null;
  /** How many replies had more changes after them. */
  truncatedReplies = 0;
  /** Why the task stream is not available (null while it is). */
  streamError: string | null = null;
  /** How far (ms) this browser's clock runs ahead of the server's. */
  skew = 0;

  /**
   * The seconds before `now` the charts show: from the oldest data this
   * dashboard has (its first reply, or the oldest task it was told of), at
   * least `MIN_SPAN`, at most the window.
   */
  span(now: number): number {
    const earliest = this._earliest ?? now;
    return Math.min(this.options.windowSeconds, Math.max(MIN_SPAN, Math.ceil(now - earliest)));
  }

  /** The hub's clock now (epoch s), estimated from the last reply; null before one. */
  hubNow(at: number = performance.now()): number | null {
    if (this._hubTime === null) {
      return null;
    }
    return this._hubTime + (at - this._receivedAt) / 1000;
  }

  /** Take one reply in; `receivedAt` is `performance.now()` when it arrived. */
  ingest(snapshot: IDashboardSnapshot, receivedAt: number = performance.now()): void {
    this.hub = snapshot.hub;
    this.engines = snapshot.engines;
    this.hosts = snapshot.hosts ?? {};
    this.queues = snapshot.queues;
    const serverTime = Date.parse(snapshot.time);
    this.skew = Number.isNaN(serverTime) ? 0 : Date.now() - serverTime;
    this.streamError = snapshot.stream ? null : snapshot.stream_error || 'the hub has no task stream';
    const now = snapshot.stream ? snapshot.stream.now : (this.hubNow(receivedAt) ?? Date.now() / 1000);
    this._hubTime = now;
    this._receivedAt = receivedAt;
    this._earliest = Math.min(this._earliest ?? now, now);
    if (snapshot.stream) {
      if (snapshot.stream.truncated) {
        this.truncatedAt = now;
        this.truncatedReplies++;
      }
      for (const task of snapshot.stream.tasks) {
        this._take(task, now);
      }
      this.since = snapshot.stream.now;
    }
    const load = hubLoad(snapshot.queues);
    this.queueSamples.push({ time: now, ...load });
    this._prune(now);
    this.version++;
  }

  /** Whether the tasks held reached `maxTasks` (older ones were let go before the window ends). */
  get full(): boolean {
    return this.tasks.size >= this.options.maxTasks;
  }

  /** The `since` of the next stream request (null: the latest changes). */
  since: number | null = null;

  /** Lanes of the task stream: engines now registered, and those with tasks in the window. */
  lanes(): number[] {
    const ids = new Set<number>();
    for (const engine of this.engines) {
      if (typeof engine.id === 'number') {
        ids.add(engine.id);
      }
    }
    for (const task of this.tasks.values()) {
      if (task.engine_id !== null) {
        ids.add(task.engine_id);
      }
    }
    return [...ids].sort((a, b) => a - b);
  }

  /** Progress groups, most recently active first. */
  progress(): IGroup[] {
    return [...this.groups.values()].sort((a, b) => b.touched - a.touched || a.key.localeCompare(b.key));
  }

  private _take(task: IStreamTask, now: number): void {
    const known = this.tasks.get(task.msg_id);
    if (known && isFinished(known)) {
      return; // a finished task does not change again; never count it twice
    }
    const key = groupKey(task);
    const open = this._open.get(task.msg_id);
    const group = this._group(key, now);
    if (open === undefined && !known) {
      group.total++;
    }
    if (isFinished(task)) {
      this._open.delete(task.msg_id);
      if (isFailed(task)) {
        group.failed++;
      } else {
        group.done++;
      }
      if (task.completed !== null) {
        this._bin(task.completed, isFailed(task), now);
      }
    } else if (this._open.size < MAX_OPEN || open !== undefined) {
      this._open.set(task.msg_id, key);
    }
    const start = task.started ?? task.submitted;
    if (task.engine_id !== null && start !== null && (task.started !== null || isFinished(task))) {
      this.tasks.set(task.msg_id, task);
      this._earliest = Math.min(this._earliest ?? start, start);
    }
  }

  private _bin(completed: number, failed: boolean, now: number): void {
    if (completed < now - this.options.windowSeconds) {
      return;
    }
    const second = Math.floor(completed);
    const bin = this.throughput.get(second) ?? [0, 0];
    bin[failed ? 1 : 0]++;
    this.throughput.set(second, bin);
  }

  private _group(key: string, now: number): IGroup {
    let group = this.groups.get(key);
    if (!group) {
      group = { key, total: 0, done: 0, failed: 0, touched: now };
      this.groups.set(key, group);
      this._evictGroups();
    }
    group.touched = now;
    return group;
  }

  /** Past `maxGroups`, forget the least recently active groups that have nothing in flight. */
  private _evictGroups(): void {
    if (this.groups.size <= this.options.maxGroups) {
      return;
    }
    const idle = [...this.groups.values()]
      .filter(g => g.done + g.failed >= g.total)
      .sort((a, b) => a.touched - b.touched);
    for (const group of idle) {
      if (this.groups.size <= this.options.maxGroups) {
        break;
      }
      this.groups.delete(group.key);
    }
  }

  private _prune(now: number): void {
    const oldest = now - this.options.windowSeconds;
    for (const [id, task] of this.tasks) {
      if (isFinished(task) && (task.completed ?? now) < oldest) {
        this.tasks.delete(id);
      }
    }
    // Over the count, the finished tasks that came first (about the oldest) go first.
    for (const [id, task] of this.tasks) {
      if (this.tasks.size <= this.options.maxTasks) {
        break;
      }
      if (isFinished(task)) {
        this.tasks.delete(id);
      }
    }
    for (const second of this.throughput.keys()) {
      if (second < oldest - 1) {
        this.throughput.delete(second);
      }
    }
    let drop = 0;
    while (drop < this.queueSamples.length && this.queueSamples[drop].time < oldest) {
      drop++;
    }
    this.queueSamples.splice(0, drop);
  }

  private _open = new Map<string, string>();
  private _hubTime: number | null = null;
  private _earliest: number | null = null;
  private _receivedAt = 0;
}

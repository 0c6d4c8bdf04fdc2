/**
 * Words and numbers as the panel, the dashboard and the notebook widgets show them.
 */

import { IEngine, IQueueCounts, IQueues } from './types';

/**
 * What an engine is doing, in the notebook widgets' words: `busy` with work
 * queued or running, `idle` without, `silent` when its last heartbeat is
 * older than `SILENT_AFTER` seconds.
 */
export type EngineActivity = 'idle' | 'busy' | 'silent';

/** Seconds without a heartbeat after which an engine is shown as silent. */
export const SILENT_AFTER = 10;

export function engineActivity(counts: IQueueCounts, heartbeatAge: number | null): EngineActivity {
  if (heartbeatAge !== null && heartbeatAge > SILENT_AFTER) {
    return 'silent';
  }
  return counts.queue + counts.tasks > 0 ? 'busy' : 'idle';
}

/**
 * An engine's work as the notebook widgets count it: the hub's counts are
 * tasks handed to the engine (direct `queue` and load-balanced `tasks`); an
 * engine runs one at a time, the rest wait on it.
 */
export function engineLoad(counts: IQueueCounts): { running: number; queued: number } {
  const outstanding = counts.queue + counts.tasks;
  return { running: Math.min(1, outstanding), queued: Math.max(0, outstanding - 1) };
}

/** A hub's totals in the same words: running, queued on engines, not yet assigned. */
export function hubLoad(queues: IQueues): { running: number; queued: number; unassigned: number } {
  let running = 0;
  let queued = 0;
  for (const counts of Object.values(queues.engines)) {
    const load = engineLoad(counts);
    running += load.running;
    queued += load.queued;
  }
  return { running, queued, unassigned: queues.unassigned };
}

/**
 * The age (s) of an engine's last heartbeat at `now` (ms, this browser's
 * clock). `skew` (ms) is how far this browser's clock is ahead of the
 * server's, so the age does not depend on the two clocks agreeing.
 */
export function heartbeatAge(engine: IEngine, now: number, skew = 0): number | null {
  return ageSeconds(engine.last_heartbeat, now - skew);
}

/** Seconds since an ISO time, or null when there is none. */
export function ageSeconds(iso: string | null, now: number): number | null {
  if (!iso) {
    return null;
  }
  const then = Date.parse(iso);
  if (Number.isNaN(then)) {
    return null;
  }
  return Math.max(0, (now - then) / 1000);
}

/** A short age: `0.4s`, `12s`, `3m`, `2h`. */
export function formatAge(seconds: number | null): string {
  if (seconds === null) {
    return '—';
  }
  if (seconds < 10) {
    return `${seconds.toFixed(1)}s`;
  }
  if (seconds < 60) {
    return `${Math.floor(seconds)}s`;
  }
  if (seconds < 3600) {
    return `${Math.floor(seconds / 60)}m`;
  }
  return `${Math.floor(seconds / 3600)}h`;
}

/** A duration of a task: `850ms`, `4.2s`, `3m 05s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) {
    return '—';
  }
  if (seconds < 1) {
    return `${Math.round(seconds * 1000)}ms`;
  }
  if (seconds < 60) {
    return `${seconds.toFixed(seconds < 10 ? 1 : 0)}s`;
  }
  const minutes = Math.floor(seconds / 60);
  const rest = Math.floor(seconds % 60);
  return `${minutes}m ${String(rest).padStart(2, '0')}s`;
}

const BYTE_UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** Bytes in binary units with three significant digits: `512 B`, `41.2 MB`. */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < BYTE_UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const digits = unit === 0 || value >= 100 ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

/** A wall-clock time of day from epoch seconds: `14:03:27`. */
export function formatClock(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toLocaleTimeString([], { hour12: false });
}

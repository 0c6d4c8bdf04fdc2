/**
 * The dashboard's engines view: one row per engine with its CPU and memory as
 * bars that follow every report, its state in the notebook's words, the task
 * it runs and its host; sortable by any column.
 */

import * as React from 'react';

import { engineActivity, formatBytes, heartbeatAge } from '../format';
import { IEngine, IHostSample, IQueues } from '../types';

type SortKey = 'id' | 'state' | 'cpu' | 'memory' | 'task' | 'host' | 'done';

interface IRow {
  id: number | string;
  state: string;
  cpu: number | null;
  rss: number | null;
  /** Share (0-1) of its host's memory. */
  memoryShare: number | null;
  task: string;
  host: string;
  done: number;
}

const COLUMNS: { key: SortKey; label: string; title: string }[] = [
  { key: 'id', label: 'engine', title: 'engine id' },
  { key: 'state', label: 'state', title: 'idle, busy (tasks running or waiting) or silent (no heartbeat for 10 s)' },
  { key: 'cpu', label: 'CPU', title: 'CPU use, 100% = one core' },
  { key: 'memory', label: 'memory', title: "resident memory; the bar is its share of the host's memory" },
  { key: 'task', label: 'task', title: 'the task the engine runs now' },
  { key: 'host', label: 'host', title: 'where the engine runs' },
  { key: 'done', label: 'done', title: 'tasks the engine completed' }
];

function rowsOf(
  engines: readonly IEngine[],
  hosts: { [host: string]: IHostSample },
  queues: IQueues | null,
  skew: number
): IRow[] {
  const now = Date.now();
  return engines.map(engine => {
    const counts = queues?.engines[String(engine.id)] ?? engine;
    const metrics = engine.metrics ?? null;
    const memTotal = hosts[engine.host]?.mem_total ?? 0;
    const state = engineActivity(counts, heartbeatAge(engine, now, skew));
    return {
      id: engine.id,
      state,
      cpu: metrics ? metrics.cpu : null,
      rss: metrics ? metrics.rss : null,
      memoryShare: metrics && memTotal > 0 ? metrics.rss / memTotal : null,
      task: state !== 'busy' ? '' : metrics?.task ? metrics.task_name || metrics.task.slice(0, 8) : '…',
      host: engine.host,
      done: counts.completed
    };
  });
}

function compare(a: IRow, b: IRow, key: SortKey): number {
  const value = (row: IRow): number | string => {
    switch (key) {
      case 'memory':
        return row.rss ?? -1;
      case 'cpu':
        return row.cpu ?? -1;
      default:
        return row[key];
    }
  };
  const x = value(a);
  const y = value(b);
  if (typeof x === 'number' && typeof y === 'number') {
    return x - y;
  }
  return String(x).localeCompare(String(y), undefined, { numeric: true });
}

/** A bar (0-1 of its track; past 1 it is full and marked) with its value as text. */
function Meter(props: { share: number | null; text: string; kind: string }): JSX.Element {
  const share = props.share ?? 0;
  return (
    <div className={`jp-HubCtl-meter jp-mod-${props.kind}`} data-value={props.share ?? ''}>
      <div className="jp-HubCtl-meterTrack">
        <div
          className={`jp-HubCtl-meterFill${share > 1 ? ' jp-mod-over' : ''}`}
          style={{ width: `${Math.min(1, Math.max(0, share)) * 100}%` }}
        />
      </div>
      <span className="jp-HubCtl-meterText">{props.text}</span>
    </div>
  );
}

export function EnginesView(props: {
  engines: readonly IEngine[];
  hosts: { [host: string]: IHostSample };
  queues: IQueues | null;
  skew: number;
}): JSX.Element {
  const [sort, setSort] = React.useState<{ key: SortKey; descending: boolean }>({
    key: 'id',
    descending: false
  });
  const rows = rowsOf(props.engines, props.hosts, props.queues, props.skew);
  rows.sort((a, b) => (sort.descending ? -1 : 1) * compare(a, b, sort.key));
  const anyMetrics = rows.some(row => row.cpu !== null);
  if (rows.length === 0) {
    return <div className="jp-HubCtl-note">No engines registered.</div>;
  }
  return (
    <div className="jp-HubCtl-dashEngines" data-testid="hubctl-dash-engines">
      {!anyMetrics && (
        <div className="jp-HubCtl-note">These engines report no CPU or memory figures.</div>
      )}
      <table className="jp-HubCtl-dashTable">
        <thead>
          <tr>
            {COLUMNS.map(column => (
              <th
                key={column.key}
                title={column.title}
                aria-sort={
                  sort.key === column.key ? (sort.descending ? 'descending' : 'ascending') : 'none'
                }
              >
                <button
                  className="jp-HubCtl-sortButton"
                  data-sort={column.key}
                  onClick={() =>
                    setSort({
                      key: column.key,
                      descending: sort.key === column.key ? !sort.descending : column.key === 'cpu' || column.key === 'memory'
                    })
                  }
                >
                  {column.label}
                  {sort.key === column.key ? (sort.descending ? ' ▾' : ' ▴') : ''}
                </button>
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map(row => (
            <tr key={String(row.id)} data-engine-id={String(row.id)} data-state={row.state}>
              <td>{String(row.id)}</td>
              <td>
                <span className={`jp-HubCtl-activity jp-mod-${row.state}`}>{row.state}</span>
              </td>
              <td className="jp-HubCtl-meterCell">
                <Meter
                  kind="cpu"
                  share={row.cpu === null ? null : row.cpu / 100}
                  text={row.cpu === null ? '—' : `${Math.round(row.cpu)}%`}
                />
              </td>
              <td className="jp-HubCtl-meterCell">
                <Meter
                  kind="memory"
                  share={row.memoryShare}
                  text={row.rss === null ? '—' : formatBytes(row.rss)}
                />
              </td>
              <td className="jp-HubCtl-taskCell" title={row.task}>
                {row.task}
              </td>
              <td className="jp-HubCtl-hostCell" title={row.host}>
                {row.host}
              </td>
              <td className="jp-HubCtl-numberCell">{row.done}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

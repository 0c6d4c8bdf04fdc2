import * as React from 'react';

import { engineActivity, engineLoad, formatAge, heartbeatAge } from './format';
import { IEngine, IEngineSummary, IQueueCounts, IQueues } from './types';

/** From this many engines on, the panel adds them all up above the table. */
const SUMMARY_FROM = 200;

/** Re-render every second, so ages grow between reads. */
function useNow(): number {
  const [now, setNow] = React.useState(Date.now());
  React.useEffect(() => {
    const timer = window.setInterval(() => setNow(Date.now()), 1000);
    return () => window.clearInterval(timer);
  }, []);
  return now;
}

function plural(count: number, noun: string): string {
  return `${count.toLocaleString()} ${noun}${count === 1 ? '' : 's'}`;
}

/** A hub's engines added up: `251 engines on 3 hosts: 250 running, 1 dead`. */
export function summaryText(summary: IEngineSummary): string {
  const states = Object.entries(summary.states)
    .map(([state, count]) => `${count.toLocaleString()} ${state}`)
    .join(', ');
  const hosts = summary.hosts ? ` on ${plural(summary.hosts, 'host')}` : '';
  return `${plural(summary.total, 'engine')}${hosts}: ${states}`;
}

/**
 * The selected hub's engines: one row per engine read so far (a page to
 * begin with), the summary of all of them for big hubs, and a button that
 * reads the next page.
 */
export function EngineTable(props: {
  engines: readonly IEngine[] | null;
  total: number;
  summary: IEngineSummary | null;
  queues: IQueues | null;
  skew: number;
  active: boolean;
  onMore: () => void;
}): JSX.Element {
  const now = useNow();
  if (props.engines === null) {
    return <div className="jp-HubCtl-note">Loading engines…</div>;
  }
  if (props.engines.length === 0) {
    return (
      <div className="jp-HubCtl-note" data-testid="hubctl-no-engines">
        {props.active ? 'No engines registered yet.' : 'No engines.'}
      </div>
    );
  }
  const hidden = props.total - props.engines.length;
  return (
    <>
      {props.summary && (hidden > 0 || props.total > SUMMARY_FROM) && (
        <div className="jp-HubCtl-engineSummary" data-testid="hubctl-engine-summary">
          {summaryText(props.summary)}
        </div>
      )}
      <table className="jp-HubCtl-engines" data-testid="hubctl-engines">
        <thead>
          <tr>
            <th title="engine id (hover for its host and pid)">id</th>
            <th className="jp-HubCtl-hostColumn">host</th>
            <th>state</th>
            <th title="tasks running on the engine">run</th>
            <th title="tasks waiting on the engine">queue</th>
            <th title="tasks the engine completed">done</th>
            <th title="time since the engine's last heartbeat">beat</th>
          </tr>
        </thead>
        <tbody>
          {props.engines.map(engine => (
            <EngineRow key={String(engine.id)} engine={engine} queues={props.queues} now={now} skew={props.skew} />
          ))}
        </tbody>
      </table>
      {hidden > 0 && (
        <button
          className="jp-mod-styled jp-HubCtl-moreEngines"
          data-testid="hubctl-more-engines"
          title="Read the next page of engines"
          onClick={props.onMore}
        >
          Show more ({props.engines.length.toLocaleString()} of {props.total.toLocaleString()})
        </button>
      )}
    </>
  );
}

function EngineRow(props: { engine: IEngine; queues: IQueues | null; now: number; skew: number }): JSX.Element {
  const { engine } = props;
  // the queues event counts the first page only: later rows use the engine's own counts
  const counts: IQueueCounts = props.queues?.engines[String(engine.id)] ?? engine;
  const age = heartbeatAge(engine, props.now, props.skew);
  const activity = engineActivity(counts, age);
  const load = engineLoad(counts);
  const where = [engine.host, engine.pid ? `pid ${engine.pid}` : ''].filter(Boolean).join(', ');
  return (
    <tr className="jp-HubCtl-engineRow" data-engine-id={String(engine.id)} data-state={activity}>
      <td title={where || undefined}>{String(engine.id)}</td>
      <td className="jp-HubCtl-hostColumn" title={where || undefined}>
        {engine.host}
      </td>
      <td>
        <span className={`jp-HubCtl-activity jp-mod-${activity}`}>{activity}</span>
      </td>
      <td>{load.running}</td>
      <td>{load.queued}</td>
      <td>{counts.completed}</td>
      <td data-age={age === null ? '' : age.toFixed(1)}>{formatAge(age)}</td>
    </tr>
  );
}

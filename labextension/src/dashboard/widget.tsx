/**
 * The hub dashboard: task stream, throughput, queue depth, engines and
 * progress of one hub, live from the server extension. The same widget is a
 * main-area tab of JupyterLab and the output of `hub.dashboard()` in a
 * notebook (through the MIME renderer).
 */

import { ReactWidget, UseSignal } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { HubCtlAPI } from '../api';
import { hubLoad } from '../format';
import { StateBadge } from '../hublist';
import { CanvasChart, quantile } from './canvas';
import { EnginesView } from './engines';
import { DashboardFeed, STREAM_LIMIT } from './feed';
import { Figure, ProgressView } from './parts';
import { TaskStreamPointer } from './pointer';
import { QueueDepthChart, ThroughputChart } from './series';
import { DashboardStore } from './store';
import { Colours, streamHeight, TaskStreamChart } from './taskstream';

/** Frame gaps (ms) kept for the responsiveness figure. */
const FRAME_SAMPLES = 300;

/** Seconds the note about skipped changes stays after the last reply that skipped some. */
const TRUNCATED_NOTE = 10;

/** Put a chart's node (created outside React) into the React tree. */
function ChartSlot({ node }: { node: HTMLElement }): JSX.Element {
  const ref = React.useRef<HTMLDivElement>(null);
  React.useEffect(() => {
    ref.current?.appendChild(node);
  }, [node]);
  return <div className="jp-HubCtl-chartSlot" ref={ref} />;
}

function Legend({ items }: { items: [string, string][] }): JSX.Element {
  return (
    <span className="jp-HubCtl-legend">
      {items.map(([kind, text]) => (
        <span key={kind} className={`jp-HubCtl-legendItem jp-mod-${kind}`}>
          {text}
        </span>
      ))}
    </span>
  );
}

export class DashboardWidget extends ReactWidget {
  constructor(options: DashboardWidget.IOptions) {
    super();
    this.hubId = options.hubId;
    this.addClass('jp-HubCtl-dashboard');
    this.addClass('jp-ThemedContainer');
    this.node.dataset.hubId = options.hubId;
    this.node.dataset.testid = 'hubctl-dashboard';
    this.store = new DashboardStore();
    this.feed = new DashboardFeed(options.api, options.hubId, this.store, () => this.isVisible);
    this._streamChart = new TaskStreamChart(this.store, this._colours);
    this._throughput = new ThroughputChart(this.store);
    this._queueDepth = new QueueDepthChart(this.store);
    this._pointer = new TaskStreamPointer(this._streamChart, this.store);
    this.feed.changed.connect(this._onData, this);
    this.feed.start();
  }

  readonly hubId: string;
  readonly store: DashboardStore;
  readonly feed: DashboardFeed;

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    window.cancelAnimationFrame(this._frame);
    this._pointer.dispose();
    this.feed.dispose();
    super.dispose();
  }

  protected render(): JSX.Element {
    return (
      <UseSignal signal={this.feed.changed}>
        {() => this._view()}
      </UseSignal>
    );
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.feed.refresh();
    this._loop();
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this._loop();
  }

  private _charts(): CanvasChart[] {
    return [this._streamChart, this._throughput, this._queueDepth];
  }

  private _onData(): void {
    this.node.dataset.status = this.feed.status;
    this.node.dataset.ingestMs = this.feed.ingestMs.toFixed(2);
    this.node.dataset.truncatedReplies = String(this.store.truncatedReplies);
    this.node.dataset.ingestP50 = quantile([...this.feed.ingestTimes], 0.5).toFixed(2);
    this.node.dataset.ingestP95 = quantile([...this.feed.ingestTimes], 0.95).toFixed(2);
    this._pointer.refresh();
  }

  /**
   * Redraw on animation frames while visible: when new data came, or when
   * time moved the window by a pixel. Also keeps the gaps between frames, so
   * a page that stops responding shows (`data-frame-max-ms`).
   */
  private _loop(): void {
    window.cancelAnimationFrame(this._frame);
    const step = (at: number): void => {
      if (!this.isAttached || !this.isVisible || this.isDisposed) {
        return;
      }
      if (this._lastFrame > 0) {
        this._gaps.push(at - this._lastFrame);
        if (this._gaps.length > FRAME_SAMPLES) {
          this._gaps.shift();
        }
      }
      this._lastFrame = at;
      const now = this.store.hubNow(at);
      const width = this._streamChart.canvas.clientWidth || 1;
      const secondsPerPixel = now === null ? 1 : this.store.span(now) / width;
      if (
        now !== null &&
        (this.store.version !== this._drawnVersion || now - this._drawnAt >= secondsPerPixel)
      ) {
        this._drawnVersion = this.store.version;
        this._drawnAt = now;
        this._streamChart.node.style.height = `${streamHeight(this.store.lanes().length)}px`;
        for (const chart of this._charts()) {
          chart.render();
        }
        this.node.dataset.frameMaxMs = Math.max(...this._gaps, 0).toFixed(1);
        this.node.dataset.frameP95 = quantile(this._gaps, 0.95).toFixed(1);
      }
      this._frame = window.requestAnimationFrame(step);
    };
    this._lastFrame = 0;
    this._frame = window.requestAnimationFrame(step);
  }

  private _view(): JSX.Element {
    const { store, feed } = this;
    const hub = store.hub;
    const load = store.queues ? hubLoad(store.queues) : null;
    const groups = store.progress();
    const failed = groups.reduce((sum, g) => sum + g.failed, 0);
    const rate = this._throughput.node.dataset.rate ?? '0';
    return (
      <div className="jp-HubCtl-dashInner" data-status={feed.status}>
        <header className="jp-HubCtl-dashHeader">
          <h2 className="jp-HubCtl-dashTitle">{hub ? hub.name || hub.id : this.hubId}</h2>
          {hub && <StateBadge state={hub.state} />}
          {load && (
            <span className="jp-HubCtl-figures">
              <Figure label="engines" value={String(store.engines.length)} testid="hubctl-fig-engines" />
              <Figure label="running" value={String(load.running)} testid="hubctl-fig-running" />
              <Figure label="queued" value={String(load.queued + load.unassigned)} testid="hubctl-fig-queued" />
              <Figure label="tasks/s" value={rate} testid="hubctl-fig-rate" title="finished per second, last 5 s" />
              <Figure label="failed" value={String(failed)} testid="hubctl-fig-failed" title="failed tasks seen" />
            </span>
          )}
        </header>
        {feed.status !== 'live' && feed.message && (
          <div
            className={`jp-HubCtl-dashBanner jp-mod-${feed.status}`}
            data-testid="hubctl-dash-banner"
            role="status"
          >
            {feed.message}
          </div>
        )}
        {feed.status === 'loading' && <div className="jp-HubCtl-note">Connecting to the hub…</div>}
        {store.streamError && (
          <div className="jp-HubCtl-dashBanner" data-testid="hubctl-dash-stream-error">
            Task stream not available: {store.streamError}
          </div>
        )}
        {store.truncatedAt !== null && (store.hubNow() ?? 0) - store.truncatedAt < TRUNCATED_NOTE && (
          <div className="jp-HubCtl-note" data-testid="hubctl-dash-truncated">
            Catching up with a burst of more than {STREAM_LIMIT.toLocaleString()} task changes in
            one second.
          </div>
        )}
        <section className="jp-HubCtl-dashSection jp-HubCtl-dashStream">
          <h3>
            Task stream{' '}
            <span className="jp-HubCtl-dashHint" data-testid="hubctl-stream-hint">
              one lane per engine,{' '}
              {store.full
                ? `the last ${store.options.maxTasks.toLocaleString()} tasks`
                : `up to the last ${store.options.windowSeconds / 60} minutes`}
              ; it holds still under the pointer: hover or click a bar
            </span>
          </h3>
          <ChartSlot node={this._streamChart.node} />
          <ChartSlot node={this._pointer.pinned} />
        </section>
        <div className="jp-HubCtl-dashRow">
          <section className="jp-HubCtl-dashSection">
            <h3>
              Throughput <Legend items={[['ok', 'done/s'], ['failed', 'failed/s']]} />
            </h3>
            <ChartSlot node={this._throughput.node} />
          </section>
          <section className="jp-HubCtl-dashSection">
            <h3>
              Queue depth{' '}
              <Legend items={[['running', 'running'], ['queued', 'queued'], ['unassigned', 'unassigned']]} />
            </h3>
            <ChartSlot node={this._queueDepth.node} />
          </section>
        </div>
        <div className="jp-HubCtl-dashRow">
          <section className="jp-HubCtl-dashSection">
            <h3>Engines</h3>
            <EnginesView
              engines={store.engines}
              hosts={store.hosts}
              queues={store.queues}
              skew={store.skew}
            />
          </section>
          <section className="jp-HubCtl-dashSection">
            <h3>Progress</h3>
            <ProgressView groups={groups} colours={this._colours} node={this.node} />
          </section>
        </div>
      </div>
    );
  }

  private _colours = new Colours();
  private _streamChart: TaskStreamChart;
  private _throughput: ThroughputChart;
  private _queueDepth: QueueDepthChart;
  private _pointer: TaskStreamPointer;
  private _frame = 0;
  private _lastFrame = 0;
  private _gaps: number[] = [];
  private _drawnVersion = -1;
  private _drawnAt = 0;
}

export namespace DashboardWidget {
  export interface IOptions {
    api: HubCtlAPI;
    hubId: string;
  }
}

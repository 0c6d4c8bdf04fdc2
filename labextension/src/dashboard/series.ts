/**
 * Time series charts over the dashboard's window: throughput (tasks finished
 * per second, ok and failed) and queue depth (running, queued on engines,
 * not yet assigned).
 */

import { CanvasChart, drawTimeAxis, ITheme, ITimeScale, niceStep, timeX } from './canvas';
import { DashboardStore } from './store';

const LEFT = 40;
const AXIS = 16;
const TOP = 6;

/** A line of a chart: its points and how it is drawn. */
interface ILine {
  points: [number, number][];
  colour: string;
  fill: boolean;
}

/** Draw lines on a shared time scale with a value axis from 0 to a round maximum. */
function drawLines(
  ctx: CanvasRenderingContext2D,
  width: number,
  height: number,
  theme: ITheme,
  scale: ITimeScale,
  lines: ILine[]
): number {
  const bottom = height - AXIS;
  let max = 0;
  for (const line of lines) {
    for (const [, value] of line.points) {
      max = Math.max(max, value);
    }
  }
  const step = niceStep(Math.max(max, 1), Math.max(2, Math.floor((bottom - TOP) / 28)));
  const top = Math.max(step, Math.ceil(Math.max(max, 1) / step) * step);
  const y = (value: number): number => bottom - (value / top) * (bottom - TOP);
  drawTimeAxis(ctx, scale, TOP, bottom, theme);
  ctx.strokeStyle = theme.grid;
  ctx.fillStyle = theme.textMuted;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  ctx.beginPath();
  for (let value = 0; value <= top; value += step) {
    const yy = Math.round(y(value)) + 0.5;
    ctx.moveTo(scale.left, yy);
    ctx.lineTo(scale.right, yy);
    ctx.fillText(formatValue(value), LEFT - 6, yy);
  }
  ctx.stroke();
  for (const line of lines) {
    // A series that stayed at zero draws nothing (it would only recolour the base line).
    if (!line.points.some(([, value]) => value > 0)) {
      continue;
    }
    const xy = line.points.map(([t, v]) => [timeX(scale, t), y(v)]);
    if (line.fill) {
      ctx.globalAlpha = 0.35;
      ctx.fillStyle = line.colour;
      ctx.beginPath();
      ctx.moveTo(xy[0][0], bottom);
      for (const [x, yy] of xy) {
        ctx.lineTo(x, yy);
      }
      ctx.lineTo(xy[xy.length - 1][0], bottom);
      ctx.closePath();
      ctx.fill();
      ctx.globalAlpha = 1;
    }
    ctx.strokeStyle = line.colour;
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    xy.forEach(([x, yy], i) => (i === 0 ? ctx.moveTo(x, yy) : ctx.lineTo(x, yy)));
    ctx.stroke();
  }
  return top;
}

function formatValue(value: number): string {
  return value >= 10_000 ? `${Math.round(value / 1000)}k` : String(value);
}

function scaleOf(store: DashboardStore, now: number, width: number): ITimeScale {
  return { start: now - store.span(now), end: now, left: LEFT, right: width - 4 };
}

/** Tasks finished per second (ok as a filled area, failed as a line), one point per second. */
export class ThroughputChart extends CanvasChart {
  constructor(private _store: DashboardStore) {
    super('jp-HubCtl-throughput', 'hubctl-throughput');
  }

  /** ok and failed per second over the window, the second under way left out. */
  series(now: number): { ok: [number, number][]; failed: [number, number][] } {
    const ok: [number, number][] = [];
    const failed: [number, number][] = [];
    const last = Math.floor(now) - 1;
    const first = Math.ceil(now - this._store.span(now));
    for (let second = first; second <= last; second++) {
      const bin = this._store.throughput.get(second);
      ok.push([second + 1, bin ? bin[0] : 0]);
      failed.push([second + 1, bin ? bin[1] : 0]);
    }
    return { ok, failed };
  }

  protected draw(ctx: CanvasRenderingContext2D, width: number, height: number, theme: ITheme): void {
    const now = this._store.hubNow();
    if (now === null) {
      return;
    }
    const { ok, failed } = this.series(now);
    const scale = scaleOf(this._store, now, width);
    drawLines(ctx, width, height, theme, scale, [
      { points: ok, colour: theme.ok, fill: true },
      { points: failed, colour: theme.error, fill: false }
    ]);
    const recent = ok.slice(-5);
    const rate = recent.reduce((sum, [, v]) => sum + v, 0) / Math.max(1, recent.length);
    this.node.dataset.points = String(ok.length);
    this.node.dataset.completed = String(ok.reduce((sum, [, v]) => sum + v, 0));
    this.node.dataset.failed = String(failed.reduce((sum, [, v]) => sum + v, 0));
    this.node.dataset.rate = rate.toFixed(1);
  }
}

/** Running, queued and unassigned tasks, sampled at every poll. */
export class QueueDepthChart extends CanvasChart {
  constructor(private _store: DashboardStore) {
    super('jp-HubCtl-queueDepth', 'hubctl-queue-depth');
  }

  protected draw(ctx: CanvasRenderingContext2D, width: number, height: number, theme: ITheme): void {
    const now = this._store.hubNow();
    if (now === null) {
      return;
    }
    const samples = this._store.queueSamples;
    const points = (pick: (s: (typeof samples)[number]) => number): [number, number][] =>
      samples.map(s => [s.time, pick(s)]);
    drawLines(ctx, width, height, theme, scaleOf(this._store, now, width), [
      { points: points(s => s.running), colour: theme.brand, fill: true },
      { points: points(s => s.queued), colour: theme.warn, fill: false },
      { points: points(s => s.unassigned), colour: theme.muted, fill: false }
    ]);
    const last = samples[samples.length - 1];
    this.node.dataset.samples = String(samples.length);
    this.node.dataset.running = String(last?.running ?? 0);
    this.node.dataset.queued = String(last?.queued ?? 0);
    this.node.dataset.unassigned = String(last?.unassigned ?? 0);
  }
}

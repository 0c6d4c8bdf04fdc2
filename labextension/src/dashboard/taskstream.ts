/**
 * The task stream: one lane per engine, one bar per task from its start to
 * its end (or now, while it runs), coloured by its label (or its function
 * when it has none, as the progress view groups them), failed
 * tasks in the theme's error colour with a mark at their end. The last
 * `windowSeconds` scroll by; hovering a bar shows the task, clicking pins it.
 */

import { IStreamTask } from '../types';
import { CanvasChart, drawTimeAxis, ITheme, ITimeScale, timeX } from './canvas';
import { DashboardStore, groupKey, isFailed, isFinished } from './store';

/** Space (px) left of the lanes for engine ids, and under them for the time axis. */
const GUTTER = 34;
const AXIS = 16;
/** How far (px) from a bar a pointer still hits it. */
const HIT_SLOP = 2;

/** Colours of functions / labels: the first one seen takes the palette's first colour, and so on. */
export class Colours {
  index(key: string): number {
    let index = this._keys.get(key);
    if (index === undefined) {
      index = this._keys.size;
      this._keys.set(key, index);
    }
    return index;
  }

  colour(key: string, palette: string[]): string {
    return palette[this.index(key) % palette.length];
  }

  private _keys = new Map<string, number>();
}

interface IPlaced {
  task: IStreamTask;
  x0: number;
  x1: number;
}

export class TaskStreamChart extends CanvasChart {
  constructor(
    private _store: DashboardStore,
    private _colours: Colours
  ) {
    super('jp-HubCtl-taskStream', 'hubctl-task-stream');
  }

  /** The tasks drawn in each lane at the last draw (for hit testing). */
  hit(x: number, y: number): IStreamTask | null {
    const lane = Math.floor((y - this._top) / this._laneHeight);
    const placed = this._placed.get(this._laneIds[lane]);
    if (!placed || x < GUTTER) {
      return null;
    }
    let best: IPlaced | null = null;
    for (const p of placed) {
      if (x >= p.x0 - HIT_SLOP && x <= p.x1 + HIT_SLOP) {
        if (!best || Math.abs((p.x0 + p.x1) / 2 - x) < Math.abs((best.x0 + best.x1) / 2 - x)) {
          best = p;
        }
      }
    }
    return best?.task ?? null;
  }

  protected draw(ctx: CanvasRenderingContext2D, width: number, height: number, theme: ITheme): void {
    const store = this._store;
    const now = store.hubNow();
    const lanes = store.lanes();
    this._laneIds = lanes;
    this._placed = new Map();
    this._top = 4;
    const plotHeight = height - AXIS - this._top;
    this._laneHeight = lanes.length ? plotHeight / lanes.length : plotHeight;
    const scale: ITimeScale = {
      start: (now ?? 0) - store.options.windowSeconds,
      end: now ?? 0,
      left: GUTTER,
      right: width - 4
    };
    this.node.dataset.lanes = String(lanes.length);
    if (now === null || lanes.length === 0) {
      this.node.dataset.bars = '0';
      this.node.dataset.lanesWithBars = '0';
      return;
    }
    drawTimeAxis(ctx, scale, this._top, height - AXIS, theme);
    this._drawLaneLabels(ctx, lanes, theme);
    const laneIndex = new Map(lanes.map((id, i) => [id, i]));
    const byColour = new Map<string, number[]>();
    const failed: number[] = [];
    const gap = this._laneHeight > 6 ? 1 : 0;
    let bars = 0;
    for (const task of store.tasks.values()) {
      const lane = task.engine_id === null ? undefined : laneIndex.get(task.engine_id);
      const start = task.started ?? task.submitted;
      if (lane === undefined || start === null) {
        continue;
      }
      const end = task.completed ?? now;
      if (end < scale.start) {
        continue;
      }
      const x0 = Math.max(scale.left, timeX(scale, start));
      const x1 = Math.max(x0 + 1, Math.min(scale.right, timeX(scale, end)));
      const y = this._top + lane * this._laneHeight + gap;
      const rect = [x0, y, x1 - x0, Math.max(1, this._laneHeight - 2 * gap)];
      if (isFailed(task)) {
        failed.push(...rect);
      } else {
        const colour = this._colours.colour(groupKey(task), theme.palette);
        let list = byColour.get(colour);
        if (!list) {
          list = [];
          byColour.set(colour, list);
        }
        list.push(...rect);
      }
      const placed = this._placed.get(lanes[lane]) ?? [];
      placed.push({ task, x0, x1 });
      this._placed.set(lanes[lane], placed);
      bars++;
    }
    for (const [colour, rects] of byColour) {
      fillRects(ctx, rects, colour);
    }
    fillRects(ctx, failed, theme.error);
    this._markEnds(ctx, failed, theme);
    this.node.dataset.bars = String(bars);
    this.node.dataset.lanesWithBars = String(this._placed.size);
    this.node.dataset.failedBars = String(failed.length / 4);
    this.node.dataset.running = String(
      [...store.tasks.values()].filter(t => !isFinished(t)).length
    );
  }

  /** A tick above the end of every failed bar, so even a one-pixel failure shows. */
  private _markEnds(ctx: CanvasRenderingContext2D, rects: number[], theme: ITheme): void {
    ctx.fillStyle = theme.error;
    for (let i = 0; i < rects.length; i += 4) {
      const x = rects[i] + rects[i + 2];
      ctx.fillRect(x - 1, rects[i + 1] - 1, 2, rects[i + 3] + 2);
    }
  }

  private _drawLaneLabels(ctx: CanvasRenderingContext2D, lanes: number[], theme: ITheme): void {
    ctx.fillStyle = theme.textMuted;
    ctx.font = theme.font;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    // Label every lane when there is room, else every k-th one.
    const every = Math.max(1, Math.ceil(12 / this._laneHeight));
    for (let i = 0; i < lanes.length; i += every) {
      ctx.fillText(String(lanes[i]), GUTTER - 6, this._top + (i + 0.5) * this._laneHeight);
    }
  }

  private _laneIds: number[] = [];
  private _placed = new Map<number, IPlaced[]>();
  private _top = 0;
  private _laneHeight = 1;
}

function fillRects(ctx: CanvasRenderingContext2D, rects: number[], colour: string): void {
  if (rects.length === 0) {
    return;
  }
  ctx.fillStyle = colour;
  ctx.beginPath();
  for (let i = 0; i < rects.length; i += 4) {
    ctx.rect(rects[i], rects[i + 1], rects[i + 2], rects[i + 3]);
  }
  ctx.fill();
}

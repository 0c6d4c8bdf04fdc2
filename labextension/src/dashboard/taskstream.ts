/**
 * The task stream: one lane per engine, one bar per task from its start to
 * its end (or now, while it runs), coloured by its label (or its function
 * when it has none, as the progress view groups them), failed tasks in the
 * theme's error colour with a mark at their end. The visible span scrolls
 * with the hub's clock; hovering a bar shows the task, clicking pins it.
 *
 * Drawing costs the same whatever the number of tasks: each lane is first
 * painted into a row of pixels (a task narrower than a pixel still takes
 * one; a failure wins its pixel), then every run of equal pixels is one
 * rectangle. Thousands of short tasks on 64 engines are a few hundred
 * rectangles per frame. Where a task is wide enough, a one-pixel line in
 * the background colour marks where it starts, so neighbours stay apart.
 */

import { IStreamTask } from '../types';
import { CanvasChart, drawTimeAxis, ITheme, ITimeScale, timeX } from './canvas';
import { DashboardStore, groupKey, isFailed, isFinished } from './store';

/** Space (px) left of the lanes for engine ids, and under them for the time axis. */
const GUTTER = 34;
const AXIS = 16;
const TOP = 4;
/** How far (px) from a bar a pointer still hits it. */
const HIT_SLOP = 2;
/** The pixel value of a failed task (colours are 1 + their palette index). */
const FAILED = 0xffff;
/** A task at least this wide (px) gets a line where it starts. */
const SEPARATED = 4;
/** Height (px) of a lane when there is room; the chart grows with the lanes up to `MAX_HEIGHT`. */
const LANE_HEIGHT = 32;
const MIN_HEIGHT = 140;
const MAX_HEIGHT = 420;

/** The height (px) the task stream wants for `lanes` lanes. */
export function streamHeight(lanes: number): number {
  return Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, lanes * LANE_HEIGHT + TOP + AXIS));
}

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

/** Where a task's bar is on the x axis (null: not drawn). */
function extent(task: IStreamTask, scale: ITimeScale, now: number): [number, number] | null {
  const start = task.started ?? task.submitted;
  if (start === null) {
    return null;
  }
  const end = task.completed ?? now;
  if (end < scale.start) {
    return null;
  }
  const x0 = Math.max(scale.left, timeX(scale, start));
  return [x0, Math.max(x0 + 1, Math.min(scale.right, timeX(scale, end)))];
}

export class TaskStreamChart extends CanvasChart {
  constructor(
    private _store: DashboardStore,
    private _colours: Colours
  ) {
    super('jp-HubCtl-taskStream', 'hubctl-task-stream');
  }

  /**
   * Hold the time axis at this hub time (null: follow the hub's clock), so
   * a bar under the pointer stays there to be read and clicked.
   */
  get hold(): number | null {
    return this._hold;
  }

  set hold(time: number | null) {
    this._hold = time;
    if (time === null) {
      delete this.node.dataset.paused;
    } else {
      this.node.dataset.paused = 'true';
    }
  }

  /** The task under a point of the last drawing (null: none). */
  hit(x: number, y: number): IStreamTask | null {
    const scale = this._scale;
    const engine = this._laneIds[Math.floor((y - TOP) / this._laneHeight)];
    if (!scale || engine === undefined || x < GUTTER) {
      return null;
    }
    let best: IStreamTask | null = null;
    let distance = Infinity;
    for (const task of this._store.tasks.values()) {
      const at = task.engine_id === engine ? extent(task, scale, scale.end) : null;
      if (at && x >= at[0] - HIT_SLOP && x <= at[1] + HIT_SLOP) {
        const d = Math.abs((at[0] + at[1]) / 2 - x);
        if (d < distance) {
          best = task;
          distance = d;
        }
      }
    }
    return best;
  }

  protected draw(ctx: CanvasRenderingContext2D, width: number, height: number, theme: ITheme): void {
    const store = this._store;
    const now = this._hold ?? store.hubNow();
    const lanes = store.lanes();
    this._laneIds = lanes;
    this._laneHeight = (height - AXIS - TOP) / Math.max(1, lanes.length);
    this.node.dataset.lanes = String(lanes.length);
    if (now === null || lanes.length === 0) {
      this._scale = null;
      this._report(0, 0, 0);
      return;
    }
    const scale: ITimeScale = { start: now - store.span(now), end: now, left: GUTTER, right: width - 4 };
    this._scale = scale;
    drawTimeAxis(ctx, scale, TOP, height - AXIS, theme);
    this._drawLaneLabels(ctx, lanes, theme);
    const pixels = Math.ceil(width);
    const rows = lanes.map(() => new Uint16Array(pixels));
    const laneIndex = new Map(lanes.map((id, i) => [id, i]));
    const ends: number[][] = lanes.map(() => []);
    const starts: number[][] = lanes.map(() => []);
    let bars = 0;
    let failed = 0;
    for (const task of store.tasks.values()) {
      const lane = task.engine_id === null ? undefined : laneIndex.get(task.engine_id);
      const at = lane === undefined ? null : extent(task, scale, now);
      if (lane === undefined || at === null) {
        continue;
      }
      const row = rows[lane];
      const value = isFailed(task) ? FAILED : 1 + this._colours.index(groupKey(task));
      const last = Math.min(pixels, Math.ceil(at[1]));
      for (let px = Math.floor(at[0]); px < last; px++) {
        if (row[px] !== FAILED) {
          row[px] = value;
        }
      }
      if (value === FAILED) {
        ends[lane].push(at[1]);
        failed++;
      }
      if (at[1] - at[0] >= SEPARATED && at[0] > scale.left) {
        starts[lane].push(Math.floor(at[0]));
      }
      bars++;
    }
    this._paint(ctx, rows, theme);
    this._lines(ctx, starts, 1, theme.background);
    this._lines(ctx, ends, 2, theme.error);
    let running = 0;
    for (const task of store.tasks.values()) {
      running += isFinished(task) ? 0 : 1;
    }
    this._report(bars, failed, running);
    this.node.dataset.lanesWithBars = String(rows.filter(row => row.some(v => v !== 0)).length);
  }

  /** Every run of equal pixels of a lane as one rectangle, one path per colour. */
  private _paint(ctx: CanvasRenderingContext2D, rows: Uint16Array[], theme: ITheme): void {
    const gap = this._laneHeight > 6 ? 1 : 0;
    const barHeight = Math.max(1, this._laneHeight - 2 * gap);
    const paths = new Map<number, Path2D>();
    let rects = 0;
    rows.forEach((row, lane) => {
      const y = TOP + lane * this._laneHeight + gap;
      let px = 0;
      while (px < row.length) {
        const value = row[px];
        let end = px + 1;
        while (end < row.length && row[end] === value) {
          end++;
        }
        if (value !== 0) {
          let path = paths.get(value);
          if (!path) {
            path = new Path2D();
            paths.set(value, path);
          }
          path.rect(px, y, end - px, barHeight);
          rects++;
        }
        px = end;
      }
    });
    for (const [value, path] of paths) {
      ctx.fillStyle = value === FAILED ? theme.error : theme.palette[(value - 1) % theme.palette.length];
      ctx.fill(path);
    }
    this.node.dataset.rects = String(rects);
  }

  /**
   * Lane-high lines at some x of each lane: in the background colour where
   * wide tasks start, in the error colour where failed ones end (so even a
   * one-pixel failure shows).
   */
  private _lines(ctx: CanvasRenderingContext2D, xs: number[][], width: number, colour: string): void {
    const path = new Path2D();
    xs.forEach((lane, i) => {
      const y = TOP + i * this._laneHeight;
      for (const x of lane) {
        path.rect(x - (width > 1 ? 1 : 0), y, width, Math.max(2, this._laneHeight));
      }
    });
    ctx.fillStyle = colour;
    ctx.fill(path);
  }

  private _drawLaneLabels(ctx: CanvasRenderingContext2D, lanes: number[], theme: ITheme): void {
    ctx.fillStyle = theme.textMuted;
    ctx.font = theme.font;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    // Label every lane when there is room, else every k-th one.
    const every = Math.max(1, Math.ceil(12 / this._laneHeight));
    for (let i = 0; i < lanes.length; i += every) {
      ctx.fillText(String(lanes[i]), GUTTER - 6, TOP + (i + 0.5) * this._laneHeight);
    }
  }

  private _report(bars: number, failed: number, running: number): void {
    this.node.dataset.bars = String(bars);
    this.node.dataset.failedBars = String(failed);
    this.node.dataset.running = String(running);
    if (bars === 0) {
      this.node.dataset.lanesWithBars = '0';
    }
  }

  private _hold: number | null = null;
  private _laneIds: number[] = [];
  private _laneHeight = 1;
  private _scale: ITimeScale | null = null;
}

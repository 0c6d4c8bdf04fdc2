/**
 * The dashboard's canvas charts: a base that sizes a canvas to its box at the
 * screen's pixel ratio and records what each draw cost, and the theme's
 * colours read from JupyterLab's `--jp-*` CSS variables at draw time (so a
 * theme switch applies at the next frame).
 */

/** Colours and fonts of the current theme, as a chart draws with them. */
export interface ITheme {
  text: string;
  textMuted: string;
  background: string;
  grid: string;
  axis: string;
  ok: string;
  error: string;
  warn: string;
  brand: string;
  muted: string;
  font: string;
  /** Colours for functions / labels, in order. */
  palette: string[];
}

/**
 * The palette for functions and labels: mid-tone theme colours that stand out
 * on the theme's background, red left out (it marks errors).
 */
const PALETTE_VARIABLES = [
  '--jp-brand-color1',
  '--jp-warn-color1',
  '--jp-accent-color1',
  '--jp-mirror-editor-operator-color',
  '--jp-info-color1',
  '--jp-mirror-editor-string-2-color',
  '--jp-brand-color0',
  '--jp-warn-color0',
  '--jp-mirror-editor-comment-color',
  '--jp-accent-color0',
  '--jp-brand-color2',
  '--jp-warn-color2'
];

function cssVar(style: CSSStyleDeclaration, name: string, fallback: string): string {
  const value = style.getPropertyValue(name).trim();
  return value || fallback;
}

/** Read the theme from the computed style of `node` (inherits the page's variables). */
export function readTheme(node: HTMLElement): ITheme {
  const style = getComputedStyle(node);
  const text = cssVar(style, '--jp-ui-font-color1', 'currentColor');
  return {
    text,
    textMuted: cssVar(style, '--jp-ui-font-color2', text),
    background: cssVar(style, '--jp-layout-color1', 'transparent'),
    grid: cssVar(style, '--jp-border-color2', 'rgba(128,128,128,0.3)'),
    axis: cssVar(style, '--jp-border-color1', 'rgba(128,128,128,0.6)'),
    ok: cssVar(style, '--jp-success-color1', text),
    error: cssVar(style, '--jp-error-color1', text),
    warn: cssVar(style, '--jp-warn-color1', text),
    brand: cssVar(style, '--jp-brand-color1', text),
    muted: cssVar(style, '--jp-layout-color4', text),
    font: `${cssVar(style, '--jp-ui-font-size0', '11px')} ${cssVar(style, '--jp-ui-font-family', 'sans-serif')}`,
    palette: PALETTE_VARIABLES.map(name => cssVar(style, name, text))
  };
}

/** Draw statistics a chart keeps on its node (read by the browser tests). */
export interface IDrawStats {
  draws: number;
  lastMs: number;
  maxMs: number;
  /** The last `DRAW_SAMPLES` draw times (ms). */
  recent: number[];
}

const DRAW_SAMPLES = 200;

/** The `q` quantile (0-1) of some numbers (0 for none). */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) {
    return 0;
  }
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * A chart on a canvas that fills its node. `render()` draws at once;
 * subclasses implement `draw()` and say what they drew through `data-*`
 * attributes of their node.
 */
export abstract class CanvasChart {
  constructor(className: string, testId: string) {
    this.node = document.createElement('div');
    this.node.className = `jp-HubCtl-chart ${className}`;
    this.node.dataset.testid = testId;
    this.canvas = document.createElement('canvas');
    this.canvas.className = 'jp-HubCtl-chartCanvas';
    this.node.appendChild(this.canvas);
  }

  readonly node: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  readonly stats: IDrawStats = { draws: 0, lastMs: 0, maxMs: 0, recent: [] };

  /** Size the canvas to its box and draw; nothing while the node is not laid out. */
  render(): void {
    const width = this.canvas.clientWidth;
    const height = this.canvas.clientHeight;
    if (width === 0 || height === 0) {
      return;
    }
    const ratio = window.devicePixelRatio || 1;
    const pixelWidth = Math.round(width * ratio);
    const pixelHeight = Math.round(height * ratio);
    if (this.canvas.width !== pixelWidth || this.canvas.height !== pixelHeight) {
      this.canvas.width = pixelWidth;
      this.canvas.height = pixelHeight;
    }
    const ctx = this.canvas.getContext('2d');
    if (!ctx) {
      return;
    }
    const started = performance.now();
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    this.draw(ctx, width, height, readTheme(this.node));
    const spent = performance.now() - started;
    this.stats.draws++;
    this.stats.lastMs = spent;
    this.stats.maxMs = Math.max(this.stats.maxMs, spent);
    this.stats.recent.push(spent);
    if (this.stats.recent.length > DRAW_SAMPLES) {
      this.stats.recent.shift();
    }
    this.node.dataset.draws = String(this.stats.draws);
    this.node.dataset.drawMs = spent.toFixed(2);
    this.node.dataset.maxDrawMs = this.stats.maxMs.toFixed(2);
    this.node.dataset.drawP50 = quantile(this.stats.recent, 0.5).toFixed(2);
    this.node.dataset.drawP95 = quantile(this.stats.recent, 0.95).toFixed(2);
  }

  protected abstract draw(ctx: CanvasRenderingContext2D, width: number, height: number, theme: ITheme): void;
}

/** Round steps for an axis: 1, 2, 5 times a power of ten, about `count` of them up to `max`. */
export function niceStep(max: number, count: number): number {
  if (!(max > 0)) {
    return 1;
  }
  const raw = max / Math.max(1, count);
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  for (const factor of [1, 2, 5, 10]) {
    if (raw <= factor * power) {
      return factor * power;
    }
  }
  return 10 * power;
}

/** Steps of a time axis (seconds) that read well: 5 s, 10 s, 15 s, 30 s, 1 m, ... */
const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600];

/** A time step giving at most `count` ticks over `span` seconds. */
export function timeStep(span: number, count: number): number {
  return TIME_STEPS.find(step => span / step <= count) ?? TIME_STEPS[TIME_STEPS.length - 1];
}

/** A tick label of a time axis: seconds before now, as `-30s`, `-1m30s`, `-2m`, `now`. */
export function relativeLabel(secondsAgo: number): string {
  if (secondsAgo < 0.5) {
    return 'now';
  }
  const seconds = Math.round(secondsAgo);
  if (seconds < 60) {
    return `-${seconds}s`;
  }
  const rest = seconds % 60;
  return `-${Math.floor(seconds / 60)}m${rest ? `${rest}s` : ''}`;
}

/** The horizontal extent of a time chart: seconds mapped to pixels. */
export interface ITimeScale {
  start: number;
  end: number;
  left: number;
  right: number;
}

export function timeX(scale: ITimeScale, t: number): number {
  return scale.left + ((t - scale.start) / (scale.end - scale.start)) * (scale.right - scale.left);
}

/** Vertical grid lines and `-30s`-style labels under a time chart. */
export function drawTimeAxis(
  ctx: CanvasRenderingContext2D,
  scale: ITimeScale,
  top: number,
  bottom: number,
  theme: ITheme
): void {
  const span = scale.end - scale.start;
  const step = timeStep(span, Math.max(2, Math.floor((scale.right - scale.left) / 110)));
  ctx.strokeStyle = theme.grid;
  ctx.fillStyle = theme.textMuted;
  ctx.font = theme.font;
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  ctx.lineWidth = 1;
  ctx.beginPath();
  for (let ago = 0; ago <= span; ago += step) {
    const x = Math.round(timeX(scale, scale.end - ago)) + 0.5;
    ctx.moveTo(x, top);
    ctx.lineTo(x, bottom);
  }
  ctx.stroke();
  for (let ago = 0; ago <= span; ago += step) {
    const x = timeX(scale, scale.end - ago);
    ctx.textAlign = ago === 0 ? 'right' : 'center';
    ctx.fillText(relativeLabel(ago), ago === 0 ? x : Math.max(x, scale.left + 12), bottom + 3);
  }
}

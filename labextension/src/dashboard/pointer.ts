/**
 * Hover and click on the task stream: while the pointer is over it the
 * stream holds still (new tasks still arrive), a tooltip follows the
 * pointer over a bar, and a click pins the task's details under the chart
 * (a click elsewhere, or Escape, unpins them).
 */

import { formatClock, formatDuration } from '../format';
import { IStreamTask } from '../types';
import { DashboardStore } from './store';
import { TaskStreamChart } from './taskstream';

function span(from: number | null, to: number | null): string {
  return from !== null && to !== null ? formatDuration(to - from) : '—';
}

/** Fill `node` with everything the task stream knows of one task. */
export function renderTaskDetails(node: HTMLElement, task: IStreamTask, now: number | null): void {
  const running = task.completed === null && task.started !== null;
  const end = task.completed ?? (running ? now : null);
  const rows: [string, string][] = [
    ['function', task.name || '—'],
    ['label', task.label || '—'],
    ['state', task.state],
    ['engine', task.engine_id === null ? '—' : String(task.engine_id)],
    ['submitted', task.submitted === null ? '—' : formatClock(task.submitted)],
    ['waited', span(task.submitted, task.started)],
    ['ran', span(task.started, end) + (running ? ' so far' : '')],
    ['msg_id', task.msg_id]
  ];
  const list = document.createElement('dl');
  list.className = 'jp-HubCtl-taskDetails';
  for (const [key, value] of rows) {
    const term = document.createElement('dt');
    term.textContent = key;
    const detail = document.createElement('dd');
    detail.textContent = value;
    if (key === 'state') {
      detail.className = `jp-mod-${value}`;
    }
    list.append(term, detail);
  }
  node.replaceChildren(list);
  node.dataset.msgId = task.msg_id;
}

export class TaskStreamPointer {
  constructor(
    private _chart: TaskStreamChart,
    private _store: DashboardStore
  ) {
    this.tooltip = document.createElement('div');
    this.tooltip.className = 'jp-HubCtl-tooltip';
    this.tooltip.dataset.testid = 'hubctl-task-tooltip';
    this.tooltip.hidden = true;
    this.pinned = document.createElement('div');
    this.pinned.className = 'jp-HubCtl-pinned';
    this.pinned.dataset.testid = 'hubctl-task-pinned';
    this.pinned.hidden = true;
    _chart.node.appendChild(this.tooltip);
    const canvas = _chart.canvas;
    canvas.addEventListener('pointermove', this._onMove);
    canvas.addEventListener('pointerleave', this._onLeave);
    canvas.addEventListener('click', this._onClick);
    _chart.node.tabIndex = 0;
    _chart.node.addEventListener('keydown', this._onKey);
  }

  readonly tooltip: HTMLDivElement;
  readonly pinned: HTMLDivElement;

  /** Keep the pinned task's details current (a running task ends, its duration grows). */
  refresh(): void {
    const id = this.pinned.dataset.msgId;
    if (this.pinned.hidden || !id) {
      return;
    }
    const task = this._store.tasks.get(id);
    if (task) {
      renderTaskDetails(this.pinned, task, this._store.hubNow());
    }
  }

  dispose(): void {
    const canvas = this._chart.canvas;
    canvas.removeEventListener('pointermove', this._onMove);
    canvas.removeEventListener('pointerleave', this._onLeave);
    canvas.removeEventListener('click', this._onClick);
    this._chart.node.removeEventListener('keydown', this._onKey);
  }

  private _at(event: MouseEvent): { task: IStreamTask | null; x: number; y: number } {
    const box = this._chart.canvas.getBoundingClientRect();
    const x = event.clientX - box.left;
    const y = event.clientY - box.top;
    return { task: this._chart.hit(x, y), x, y };
  }

  private _onMove = (event: PointerEvent): void => {
    if (this._chart.hold === null) {
      this._chart.hold = this._store.hubNow();
    }
    const { task, x, y } = this._at(event);
    if (!task) {
      this._hideTooltip();
      return;
    }
    renderTaskDetails(this.tooltip, task, this._store.hubNow());
    this.tooltip.hidden = false;
    const width = this._chart.node.clientWidth;
    const left = x + 12 + this.tooltip.offsetWidth > width ? x - 12 - this.tooltip.offsetWidth : x + 12;
    this.tooltip.style.left = `${Math.max(0, left)}px`;
    this.tooltip.style.top = `${this._tooltipTop(y)}px`;
    this._chart.canvas.style.cursor = 'pointer';
  };

  /**
   * Below the pointer, or above it where the dashboard's visible area ends
   * first (a notebook output, a short main-area tab), never above that area.
   */
  private _tooltipTop(y: number): number {
    const height = this.tooltip.offsetHeight;
    const area = this._chart.node.closest('.jp-HubCtl-dashboard')?.getBoundingClientRect();
    if (!area) {
      return y + 12;
    }
    const box = this._chart.node.getBoundingClientRect();
    if (box.top + y + 12 + height <= area.bottom) {
      return y + 12;
    }
    return Math.max(area.top - box.top, y - 12 - height);
  }

  private _onLeave = (): void => {
    this._chart.hold = null;
    this._hideTooltip();
  };

  private _hideTooltip(): void {
    this.tooltip.hidden = true;
    this._chart.canvas.style.cursor = '';
  }

  private _onClick = (event: MouseEvent): void => {
    const { task } = this._at(event);
    if (task) {
      renderTaskDetails(this.pinned, task, this._store.hubNow());
      this.pinned.hidden = false;
    } else {
      this._unpin();
    }
  };

  private _onKey = (event: KeyboardEvent): void => {
    if (event.key === 'Escape') {
      this._unpin();
    }
  };

  private _unpin(): void {
    this.pinned.hidden = true;
    delete this.pinned.dataset.msgId;
  }
}

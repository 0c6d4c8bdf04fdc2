import { NotebookPanel } from '@jupyterlab/notebook';
import { MimeData } from '@lumino/coreutils';
import { Drag } from '@lumino/dragdrop';
import { Widget } from '@lumino/widgets';

/** The mime type under which notebooks accept dropped cells. */
export const CELLS_MIME = 'application/vnd.jupyter.cells';

/** How far (px) the pointer moves before a press on a hub row becomes a drag. */
const DRAG_THRESHOLD = 5;

/**
 * Put `source` into a notebook as a code cell: into its active cell if that
 * is an empty code cell, else into a new cell below it.
 *
 * Waits for the notebook's content to be loaded first, so the loaded file
 * does not replace the cell.
 */
export async function insertCodeCell(
  panel: NotebookPanel,
  source: string
): Promise<void> {
  await panel.context.ready;
  const notebook = panel.content;
  const model = notebook.model;
  if (!model) {
    throw new Error('the notebook has no content');
  }
  const active = notebook.activeCell;
  if (
    active &&
    active.model.type === 'code' &&
    active.model.sharedModel.getSource().trim() === ''
  ) {
    active.model.sharedModel.setSource(source);
    return;
  }
  const index = active ? notebook.activeCellIndex + 1 : model.cells.length;
  model.sharedModel.insertCell(index, {
    cell_type: 'code',
    source,
    metadata: {}
  });
  notebook.activeCellIndex = index;
  notebook.deselectAll();
}

/**
 * Watch a press on a hub row; past a few pixels of movement, start a Lumino
 * drag carrying a code cell that notebooks accept as a dropped cell.
 *
 * `source` is resolved while the drag runs: the cell's text is filled in
 * when it arrives, and the drop reads it then.
 */
export function watchForDrag(
  event: PointerEvent,
  owner: Widget,
  label: string,
  source: () => Promise<string>
): void {
  if (event.button !== 0) {
    return;
  }
  const startX = event.clientX;
  const startY = event.clientY;
  const cleanup = (): void => {
    document.removeEventListener('pointermove', onMove, true);
    document.removeEventListener('pointerup', cleanup, true);
  };
  const onMove = (move: PointerEvent): void => {
    const dx = Math.abs(move.clientX - startX);
    const dy = Math.abs(move.clientY - startY);
    if (dx < DRAG_THRESHOLD && dy < DRAG_THRESHOLD) {
      return;
    }
    cleanup();
    startDrag(owner, label, source, move.clientX, move.clientY);
  };
  document.addEventListener('pointermove', onMove, true);
  document.addEventListener('pointerup', cleanup, true);
}

function startDrag(
  owner: Widget,
  label: string,
  source: () => Promise<string>,
  clientX: number,
  clientY: number
): void {
  const cell = {
    cell_type: 'code',
    source: '# fetching the hub connection snippet...',
    metadata: {},
    outputs: [],
    execution_count: null
  };
  source().then(
    text => {
      cell.source = text;
    },
    (reason: unknown) => {
      const message = reason instanceof Error ? reason.message : String(reason);
      cell.source = `# could not get the hub connection snippet: ${message}`;
    }
  );
  const mimeData = new MimeData();
  mimeData.setData(CELLS_MIME, [cell]);
  const image = document.createElement('div');
  image.className = 'jp-HubCtl-dragImage';
  image.textContent = label;
  const drag = new Drag({
    mimeData,
    dragImage: image,
    proposedAction: 'copy',
    supportedActions: 'copy',
    source: owner
  });
  void drag.start(clientX, clientY);
}

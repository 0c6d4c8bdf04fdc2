"""The results browser's widgets: a grid built from stock ipywidgets.

The grid is a ``GridBox`` whose cells are flat ``Button`` s (a click anywhere on a row shows that
record; a click on a heading sorts by it) and a ``Checkbox`` per row (the selection).  Its
columns are fractions of the cell's width with a minimum of zero, so it always fits the output
area (long values end in an ellipsis and show whole in the tooltip).  The page's row widgets
are made once and only their values change; the rows share one layout and one style model, and
the rows of a short page are hidden by a class, so paging and live updates send one small
message per changed cell (see ``LiveView._do_render``), never a model per cell.
Everything is styled by ``templates/style.css`` from JupyterLab's theme variables.
"""

from __future__ import annotations

from .browser import COLUMNS, STATE_FILTERS, TIME_RANGES
from .records import cells_of
from .render import template

# ids, engines, states, times and durations take the width of their content; the function / label
# and the result columns share the rest and shrink (to an ellipsis) before anything overflows
GRID_COLUMNS = "28px auto minmax(0, 2fr) auto auto auto auto auto auto minmax(0, 3fr)"
ALL = "all"  # the engine filter's "every engine" (a Dropdown cannot show None as a choice)


def _button(widgets, description="", tooltip="", classes=(), layout=None, style=None):
    """A flat button; its classes go out with its model (not as one more message each)."""
    extra = {} if style is None else {"style": style}
    return widgets.Button(description=description, tooltip=tooltip, _dom_classes=tuple(classes),
                          layout=widgets.Layout(width="auto") if layout is None else layout, **extra)


def build_grid(view, widgets):
    """The browser's widget tree; handles are kept on ``view`` (``_w_*``)."""
    cb = view.callback
    # filters
    view._w_state = widgets.Dropdown(options=list(STATE_FILTERS), value=view.state_filter, description="state",
                                     layout=widgets.Layout(width="auto"))
    view._w_engine = widgets.Dropdown(options=[ALL], value=ALL, description="engine",
                                      layout=widgets.Layout(width="auto"))
    view._w_label = widgets.Text(value=view.label_filter, description="label", placeholder="name or label glob",
                                 continuous_update=False, layout=widgets.Layout(width="auto"))
    view._w_time = widgets.Dropdown(options=list(TIME_RANGES), value=view.time_filter, description="submitted",
                                    layout=widgets.Layout(width="auto"))
    view._w_refresh = _button(widgets, "refresh", "query the hub now")
    view._w_refresh.icon = "refresh"
    for control in (view._w_state, view._w_engine, view._w_label, view._w_time):
        control.style.description_width = "initial"
        control.observe(cb(lambda _c: _filters_changed(view), "filter"), "value")
    view._w_refresh.on_click(cb(lambda _b: view.refresh() if not view.live else view.poke(), "refresh"))
    filters = widgets.HBox([view._w_state, view._w_engine, view._w_label, view._w_time, view._w_refresh])
    filters.add_class("hubctl-bar-row")

    view._w_summary = widgets.HTML()
    # the grid: a heading row, then page_size rows
    view._w_check_page = widgets.Checkbox(value=False, indent=False, description="",
                                          tooltip="check every row of this page")
    view._w_check_page.observe(cb(lambda c: view.check_page(c["new"]), "check"), "value")
    view._w_heads = []
    for key, heading in COLUMNS:
        head = _button(widgets, heading, f"sort by {heading}", ("hubctl-th",))
        head.on_click(cb(lambda _b, key=key: view.sort_by(key), "sort"))
        view._w_heads.append(head)
    view._w_rows = []
    cells = [view._w_check_page, *view._w_heads]
    # the rows' cells share one layout and one style model (the checkboxes the heading's): a page is
    # ~180 widget models, not ~540
    cell_layout, cell_style = widgets.Layout(width="auto"), widgets.ButtonStyle()
    check_layout, check_style = view._w_check_page.layout, view._w_check_page.style
    for i in range(view.page_size):
        check = widgets.Checkbox(value=False, indent=False, description="", layout=check_layout, style=check_style)
        check.observe(cb(lambda c, i=i: _row_checked(view, i, c["new"]), "check"), "value")
        row = [check]
        for key, _ in COLUMNS:
            cell = _button(widgets, classes=("hubctl-cell",), layout=cell_layout, style=cell_style)
            cell.on_click(cb(lambda _b, i=i: _row_clicked(view, i), "select"))
            row.append(cell)
        view._w_rows.append(row)
        cells += row
    view._w_grid = widgets.GridBox(cells, layout=widgets.Layout(grid_template_columns=GRID_COLUMNS, width="100%"))
    view._w_grid.add_class("hubctl-grid")
    # pager and actions
    view._w_first = _button(widgets, "«", "first page")
    view._w_prev = _button(widgets, "‹", "previous page")
    view._w_page = widgets.HTML()
    view._w_next = _button(widgets, "›", "next page")
    view._w_last = _button(widgets, "»", "last page")
    view._w_first.on_click(cb(lambda _b: view.go_to(0), "page"))
    view._w_prev.on_click(cb(lambda _b: view.go_to(view.page - 1), "page"))
    view._w_next.on_click(cb(lambda _b: view.go_to(view.page + 1), "page"))
    view._w_last.on_click(cb(lambda _b: view.go_to(view.pages - 1), "page"))
    view._w_resubmit = _button(widgets, "resubmit", "run the checked tasks (or the selected one) again")
    view._w_resubmit.icon = "repeat"
    view._w_resubmit.on_click(cb(lambda _b: view.resubmit(), "resubmit"))
    view._w_export = _button(widgets, "export", f"the checked rows (or all matching) as a pandas DataFrame "
                                                f"named {view.export_name}")
    view._w_export.icon = "table"
    view._w_export.on_click(cb(view.export, "export"))
    view._w_uncheck = _button(widgets, "clear selection", "uncheck every row")
    view._w_uncheck.on_click(cb(lambda _b: _clear_checks(view), "clear selection"))
    pager = widgets.HBox([view._w_first, view._w_prev, view._w_page, view._w_next, view._w_last,
                          view._w_resubmit, view._w_export, view._w_uncheck])
    pager.add_class("hubctl-bar-row")
    view._w_message = widgets.HTML()
    view._w_detail = widgets.HTML()
    box = widgets.VBox([view.style_widget(widgets), filters, view._w_summary, view._w_grid, pager, view._w_message,
                        view._w_detail], layout=widgets.Layout(width="100%"))
    box.add_class("hubctl")
    box.add_class("hubctl-browser")
    return box


def _filters_changed(view) -> None:
    engine = view._w_engine.value
    view.filter(state=view._w_state.value, engine=None if engine == ALL else engine, label=view._w_label.value,
                time=view._w_time.value)


def _row_clicked(view, i: int) -> None:
    if i < len(view.records):
        msg_id = view.records[i]["msg_id"]
        view.select(None if msg_id == view.selected else msg_id)


def _row_checked(view, i: int, on: bool) -> None:
    if i < len(view.records):
        view.check(view.records[i]["msg_id"], on)


def _clear_checks(view) -> None:
    with view._lock:
        view.checked = []
        view.render_now()


def _set_classes(widget, classes: list) -> None:
    classes = tuple(classes)
    if tuple(widget._dom_classes) != classes:
        widget._dom_classes = classes


def render_grid(view) -> None:
    """Copy the browser's state into its widgets (under its lock, as its rendering thread)."""
    context = view._context()
    engines = sorted(set(view._uuids.values()))
    options = [(ALL, ALL)] + [(str(e), e) for e in engines]
    if list(view._w_engine.options) != options:
        view._w_engine.options = options
    view._w_engine.value = view.engine_filter if view.engine_filter in engines else ALL
    view._w_state.value = view.state_filter
    view._w_label.value = view.label_filter
    view._w_time.value = view.time_filter
    parts = template("browser_parts.html.j2").module
    view._w_summary.value = str(parts.summary(context))
    for (key, heading), head in zip(COLUMNS, view._w_heads):
        arrow = (" ▼" if view.descending else " ▲") if key == view.sort_key else ""
        head.description = heading + arrow
        _set_classes(head, ["hubctl-th"] + (["hubctl-sorted"] if arrow else []))
    checked = set(view.checked)
    page_ids = [r["msg_id"] for r in view.records]
    view._w_check_page.value = bool(page_ids) and all(m in checked for m in page_ids)
    for i, row in enumerate(view._w_rows):
        record = view.records[i] if i < len(view.records) else None
        check, cells = row[0], row[1:]
        _set_classes(check, [] if record else ["hubctl-blank"])  # a short last page has no empty rows
        check.value = bool(record) and record["msg_id"] in checked
        texts = cells_of(record) if record else {}
        base = ["hubctl-cell"] + (["hubctl-odd"] if i % 2 else [])
        if record is None:
            base.append("hubctl-blank")
        elif record["msg_id"] == view.selected:
            base.append("hubctl-current")
        elif record["msg_id"] in checked:
            base.append("hubctl-checked")
        for (key, _), cell in zip(COLUMNS, cells):
            text = texts.get(key, "")
            cell.description = text
            cell.tooltip = (record["msg_id"] if key == "msg_id" else text) if record else ""
            cell.disabled = record is None
            _set_classes(cell, base + ([f"hubctl-state-{record['state']}"] if record and key == "state" else []))
    view._w_page.value = template("pager.html.j2").render(page=view.page + 1, pages=view.pages, total=view.total,
                                                          checked=len(checked))
    view._w_first.disabled = view._w_prev.disabled = view.page <= 0
    view._w_next.disabled = view._w_last.disabled = view.page >= view.pages - 1
    view._w_resubmit.description = f"resubmit ({len(checked)})" if checked else "resubmit"
    view._w_resubmit.disabled = not (checked or view.selected)
    view._w_uncheck.disabled = not checked
    view._w_message.value = template("message.html.j2").render(message=view.message, errors=context["errors"])
    view._w_detail.value = str(parts.detail(context["detail"]))
    if view.ended:
        view._widget.add_class("hubctl-ended")

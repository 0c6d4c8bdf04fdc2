"""The IPython shell used for ``execute_request`` (imported only when needed)."""

from __future__ import annotations

from typing import Callable


def make_shell(namespace: dict, publish_display: Callable, publish_result: Callable):
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class EngineDisplayHook(DisplayHook):
        """Sends the value of a cell's last expression as ``execute_result``."""

        def start_displayhook(self):
            self._data = {}
            self._metadata = {}

        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            self._data = format_dict
            self._metadata = md_dict or {}

        def finish_displayhook(self):
            if self._data:
                publish_result({"data": self._data, "metadata": self._metadata,
                                "execution_count": self.prompt_count})
            self._data = {}

    class EngineDisplayPublisher(DisplayPublisher):
        """Sends ``display()`` output as ``display_data``."""

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
            content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
            publish_display("update_display_data" if update else "display_data", content)

        def clear_output(self, wait=False):
            publish_display("clear_output", {"wait": wait})

    class EngineShell(InteractiveShell):
        """InteractiveShell that reports tracebacks instead of printing them."""

        last_traceback_lines = None
        current_parent = None

        def _showtraceback(self, etype, evalue, stb):
            self.last_traceback_lines = list(stb)

        def run_cell(self, *args, **kwargs):
            self.last_traceback_lines = None
            return super().run_cell(*args, **kwargs)

        def enable_gui(self, gui=None):
            pass

        def clear_namespace(self):
            """IPython's ``reset`` (same history session), whatever user code did to its names."""
            self.user_ns["_oh"] = self.history_manager.output_hist  # reset() empties it in place
            self.reset(new_session=False)

    # instance() registers the shell as the singleton, so display() and get_ipython() find it
    return EngineShell.instance(
        user_ns=namespace,
        displayhook_class=EngineDisplayHook,
        display_pub_class=EngineDisplayPublisher,
        colors="NoColor",
    )

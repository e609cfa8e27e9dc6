"""Per-port routing of esptool's output.

esptool logs through one process-wide logger (``esptool.logger.log``). To flash several ports at
once without mixing their output, atfab installs ONE dispatching logger (once, idempotently) whose
every call forwards to the :class:`EsptoolSink` of the *current context*: a
:class:`contextvars.ContextVar` that each :class:`atfab.link.flasher.Flasher` operation sets for the
duration of its esptool calls (:func:`routed`). Threads start with an empty context, so one
station worker thread per port gets its own sink without any locking. Calls made outside
:func:`routed` (e.g. someone running the esptool CLI in-process) go to the logger that was
installed before, unchanged.

The dispatcher holds no per-port state; the only process-wide action is installing it.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from esp_pylib.logger import EspLog, EspLogBase

#: Called with (done, total) of the current esptool progress bar (esptool's units: bytes sent).
BarCallback = Callable[[int, int], None]
#: Called with (level, text) for every complete line esptool prints.
LineCallback = Callable[[str, str], None]

_CURRENT: ContextVar["EsptoolSink | None"] = ContextVar("atfab_esptool_sink", default=None)
_INSTALL_LOCK = threading.Lock()


def _render(args: tuple[Any, ...], sep: str = " ") -> str:
    return sep.join(str(a) for a in args)


class EsptoolSink:
    """What one port's esptool calls print: a bounded line buffer plus optional callbacks.

    ``bars`` counts progress bars esptool opened while routed here (write_flash opens one per
    region it actually writes, none for a region it skips).
    """

    def __init__(self, *, on_line: LineCallback | None = None, on_bar: BarCallback | None = None,
                 keep: int = 400) -> None:
        self.on_line = on_line
        self.on_bar = on_bar
        self.lines: deque[tuple[str, str]] = deque(maxlen=keep)
        self.bars = 0
        self._partial = ""

    def text(self, level: str, message: str, *, end: str = "\n") -> None:
        """Record esptool text; ``end=""`` continues the current line like ``print``."""
        self._partial += message + end
        while "\n" in self._partial:
            line, self._partial = self._partial.split("\n", 1)
            line = line.rstrip()
            if line:
                self.lines.append((level, line))
                if self.on_line is not None:
                    self.on_line(level, line)

    def bar_started(self, total: int) -> None:
        self.bars += 1
        if self.on_bar is not None:
            self.on_bar(0, total)

    def bar(self, done: int, total: int) -> None:
        if self.on_bar is not None:
            self.on_bar(done, total)

    def tail(self, n: int = 8) -> list[str]:
        """The last ``n`` lines (for error messages)."""
        return [line for _, line in list(self.lines)[-n:]]


class _DispatchLogger(EspLogBase):
    """The one logger installed into esptool: forwards to the context's sink or the fallback."""

    def __init__(self, fallback: EspLogBase | None) -> None:
        self._fallback = fallback if fallback is not None else EspLog()

    @staticmethod
    def _sink() -> EsptoolSink | None:
        return _CURRENT.get()

    def print(self, *args: Any, **kwargs: Any) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.print(*args, **kwargs)
            return
        sink.text("info", _render(args, kwargs.get("sep", " ")), end=kwargs.get("end", "\n"))

    def err(self, *args: Any, suggestion: str | None = None) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.err(*args, suggestion=suggestion)
        else:
            sink.text("error", _render(args))

    def warn(self, *args: Any, suggestion: str | None = None) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.warn(*args, suggestion=suggestion)
        else:
            sink.text("warning", _render(args))

    # esptool still calls the historical names on its logger
    def warning(self, message: str, suggestion: str | None = None) -> None:
        self.warn(message, suggestion=suggestion)

    def error(self, message: str, suggestion: str | None = None) -> None:
        self.err(message, suggestion=suggestion)

    def note(self, *args: Any) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.note(*args)
        else:
            sink.text("note", _render(args))

    def hint(self, *args: Any) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.hint(*args)
        else:
            sink.text("hint", _render(args))

    def debug(self, *args: Any) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.debug(*args)
        else:
            sink.text("debug", _render(args, ""))

    def stage(self, finish: bool = False) -> None:
        if self._sink() is None:
            self._fallback.stage(finish=finish)

    def set_verbosity(self, mode: int | str) -> None:
        self._fallback.set_verbosity(mode)

    def set_logger(self, new_logger: Any) -> None:
        """Keep esptool's ``log.set_logger`` working: the new logger becomes the fallback."""
        from esptool.logger import EsptoolLogger  # esptool's logger module only once install() ran (see there)

        EsptoolLogger.set_logger(self, new_logger)  # type checks/wraps it into EspLog.instance
        new_instance = EspLog.instance
        EspLog.instance = self
        if new_instance is not None and new_instance is not self:
            self._fallback = new_instance

    def __getattr__(self, name: str) -> Any:
        # esptool-specific attributes (e.g. _smart_features) of the previous logger
        if name == "_fallback":
            raise AttributeError(name)
        return getattr(self._fallback, name)

    @contextmanager
    def progress(self, total: int, description: str = "", bar_length: int = 30, *, file: Any = None,
                 disable: bool = False, unit: str | None = None) -> Iterator[Any]:
        sink = self._sink()
        if sink is None:
            with self._fallback.progress(total, description, bar_length, file=file, disable=disable,
                                         unit=unit) as task:
                yield task
            return
        sink.bar_started(total)
        # the base implementation drives progress_bar() below; ``disable`` only hides a
        # terminal bar, the station still wants the numbers
        with EspLogBase.progress(self, total, description, bar_length, file=file, disable=False,
                                 unit=unit) as task:
            yield task

    def progress_bar(self, cur_iter: int, total_iters: int, prefix: str = "", suffix: str = "",
                     bar_length: int = 30) -> None:
        sink = self._sink()
        if sink is None:
            self._fallback.progress_bar(cur_iter, total_iters, prefix=prefix, suffix=suffix,
                                        bar_length=bar_length)
        else:
            sink.bar(cur_iter, total_iters)


def install() -> None:
    """Install the dispatching logger into esptool once (idempotent, thread-safe)."""
    with _INSTALL_LOCK:
        if isinstance(EspLog.instance, _DispatchLogger):
            return
        import esptool.logger  # noqa: F401  (installs esptool's own logger first)

        EspLog.instance = _DispatchLogger(EspLog.instance)


@contextmanager
def routed(sink: EsptoolSink) -> Iterator[EsptoolSink]:
    """Send esptool's output from this thread/context to ``sink`` while the block runs."""
    install()
    token = _CURRENT.set(sink)
    try:
        yield sink
    finally:
        _CURRENT.reset(token)


__all__ = ["EsptoolSink", "install", "routed"]

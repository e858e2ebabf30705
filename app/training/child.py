"""The child side of a process the window drives: typed commands in, replies out, ticks between.

``serve`` is the entry point of every child process (training, comparison): it builds the
loop, reads commands until Shutdown (or until the window's end of the pipe closes) and
ticks whenever a tick is due. ``ChildLoop`` holds what every loop shares:

* dispatch by message type (``handlers``): an unknown command is a bug and says so;
* back-pressure: at most MAX_UNDELIVERED Records messages are unacknowledged (Delivered)
  at a time; later records wait in one outbox, so a busy window gets bigger lists rather
  than a queue, and work does not wait for it unless it stalls for MAX_KEPT records;
* ordering: ``set_state``-like replies go after any records kept back, so the window always
  has the records before the state they led to;
* failures become ``Failed`` replies (a bug carries its traceback), never a dead process.

No Qt here: the child process never loads it.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.training.messages import Delivered, Failed, Failure, Records, Shutdown

log = logging.getLogger("rnn_explorer.app")

MAX_UNDELIVERED = 2  # record lists in flight to the window; later records wait in one list
MAX_KEPT = 10_000  # records waiting for a stalled window before the loop waits too


def failure_of(err: Exception, doing: str) -> Failure:
    """A Failure for the user: bad input in one line, a bug with its traceback."""
    from core.errors import UserError

    if isinstance(err, (UserError, ValueError)):
        return Failure(str(err), getattr(err, "field", None))
    log.exception("child process failed while %s", doing)
    return Failure(f"{type(err).__name__} while {doing}: {err}", getattr(err, "field", None),
                   "".join(traceback.format_exception(err)))


class ChildLoop:
    """Base of a child process's loop. ``send`` takes one reply; ``stop`` is an event the
    window sets to end the work in progress (checked between steps)."""

    def __init__(self, send: Callable[[Any], None], stop: Any):
        self._send = send
        self._stop = stop
        self._due: float | None = None  # when the next tick is due (None: idle)
        self._undelivered = 0  # Records messages sent but not yet acknowledged
        self._outbox: list[Any] = []  # records kept back while the window is behind
        self._closed = False
        self.generation = 0  # what Records are stamped with (a comparison's, see messages)
        self._handlers: dict[type, Callable[[Any], None]] = {
            Delivered: self._on_delivered, Shutdown: self._on_shutdown, **self.handlers()}

    # -- what subclasses provide ------------------------------------------------------------
    def handlers(self) -> dict[type, Callable[[Any], None]]:
        """Command type -> handler, for the commands this loop understands."""
        return {}

    def tick(self) -> None:
        """Do one slice of work (called when a tick is due)."""

    def on_shutdown(self) -> None:
        """Let go of the work (called before the process ends)."""

    # -- the loop ---------------------------------------------------------------------------
    def serve(self, commands: Any) -> None:
        """Handle commands as they come and tick when a tick is due, until Shutdown."""
        while not self._closed:
            wait = None if self._due is None else max(self._due - time.perf_counter(), 0.0)
            if commands.poll(wait):
                self.handle(commands.recv())
            else:
                self._due = None
                self.tick()

    def handle(self, message: Any) -> None:
        handler = self._handlers.get(type(message))
        if handler is None:
            raise TypeError(f"{type(self).__name__} has no handler for {message!r}")
        handler(message)

    def schedule(self, delay: float) -> None:
        """Tick again after ``delay`` seconds (a new schedule clears a stop asked for earlier)."""
        self._stop.clear()
        self._due = time.perf_counter() + delay

    def unschedule(self) -> None:
        self._due = None

    @property
    def stalled(self) -> bool:
        """The window has not taken records for a long time: wait for it, don't pile up."""
        return len(self._outbox) >= MAX_KEPT

    # -- replies ----------------------------------------------------------------------------
    def send(self, reply: Any) -> None:
        """Send ``reply`` after any records kept back (records come before what they led to)."""
        self.flush()
        self._send(reply)

    def emit_records(self, records: list[Any]) -> None:
        """Send ``records`` now, or keep them for later when the window is behind."""
        self._outbox.extend(records)
        if self._undelivered < MAX_UNDELIVERED:
            self.flush()

    def flush(self) -> None:
        if self._outbox:
            kept, self._outbox = self._outbox, []
            self._undelivered += 1
            self._send(Records(tuple(kept), self.generation))

    def report(self, err: Exception, doing: str) -> None:
        self.send(Failed(failure_of(err, doing)))

    def _on_delivered(self, _: Delivered) -> None:
        """The window took one list of records: send the ones kept back, if it has none left."""
        self._undelivered = max(self._undelivered - 1, 0)
        if not self._undelivered:
            self.flush()

    def _on_shutdown(self, _: Shutdown) -> None:
        self.unschedule()
        self.on_shutdown()
        self._closed = True


_CONTEXT = multiprocessing.get_context("spawn")  # never fork a process that runs Qt threads


@dataclass
class Spawned:
    """A started child process and the window's ends of its pipes (``spawn``)."""

    process: Any
    commands: Any  # the sending end: window -> child
    replies: Any  # the receiving end: child -> window
    stop: Any  # an Event the child's long work checks


def spawn(make_loop: Callable[..., ChildLoop], name: str) -> Spawned:
    """Start a child process that serves ``make_loop`` (no Qt needed: the window's process
    can start its training process before it imports Qt, so torch loads meanwhile)."""
    from core.logs import LOGGER

    commands_out, commands_in = _CONTEXT.Pipe(duplex=False)  # (receiving end, sending end)
    replies_out, replies_in = _CONTEXT.Pipe(duplex=False)
    stop = _CONTEXT.Event()
    verbose = any(type(h).__name__ == "_Stderr" for h in logging.getLogger(LOGGER).handlers)
    process = _CONTEXT.Process(target=serve, name=name, daemon=True,
                               args=(make_loop, commands_out, replies_in, stop, verbose))
    process.start()
    commands_out.close()  # the process's ends: closing ours lets each side see the other go
    replies_in.close()
    return Spawned(process, commands_in, replies_out, stop)


def serve(make_loop: Callable[[Callable[[Any], None], Any], ChildLoop], commands: Any, replies: Any,
          stop: Any, verbose: bool = False) -> None:
    """A child process's entry point: ``make_loop(send, stop)``, then serve ``commands``."""
    import signal

    from core.logs import setup_logging

    # Ctrl+C in a terminal reaches every process of the app: the window's process handles
    # it (and then ends this one); here it would only interrupt a step with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    setup_logging(verbose)
    loop = make_loop(replies.send, stop)
    try:
        loop.serve(commands)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the window's process ended without saying so: nothing is left to serve

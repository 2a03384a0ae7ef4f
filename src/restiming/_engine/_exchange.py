"""The client side of one request/response, whatever carries it.

``Exchange`` is what the client layer drives: an HTTP/1.1 connection
(``_http11.HTTP11Connection``) and an HTTP/2 stream (``_h2stream.H2Stream``) both are
one. It holds the per-exchange state (stamps, head, fields, body or buffered chunks,
the decoder, the error) and the parts that do not depend on the protocol: waking the
one fetch that waits (``wait``/``wake``), failing it (``fail``), its deadlines as data
for the client's sweep (``due``/``expire``), what happens at the final head
(``on_head``: deliver it, or collect the body), collecting a ``fetch()`` body under
its limits (``collect_body``) and the end of the body (``end_body``).
"""

from __future__ import annotations

from restiming._binding import lib
from restiming._exceptions import LimitExceeded, ReadTimeout, RestimingError, TotalTimeout, WriteTimeout
from restiming._fields import SLOT

from ._deadlines import GRANULARITY_NS

__all__ = ["Exchange", "IDLE", "HEAD", "BODY", "DONE", "WANTED"]

_now = lib.rt_now_ns
_FINAL = SLOT["final_response_headers_start"]
# Exchange states
IDLE, HEAD, BODY, DONE = 0, 1, 2, 3
# The fields an entry needs, taken from the response head in one pass.
WANTED = frozenset((b"content-type", b"content-encoding", b"server-timing", b"timing-allow-origin",
                    b"location"))


class Exchange:
    """One request/response as the client layer sees it (see the module docstring)."""

    __slots__ = ("loop", "sweep", "make_decoder", "broken", "error", "waiter", "state", "stamps", "bytes_in",
                 "bytes_out", "response_started", "head", "fields", "deliver_head", "ready", "collect", "body",
                 "encoded", "decoder", "max_body", "chunks", "buffered", "end_ns", "head_end", "reading",
                 "read_ns", "read_due", "write_due", "total_due", "_writing")

    #: What a write deadline that passed says.
    WRITE_TIMEOUT = "the request did not drain into the socket in time"

    def _init_exchange(self, loop, sweep, make_decoder) -> None:
        self.loop = loop
        self.sweep = sweep
        self.make_decoder = make_decoder  # content-encoding value -> Decoder
        self.broken = False   # never reuse
        self.waiter = None
        self.state = IDLE
        self.bytes_out = 0
        self.head_end = 0
        self.reading = False
        self.read_due = 0
        self.write_due = 0
        self._writing = False
        self.reset_exchange(None, False, 0, 0, 0)

    def reset_exchange(self, stamps, deliver_head, read_ns: int, total_due: int, max_body: int) -> None:
        """The per-exchange state, at the start of each exchange."""
        self.stamps = stamps
        self.error: BaseException | None = None
        self.response_started = False
        self.bytes_in = 0
        self.head = None
        self.fields: dict | None = None
        self.deliver_head = deliver_head
        self.ready = False
        self.collect = False
        self.body = None
        self.encoded = 0
        self.decoder = None
        self.max_body = max_body
        self.chunks = None
        self.buffered = 0
        self.end_ns = 0
        self.read_ns = read_ns
        self.total_due = total_due

    # ------------------------------------------------------------------ waking
    def wait(self):
        """A future the next event of interest resolves (one waiter at a time)."""
        fut = self.waiter = self.loop.create_future()
        return fut

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    def fail(self, err: BaseException, cause: BaseException | None = None) -> None:
        """The exchange failed with ``err``: the waiting fetch raises it."""
        self.broken = True
        if self.error is None:
            if cause is not None and err.__cause__ is None:
                err.__cause__ = cause
            self.error = err
        self.reading = False
        self.sweep.unwatch(self)
        self.wake()

    # --------------------------------------------------------------- deadlines
    def due(self) -> int:
        """The earliest deadline that runs now (ns), 0 for none."""
        due = self.total_due
        if self.reading:
            d = self.read_due
            if d and (not due or d < due):
                due = d
        if self._writing:
            d = self.write_due
            if d and (not due or d < due):
                due = d
        return due

    def expire(self, now: int) -> None:
        total = self.total_due
        if total and now >= total:
            # A phase deadline due at (about) the same time, as a float timeout sets
            # them all, says more about where the fetch stalled than "total".
            if self._writing and self.write_due and self.write_due - total <= GRANULARITY_NS:
                self.fail(WriteTimeout(self.WRITE_TIMEOUT))
            elif self.reading and self.read_due and self.read_due - total <= GRANULARITY_NS:
                self.fail(ReadTimeout(f"no response bytes for {self.read_ns / 1e9:g} s"))
            else:
                self.fail(TotalTimeout("the fetch's total deadline passed"))
        elif self._writing and self.write_due and now >= self.write_due:
            self.fail(WriteTimeout(self.WRITE_TIMEOUT))
        elif self.reading and self.read_due and now >= self.read_due:
            self.fail(ReadTimeout(f"no response bytes for {self.read_ns / 1e9:g} s"))
        elif self.state is HEAD or self.state is BODY:
            due = self.due()
            if due:
                self.sweep.watch(self, due, self.loop)

    def watch_read(self, now: int = 0) -> None:
        """Someone waits for response bytes from ``now`` (default: the C clock): the
        read deadline runs."""
        self.reading = True
        self.read_due = (now or _now()) + self.read_ns if self.read_ns else 0
        due = self.due()
        if due:
            self.sweep.watch(self, due, self.loop)

    async def wait_for_bytes(self) -> bool:
        """Buffered mode, nothing buffered: raise the exchange's error, False at the
        end of the body, else wait (the read deadline running) and True."""
        if self.error is not None:
            raise self.error
        if self.state is DONE:
            return False
        self.watch_read()
        try:
            await self.wait()
        finally:
            self.reading = False
        return True

    # -------------------------------------------------------------------- body
    def on_head(self, head, fields: dict, status: int, start_ns: int, now: int) -> bool:
        """The final head arrived (its first byte at ``start_ns``). Returns True when
        the fetch is woken at the head (``stream()``, or a redirect it follows) and
        the body is buffered as chunks; False when the body is collected."""
        self.stamps[_FINAL] = start_ns
        self.head_end = now
        self.state = BODY
        self.head = head
        self.fields = fields
        if self.deliver_head is True or (self.deliver_head and status in self.deliver_head):
            self.deliver_head = True
            self.collect = False
            self.ready = True
            self.reading = False
            return True
        self.deliver_head = False
        self.start_collecting()
        return False

    def start_collecting(self) -> None:
        self.collect = True
        encoding = self.fields.get(b"content-encoding")
        if encoding:
            self.decoder = self.make_decoder(b", ".join(encoding).decode("latin-1"))
            self.body = bytearray()

    def collect_body(self, data: bytes) -> None:
        """A ``fetch()`` body chunk: counted against ``max_body_bytes``, decoded in
        bounded pieces, accumulated without an object per chunk."""
        self.encoded += len(data)
        if self.encoded > self.max_body:
            self.fail(LimitExceeded(f"response body exceeds max_body_bytes={self.max_body}"))
            return
        decoder = self.decoder
        if decoder is not None:
            try:
                body = self.body
                for piece in decoder.feed(data):
                    body += piece
            except RestimingError as exc:
                self.fail(exc)
            return
        body = self.body
        if body is None:
            self.body = data
        elif type(body) is bytes:
            body = self.body = bytearray(body)
            body += data
        else:
            body += data

    def end_body(self, now: int) -> None:
        """The last body byte arrived at ``now``: flush the decoder (a compressed
        stream cut short fails here) and wake the fetch."""
        if self.decoder is not None and self.collect:
            try:
                for piece in self.decoder.flush():
                    self.body += piece
            except RestimingError as exc:
                self.fail(exc)
                return
        self.state = DONE
        self.end_ns = now
        self.reading = False
        self.sweep.unwatch(self)
        self.ready = True
        self.wake()

    def replay_into_body(self, chunks) -> None:
        """``collect_rest``: chunks buffered before the switch become the body (and
        the decoder is flushed if the body had already ended)."""
        if chunks:
            for data in chunks:
                self.encoded -= len(data)
                self.collect_body(data)
        if self.ready and self.decoder is not None and self.error is None:
            try:
                for piece in self.decoder.flush():
                    self.body += piece
            except RestimingError as exc:
                self.fail(exc)
        if not self.ready:
            self.watch_read()

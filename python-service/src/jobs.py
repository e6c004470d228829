"""Jobs: one worker runs image and text requests from a bounded queue, so the engine never
runs on two threads at once and a full queue refuses at once instead of hanging."""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from diffuse_kit import ChatResult, ImageRequest, ProgressEvent, Result, TextRequest, run
from diffuse_kit.text import run_chat

STATES = ("queued", "running", "done", "failed", "cancelled")
Runner = Callable[..., Result]
TextRunner = Callable[..., ChatResult]
Event = ProgressEvent | str  # an image step, or a piece of a text reply


class QueueFullError(Exception):
    """Every queue slot is taken; the client should retry later (HTTP 429)."""


@dataclass
class Job:
    request: ImageRequest | TextRequest
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"
    created: float = field(default_factory=time.time)
    progress: ProgressEvent | None = None
    result: Result | ChatResult | None = None
    error: Exception | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    _events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _finished: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def events(self) -> Iterator[Event]:
        """Progress events (text pieces for text jobs) as they come, until the job ends (one
        consumer: the submitter)."""
        while (event := self._events.get()) is not None:
            yield event

    def _progress(self, event: Event) -> None:
        if isinstance(event, ProgressEvent):
            self.progress = event
        self._events.put(event)

    def _finish(self, state: str, result: Result | ChatResult | None = None, error: Exception | None = None) -> None:
        self.state, self.result, self.error = state, result, error
        self._events.put(None)
        self._finished.set()


class JobQueue:
    """A bounded queue of jobs and the worker thread that runs them one at a time."""

    def __init__(
        self,
        size: int = 4,
        *,
        runner: Runner = run,
        text_runner: TextRunner = run_chat,
        preview_every: int = 5,
        keep: int = 200,
    ) -> None:
        self._pending: queue.Queue[Job] = queue.Queue(maxsize=size)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self.running: Job | None = None
        self.runner, self.text_runner, self.preview_every, self.keep = runner, text_runner, preview_every, keep
        self._worker = threading.Thread(target=self._work, name="diffuse-kit-worker", daemon=True)
        self._worker.start()

    def submit(self, request: ImageRequest | TextRequest) -> Job:
        job = Job(request)
        with self._lock:
            try:
                self._pending.put_nowait(job)
            except queue.Full:
                raise QueueFullError(f"the queue is full ({self._pending.maxsize} jobs waiting); retry later") from None
            self._jobs[job.id] = job
            while len(self._jobs) > self.keep and next(iter(self._jobs.values())).finished:
                self._jobs.popitem(last=False)
        return job

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while running or finished; n when n-1 jobs wait before it (queued jobs only)."""
        if job.state != "queued":
            return 0
        with self._pending.mutex:
            waiting = list(self._pending.queue)
        return waiting.index(job) + 1 if job in waiting else 0

    def cancel(self, job: Job) -> None:
        job.cancel.set()

    def interrupt(self) -> bool:
        """Cancel whatever runs now (A1111's /interrupt); True if something was running."""
        running = self.running
        if running is not None:
            running.cancel.set()
        return running is not None

    @property
    def depth(self) -> int:
        return self._pending.qsize()

    def _work(self) -> None:
        while True:
            job = self._pending.get()
            if job.cancel.is_set():
                job._finish("cancelled")
                continue
            self.running, job.state = job, "running"
            try:
                result = self._run(job)
                cancelled = result.finish_reason == "cancelled" if isinstance(result, ChatResult) else result.cancelled
                job._finish("cancelled" if cancelled else "done", result=result)
            except Exception as exc:  # the worker survives whatever one job does; the job says why
                job._finish("failed", error=exc)
            finally:
                self.running = None

    def _run(self, job: Job) -> Result | ChatResult:
        if isinstance(job.request, TextRequest):
            return self.text_runner(job.request, on_text=job._progress, cancel=job.cancel)
        return self.runner(job.request, on_progress=job._progress, cancel=job.cancel, preview_every=self.preview_every)

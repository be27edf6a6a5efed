"""The asyncio front of the engine: the only code that knows both asyncio and the engine thread.

Requests go to the engine thread through a thread-safe inbox; outputs come back once per step through
`loop.call_soon_threadsafe`, fanned out to one asyncio.Queue per request.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from inference_service.engine.constraints import Grammar, GrammarCompiler
from inference_service.engine.core import EngineCore
from inference_service.engine.errors import (
    ContextLengthExceededError,
    EngineUnavailableError,
    InvalidRequestError,
    QueueFullError,
)
from inference_service.engine.tokenizer import Tokenizer
from inference_service.engine.types import (
    ChatMessage,
    ChoiceOutput,
    GenerationParams,
    GenerationRequest,
    ServerLoad,
    Tool,
)

logger = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class _Add:
    request: GenerationRequest


@dataclass(slots=True, frozen=True)
class _Abort:
    request_id: str


@dataclass(slots=True, frozen=True)
class _Stop:
    pass


_Command = _Add | _Abort | _Stop


@dataclass(slots=True, frozen=True)
class PromptInput:
    """Exactly one of the three is set."""

    messages: tuple[ChatMessage, ...] | None = None
    add_generation_prompt: bool = True
    tools: tuple[Tool, ...] = ()  # rendered into the chat prompt (empty when tool_choice is none)
    text: str | None = None
    token_ids: tuple[int, ...] | None = None

    @property
    def param(self) -> str:
        """The request field the prompt came in, for errors."""
        if self.token_ids is not None:
            return "token_ids"
        return "messages" if self.messages is not None else "prompt"


COMPILE_TIMEOUT_S = 10.0  # a grammar that takes longer to compile is refused (its worker thread runs on, bounded
# by llguidance's parser limits)


class AsyncEngine:
    def __init__(
        self,
        core: EngineCore,
        tokenizer: Tokenizer,
        context_length: int,
        grammars: GrammarCompiler | None = None,
        max_waiting: int = 1024,
    ) -> None:
        self.core = core
        self.tokenizer = tokenizer
        self.grammars = grammars
        self.context_length = min(context_length, core.slot_capacity)
        self._inbox: queue.SimpleQueue[_Command] = queue.SimpleQueue()
        self._streams: dict[str, asyncio.Queue[list[ChoiceOutput] | BaseException]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._load = core.load()  # replaced, never mutated, by the engine thread
        self.loop_error: BaseException | None = None
        self.accepting = True  # False while draining: new requests get UNAVAILABLE
        # every KV slot busy plus max_waiting queued; beyond that RESOURCE_EXHAUSTED at once
        self.max_in_flight = core.max_running_sequences + max_waiting

    # lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._inbox.put(_Stop())
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.loop_error is None

    # requests ------------------------------------------------------------------------------------------
    def render(self, prompt: PromptInput) -> tuple[str, list[int]]:
        """Chat template + tokenization, exactly as generate() does it. The one check that a prompt is not empty."""
        if prompt.token_ids is not None:
            ids = list(prompt.token_ids)
            bad = [t for t in ids if t >= self.tokenizer.vocab_size]
            if bad:
                raise InvalidRequestError(f"token id {bad[0]} is outside the vocabulary", param="token_ids")
            text = self.tokenizer.decode(ids, skip_special_tokens=False)
        elif prompt.messages:
            text = self.tokenizer.apply_chat_template(prompt.messages, prompt.add_generation_prompt, prompt.tools)
            ids = self.tokenizer.encode(text)  # the template writes its own <bos>
        elif prompt.text:
            # a plain prompt gets what the tokenizer adds (e.g. <bos> where the GGUF says add_bos_token), as in
            # llama.cpp and vLLM
            text, ids = prompt.text, self.tokenizer.encode(prompt.text, add_special_tokens=True)
        else:  # no messages or an empty text: nothing to render, not even <bos>
            text, ids = "", []
        if not ids:
            raise InvalidRequestError(f"{prompt.param} must not be empty", param=prompt.param)
        return text, ids

    async def _compile(self, params: GenerationParams) -> Grammar:
        """The request's constraint compiled off the event loop and the engine thread, within a time limit."""
        assert params.constraint is not None
        param = "tools" if params.tool_calls else "constraint"
        if self.grammars is None:
            raise InvalidRequestError("this model does not support constrained decoding", param=param)
        if params.stopping.stop or params.stopping.stop_token_ids:
            raise InvalidRequestError(
                "stop strings and stop token ids cannot be combined with a constraint or tools: the output ends "
                "where its grammar is complete",
                param="stop",
            )
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.grammars.compile, params.constraint, param), COMPILE_TIMEOUT_S
            )
        except TimeoutError:
            raise InvalidRequestError(
                f"the {params.constraint.kind.value} constraint did not compile within {COMPILE_TIMEOUT_S:g} s",
                param=param,
            ) from None

    def _validate(self, request: GenerationRequest) -> None:
        outside = [t for t in request.sampling.logit_bias if not 0 <= t < self.tokenizer.vocab_size]
        if outside:
            raise InvalidRequestError(f"logit_bias token id {outside[0]} is outside the vocabulary", param="logit_bias")
        n_prompt = len(request.prompt_token_ids)
        max_tokens = request.stopping.max_tokens
        needed = n_prompt + (max_tokens or 1)
        if needed > self.context_length:
            raise ContextLengthExceededError(
                f"This model's maximum context length is {self.context_length} tokens. However, you requested "
                f"{needed} tokens ({n_prompt} in the messages, {max_tokens or 1} in the completion). "
                "Please reduce the length of the messages or completion."
            )

    async def generate(
        self, prompt: PromptInput, params: GenerationParams, request_id: str
    ) -> AsyncIterator[ChoiceOutput]:
        """Stream the outputs of one request (the caller names it: its id is on every log line)."""
        if not self.is_alive:
            raise EngineUnavailableError("the engine is not running")
        if not self.accepting:
            raise EngineUnavailableError("the server is shutting down; retry on another replica")
        _, ids = self.render(prompt)
        grammar = await self._compile(params) if params.constraint is not None else None
        request = GenerationRequest(
            request_id,
            ids,
            params.sampling,
            params.stopping,
            params.output,
            params.n,
            arrival_time=time.monotonic(),
            grammar=grammar,
            tool_calls=params.tool_calls,
        )
        self._validate(request)
        if request.request_id in self._streams:
            raise InvalidRequestError(f"request id {request.request_id!r} is already running", param="request_id")
        if len(self._streams) >= self.max_in_flight:
            raise QueueFullError(
                f"{len(self._streams)} requests are in flight (limit {self.max_in_flight}); retry later"
            )
        stream: asyncio.Queue[list[ChoiceOutput] | BaseException] = asyncio.Queue()
        self._streams[request.request_id] = stream
        self._inbox.put(_Add(request))
        remaining = request.n
        try:
            while remaining:
                item = await stream.get()
                if isinstance(item, BaseException):
                    raise item
                for output in item:
                    remaining -= output.finish_reason is not None
                    yield output
        finally:
            if self._streams.pop(request.request_id, None) is not None and remaining:
                self._inbox.put(_Abort(request.request_id))  # consumer left early (cancelled, error)

    def abort(self, request_id: str) -> bool:
        """Cancel a running request; its stream ends with CANCELLED completions."""
        found = request_id in self._streams
        if found:
            self._inbox.put(_Abort(request_id))
        return found

    def load(self) -> ServerLoad:
        """The engine thread's latest snapshot: the only view of the engine other threads get."""
        return self._load

    # engine thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._take_commands():
                self._load = self.core.load()  # before the step too: a step that hangs is timed from here
                if self.core.has_work:
                    self._step()
        except BaseException as e:  # the loop itself broke: report unready, fail everyone
            logger.exception("engine loop died")
            self.loop_error = e
            self._post_error(list(self._streams), EngineUnavailableError("the engine loop stopped"))

    def _take_commands(self) -> bool:
        """Apply what the front sent, waiting up to a second when there is nothing to step; False = stop."""
        block = not self.core.has_work
        try:
            while True:
                command = self._inbox.get(block=block, timeout=1.0 if block else None)
                block = False
                if isinstance(command, _Stop):
                    return False
                self._apply(command)
        except queue.Empty:
            return True

    def _apply(self, command: _Command) -> None:
        if isinstance(command, _Add):
            self.core.add_request(command.request)
        elif isinstance(command, _Abort):
            self._post(self.core.abort_request(command.request_id))

    def _step(self) -> None:
        """One step; its snapshot is published before its outputs, so whoever got a token sees that step's load."""
        result = self.core.step()
        if result.error is not None:
            logger.error("engine step failed; failing the requests in it", exc_info=result.error)
        self._load = self.core.load()
        self._post(result.outputs)
        for failure in result.failures:
            self._post_error([failure.request_id], failure.error)

    def _post(self, outputs: list[ChoiceOutput]) -> None:
        if outputs and self._loop is not None:
            self._loop.call_soon_threadsafe(self._dispatch, outputs)

    def _post_error(self, request_ids: list[str], error: BaseException) -> None:
        if self._loop is not None and request_ids:
            self._loop.call_soon_threadsafe(self._dispatch_error, request_ids, error)

    def _dispatch(self, outputs: list[ChoiceOutput]) -> None:
        by_request: dict[str, list[ChoiceOutput]] = {}
        for output in outputs:
            by_request.setdefault(output.request_id, []).append(output)
        for request_id, items in by_request.items():
            stream = self._streams.get(request_id)
            if stream is not None:
                stream.put_nowait(items)

    def _dispatch_error(self, request_ids: list[str], error: BaseException) -> None:
        for request_id in request_ids:
            stream = self._streams.get(request_id)
            if stream is not None:
                stream.put_nowait(error)

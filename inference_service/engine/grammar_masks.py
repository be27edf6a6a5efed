"""The grammar masks of a step's constrained rows, computed on a worker thread while the passes run (llguidance and
ONNX Runtime both release the GIL)."""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from inference_service.engine.errors import EngineError, EngineInternalError, InvalidRequestError
from inference_service.engine.scheduler import PrefillChunk
from inference_service.engine.sequence import Sequence

logger = logging.getLogger(__name__)

Masks = dict[int, np.ndarray | str]  # seq_id → the allowed tokens (bool [vocab]), or the matcher's error


class MaskWorker:
    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None  # started on the first constrained row

    def start(self, rows: list[tuple[int, Sequence]], prefill: list[PrefillChunk]) -> Future[Masks] | None:
        """The masks of the constrained sequences that sample this step: the decode rows and completing prompts."""
        seqs = [seq for _, seq in rows if seq.matcher is not None]
        seqs += [c.seq for c in prefill if c.seq.matcher is not None and c.num_tokens == c.seq.num_pending]
        if not seqs:
            return None
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="grammar-masks")

        def masks() -> Masks:
            out: Masks = {}
            for seq in seqs:
                assert seq.matcher is not None
                try:
                    out[seq.seq_id] = seq.matcher.allowed()
                except RuntimeError as e:
                    out[seq.seq_id] = str(e)
            return out

        return self._pool.submit(masks)


def mask_error(seq: Sequence, allowed: Masks) -> EngineError | None:
    """None when the sequence is unconstrained or has a token it may choose; else what fails its request."""
    if seq.matcher is None:
        return None
    mask = allowed.get(seq.seq_id)
    if isinstance(mask, np.ndarray) and mask.any():
        return None
    if isinstance(mask, str):  # the matcher hit one of its limits (a grammar too complex to follow)
        param = "tools" if seq.request.tool_calls else "constraint"
        return InvalidRequestError(f"the output's grammar failed: {mask}", param=param)
    logger.error("request %s: its grammar allows no next token", seq.request.request_id)
    return EngineInternalError("the output's grammar allows no next token")

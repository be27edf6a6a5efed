"""ONNX Runtime sessions and one forward pass over a contiguous range of KV slots (IO binding)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from inference_service.engine.kv_cache import KVCache, KVLayout
from inference_service.engine.lm_head import ExactHead, ScreenedRows
from inference_service.models.derived import cpu_graphs
from inference_service.models.folder import ModelConfig
from inference_service.models.screen import HIDDEN, LOWER, POSITIONS, UPPER

logger = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"


@dataclass(slots=True, frozen=True)
class RunnerOptions:
    device: str = "auto"  # auto | cpu | cuda
    device_id: int = 0
    threads: int = 0  # 0 = os.cpu_count()
    num_slots: int = 16
    slot_capacity: int = 0  # 0 = the model's context length
    kv_cache_mib: int = 0  # KV budget of the running sequences together; 0 = every slot full
    spinning: bool = True  # ORT workers busy-wait between the ops of a forward pass, never between passes
    dense_min_rows: int = 2  # CPU: steps with at least this many token rows use the dense twin; 0 = never
    screen_head: bool = True  # CPU: a tied Q8_0 head runs as int8 bounds + exact candidates (models/screen.py)
    cache_dir: Path | None = None  # where derived graphs are kept (CPU: without it, the model runs as shipped)


def select_provider(device: str) -> str:
    available = ort.get_available_providers()
    if device == "cuda":
        if CUDA_EP not in available:
            raise RuntimeError(f"device=cuda but this onnxruntime build offers only {available}")
        return CUDA_EP
    if device == "auto" and CUDA_EP in available and Path("/dev/nvidiactl").exists():
        return CUDA_EP
    return CPU_EP


@dataclass(slots=True)
class _Graph:
    min_rows: int
    session: ort.InferenceSession
    binding: ort.IOBinding
    keep_logits_input: bool
    head_outputs: tuple[str, ...]  # (logits,) or the screened head's (lower, upper, hidden), bound in this order
    kv_bound: tuple[int, int] | None = None  # (first_slot, batch) the KV buffers are bound for


class ModelRunner:
    """Runs the decoder: input_ids [B, S] for slots [first_slot, first_slot + B) → each row's last-position logits.

    On CPU it holds two graphs over the same KV memory: the model as shipped (4-bit MatMulNBits, fastest for a
    single row) and its dense twin (fp32 MatMul on the same values, fastest for batches and prefill chunks); both
    with the LM head screened when it is a tied Q8_0 embedding (then forward returns ScreenedRows).
    """

    def __init__(self, config: ModelConfig, options: RunnerOptions) -> None:
        self.config = config
        provider = select_provider(options.device)
        so = ort.SessionOptions()
        so.intra_op_num_threads = options.threads or os.cpu_count() or 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Waking sleeping workers for each of a pass's ~250 parallel ops costs ~25 % of a one-row decode step, so
        # workers spin while a pass runs; they stop when it returns, leaving the cores to the gRPC threads.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spinning else "0")
        so.add_session_config_entry("session.force_spinning_stop", "1")
        providers: list[str | tuple[str, dict[str, str]]] = [CPU_EP]
        if provider == CUDA_EP:
            providers = [(CUDA_EP, {"device_id": str(options.device_id)}), CPU_EP]

        def graph(path: Path, min_rows: int) -> _Graph:
            session = ort.InferenceSession(str(path), so, providers=providers)
            keep = "num_logits_to_keep" in {i.name for i in session.get_inputs()}
            screened = LOWER in {o.name for o in session.get_outputs()}
            head = (LOWER, UPPER, HIDDEN) if screened else (config.logits_name,)
            return _Graph(min_rows, session, session.io_binding(), keep, head)

        one_row, dense, self.head = config.model_file, None, None
        if provider == CPU_EP and options.cache_dir is not None:  # on CUDA the model runs as shipped
            derived = cpu_graphs(
                config.model_file,
                config.logits_name,
                options.cache_dir,
                dense=options.dense_min_rows > 0,
                screen_head=options.screen_head,
            )
            one_row, dense = derived.one_row, derived.dense
            if derived.head is not None and derived.head_weight is not None:  # both or neither
                session = ort.InferenceSession(str(derived.head), so, providers=providers)
                self.head = ExactHead(session, np.load(derived.head_weight, mmap_mode="r"))
        self._graphs = [graph(one_row, 1)]
        self.provider = self._graphs[0].session.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA_EP else "cpu"
        if dense is not None:
            self._graphs.append(graph(dense, options.dense_min_rows))
        capacity = min(options.slot_capacity or config.context_length, config.context_length)
        layout = KVLayout(config.num_layers, options.num_slots, config.num_kv_heads, capacity, config.head_size)
        budget = options.kv_cache_mib * 2**20 // layout.token_bytes
        self.kv = KVCache(layout, self.device, options.device_id, budget)
        logger.info(
            "loaded %s on %s (%d threads; %s; %s)",
            config.model_file,
            self.provider,
            so.intra_op_num_threads,
            f"dense twin from {options.dense_min_rows} rows" if len(self._graphs) > 1 else "no dense twin",
            "LM head screened: int8 bounds, exact candidates" if self.head is not None else "fp32 LM head",
        )

    @property
    def slot_capacity(self) -> int:
        return self.kv.layout.slot_capacity

    def forward(
        self, input_ids: np.ndarray, lengths: np.ndarray, first_slot: int, last: np.ndarray | None = None
    ) -> np.ndarray | ScreenedRows:
        """input_ids: int64 [B, S] new tokens; lengths: int [B] cached + new tokens per row → logits [B, V]
        (or, with a screened head, ScreenedRows: bounds on them and the hidden state).

        Each row's new tokens are written to its slot from position length − S (rows of fresh prompts may be
        right-padded: then `last` [B] gives each row's last real token within S, and its logits are returned).
        """
        batch, width = input_ids.shape
        keep = 1 if last is None else width - int(last.min())
        rows = input_ids.size
        g = next(g for g in reversed(self._graphs) if rows >= g.min_rows)
        cfg, kv = self.config, self.kv
        total = int(lengths.max())  # with right padding, rows beyond their length are masked out
        mask = (np.arange(total)[None, :] < lengths[:, None]).astype(np.int64)  # [B, total]
        io = g.binding
        if g.kv_bound != (first_slot, batch):  # rebinding 120 KV buffers costs ~1 ms: only when they change
            io.clear_binding_inputs()
            io.clear_binding_outputs()
            for name in g.head_outputs:  # bound first: get_outputs()[:len(head_outputs)]
                io.bind_output(name, "cpu")
            shape = [batch, kv.layout.kv_heads, kv.layout.slot_capacity, kv.layout.head_size]
            for layer in range(cfg.num_layers):
                for kind, (past, present) in enumerate(
                    ((cfg.past_key_names, cfg.present_key_names), (cfg.past_value_names, cfg.present_value_names))
                ):
                    ptr = kv.pointer(layer, kind, first_slot)
                    io.bind_input(past % layer, kv.device, kv.device_id, np.float32, shape, ptr)
                    io.bind_output(present % layer, kv.device, kv.device_id, np.float32, shape, ptr)
            g.kv_bound = (first_slot, batch)
        # binding a name again replaces its value
        io.bind_cpu_input(cfg.input_ids_name, np.ascontiguousarray(input_ids, dtype=np.int64))
        io.bind_cpu_input(cfg.attention_mask_name, mask)
        if g.keep_logits_input:
            io.bind_cpu_input("num_logits_to_keep", np.array(keep, np.int64))
        screened = len(g.head_outputs) > 1
        if screened:  # the head runs on each row's last real token, indexed among the kept positions
            kept = keep if g.keep_logits_input else width  # the last `keep` of S, or all S without that input
            ends = np.full(batch, width - 1, np.int64) if last is None else last.astype(np.int64)
            io.bind_cpu_input(POSITIONS, ends - (width - kept))
        for name in g.head_outputs:
            io.bind_output(name, "cpu")  # fresh buffers for this pass
        g.session.run_with_iobinding(io)
        outputs = io.get_outputs()
        heads = [outputs[i].numpy() for i in range(len(g.head_outputs))]
        if not screened:  # logits [B, kept positions, V]; a graph without num_logits_to_keep keeps all S
            logits = heads[0]
            if last is None:
                return logits[:, -1]
            return logits[np.arange(batch), last - (width - logits.shape[1])]
        assert self.head is not None
        lower, upper, hidden = (h[:, 0] for h in heads)  # [B, 1, ·]: the head ran on one position per row
        return ScreenedRows(lower, upper, hidden, self.head)

"""ONNX Runtime sessions and one forward pass over a contiguous range of KV slots (IO binding)."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from inference_service.engine.kv_cache import KVCache, KVLayout
from inference_service.engine.lm_head import ExactHead, ScreenedRows
from inference_service.engine.placement import NodeRun, node_runs
from inference_service.models.cpu_graphs import CpuGraphs
from inference_service.models.folder import ModelConfig, ModelFolderError
from inference_service.models.precision import ElementType, element_type
from inference_service.models.screened_head import HIDDEN, LOWER, POSITIONS, UPPER

logger = logging.getLogger(__name__)

CPU_EP = "CPUExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"


class Runner(Protocol):
    """What the engine core needs of a runner: ModelRunner here, the fake one in the unit tests."""

    kv: KVCache

    @property
    def slot_capacity(self) -> int: ...

    def forward(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        first_slot: int,
        last: np.ndarray | None = None,
        every_position: bool = False,
    ) -> np.ndarray | ScreenedRows: ...


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
    screen_head: bool = True  # CPU: a tied Q8_0 head runs as int8 bounds + exact candidates (models/screened_head.py)
    cache_dir: Path | None = None  # where derived graphs are kept (CPU: without it, the model runs as shipped)
    profile_warm_up: bool = False  # profile the first passes on the CPU EP too (CUDA always does: placement())


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

    The graphs come prepared (engine/loader.py): the model as shipped, and on CPU possibly its dense twin (fp32
    MatMul on the same values, fastest for batches and prefill chunks) over the same KV memory, both with the LM head
    screened when it is a tied Q8_0 embedding (then forward returns ScreenedRows). Element types of KV and logits
    are the graph's; the caller always gets fp32 logits.
    """

    def __init__(self, config: ModelConfig, options: RunnerOptions, graphs: CpuGraphs | None = None) -> None:
        self.config = config
        provider = select_provider(options.device)
        graphs = graphs or CpuGraphs(config.model_file, None, None)
        if provider != CPU_EP and (graphs.dense is not None or graphs.head is not None):
            raise ValueError("derived CPU graphs (dense twin, screened head) run on the CPU EP only")
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
        self._profile_dir: tempfile.TemporaryDirectory[str] | None = None
        if provider == CUDA_EP:
            providers = [(CUDA_EP, {"device_id": str(options.device_id)}), CPU_EP]
        if provider == CUDA_EP or options.profile_warm_up:
            # the first passes are profiled to prove where each node runs (placement()), then profiling stops
            self._profile_dir = tempfile.TemporaryDirectory(prefix="ortserve-profile-")
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(self._profile_dir.name) / "warmup")

        def graph(path: Path, min_rows: int) -> _Graph:
            session = ort.InferenceSession(str(path), so, providers=providers)
            keep = "num_logits_to_keep" in {i.name for i in session.get_inputs()}
            screened = LOWER in {o.name for o in session.get_outputs()}
            head = (LOWER, UPPER, HIDDEN) if screened else (config.logits_name,)
            return _Graph(min_rows, session, session.io_binding(), keep, head)

        self.head = None
        if graphs.head is not None and graphs.head_weight is not None:  # both or neither
            session = ort.InferenceSession(str(graphs.head), so, providers=providers)
            self.head = ExactHead(session, np.load(graphs.head_weight, mmap_mode="r"))
        self._graphs = [graph(graphs.one_row, 1)]
        self.provider = self._graphs[0].session.get_providers()[0]
        self.device = "cuda" if self.provider == CUDA_EP else "cpu"
        if graphs.dense is not None:
            self._graphs.append(graph(graphs.dense, options.dense_min_rows))
        kv_dtype = self._kv_type(self._graphs[0].session)
        logits_types = {self._output_type(g, g.head_outputs[0]).name for g in self._graphs}
        for g in self._graphs[1:]:
            if self._kv_type(g.session) != kv_dtype:
                raise ModelFolderError(f"{graphs.dense}: KV type differs from {graphs.one_row}'s")
        capacity = min(options.slot_capacity or config.context_length, config.context_length)
        layout = KVLayout(
            config.num_layers, options.num_slots, config.num_kv_heads, capacity, config.head_size, kv_dtype
        )
        budget = options.kv_cache_mib * 2**20 // layout.token_bytes
        self.kv = KVCache(layout, self.device, options.device_id, budget)
        logger.info(
            "loaded %s on %s (%d threads; %s KV, %s logits; %s; %s)",
            graphs.one_row,
            self.provider,
            so.intra_op_num_threads,
            kv_dtype.name,
            "/".join(sorted(logits_types)),
            f"dense twin from {options.dense_min_rows} rows" if len(self._graphs) > 1 else "no dense twin",
            "LM head screened: int8 bounds, exact candidates" if self.head is not None else "full LM head",
        )

    def _kv_type(self, session: ort.InferenceSession) -> ElementType:
        """The element type of every past/present tensor of the graph (one type for all, or an error)."""
        cfg = self.config
        names = {p % i for p in (cfg.past_key_names, cfg.past_value_names) for i in range(cfg.num_layers)}
        names |= {p % i for p in (cfg.present_key_names, cfg.present_value_names) for i in range(cfg.num_layers)}
        args = [a for a in (*session.get_inputs(), *session.get_outputs()) if a.name in names]
        if len(args) != len(names):
            missing = sorted(names - {a.name for a in args})
            raise ModelFolderError(f"the graph lacks KV inputs/outputs named in genai_config.json: {missing[:4]}")
        types = {element_type(a.type) for a in args}
        if len(types) != 1:
            raise ModelFolderError(f"the graph's KV tensors have mixed types {sorted(t.name for t in types)}")
        return types.pop()

    @staticmethod
    def _output_type(g: _Graph, name: str) -> ElementType:
        found = next(o for o in g.session.get_outputs() if o.name == name)
        t = element_type(found.type)
        if t.storage is np.uint16:  # numpy cannot read bf16 outputs: the graph must cast its logits
            raise ModelFolderError(f"output {name} is {found.type}; logits must be float32 or float16")
        return t

    @property
    def slot_capacity(self) -> int:
        return self.kv.layout.slot_capacity

    @property
    def precision(self) -> ElementType:
        """The graph's compute precision, as its KV type says."""
        return self.kv.layout.dtype

    def placement(self) -> list[NodeRun] | None:
        """Where each node of the passes run so far executed (once: it ends profiling); None when not profiled."""
        if self._profile_dir is None:
            return None
        runs = []
        for g in self._graphs:
            runs += node_runs(Path(g.session.end_profiling()))
        self._profile_dir.cleanup()
        self._profile_dir = None
        return runs

    def forward(
        self,
        input_ids: np.ndarray,
        lengths: np.ndarray,
        first_slot: int,
        last: np.ndarray | None = None,
        every_position: bool = False,
    ) -> np.ndarray | ScreenedRows:
        """input_ids: int64 [B, S] new tokens; lengths: int [B] cached + new tokens per row → fp32 logits [B, V]
        (or, with a screened head, ScreenedRows: bounds on them and the hidden state).

        Each row's new tokens are written to its slot from position length − S (rows of fresh prompts may be
        right-padded: then `last` [B] gives each row's last real token within S, and its logits are returned).
        `every_position` (unpadded rows that verify a draft): the logits of all S positions, row-major [B·S, V].
        Only ids and mask go to the device; KV stays where it lives; the kept logits come back.
        """
        batch, width = input_ids.shape
        keep = width if every_position else 1 if last is None else width - int(last.min())
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
            element = kv.layout.dtype.onnx_type
            for layer in range(cfg.num_layers):
                for kind, (past, present) in enumerate(
                    ((cfg.past_key_names, cfg.present_key_names), (cfg.past_value_names, cfg.present_value_names))
                ):
                    ptr = kv.pointer(layer, kind, first_slot)
                    io.bind_input(past % layer, kv.device, kv.device_id, element, shape, ptr)
                    io.bind_output(present % layer, kv.device, kv.device_id, element, shape, ptr)
            g.kv_bound = (first_slot, batch)
        # binding a name again replaces its value
        io.bind_cpu_input(cfg.input_ids_name, np.ascontiguousarray(input_ids, dtype=np.int64))
        io.bind_cpu_input(cfg.attention_mask_name, mask)
        if g.keep_logits_input:
            io.bind_cpu_input("num_logits_to_keep", np.array(keep, np.int64))
        screened = len(g.head_outputs) > 1
        if screened:  # the head runs on each row's last real token (or all), indexed among the kept positions
            kept = keep if g.keep_logits_input else width  # the last `keep` of S, or all S without that input
            if every_position:
                positions = np.tile(np.arange(width, dtype=np.int64) - (width - kept), (batch, 1))
            else:
                ends = np.full(batch, width - 1, np.int64) if last is None else last.astype(np.int64)
                positions = (ends - (width - kept))[:, None]
            io.bind_cpu_input(POSITIONS, positions)
        for name in g.head_outputs:
            io.bind_output(name, "cpu")  # fresh buffers for this pass
        g.session.run_with_iobinding(io)
        outputs = io.get_outputs()
        heads = [outputs[i].numpy() for i in range(len(g.head_outputs))]
        if not screened:  # logits [B, kept positions, V]; a graph without num_logits_to_keep keeps all S
            logits = heads[0]
            if every_position:
                rows_logits = logits[:, -width:].reshape(batch * width, logits.shape[-1])
            elif last is None:
                rows_logits = logits[:, -1]
            else:
                rows_logits = logits[np.arange(batch), last - (width - logits.shape[1])]
            return rows_logits.astype(np.float32, copy=False)  # fp16 graphs: only the sampled rows are converted
        assert self.head is not None
        lower, upper, hidden = (h.reshape(-1, h.shape[-1]) for h in heads)  # [B, P, ·] → [B·P, ·]
        return ScreenedRows(lower, upper, hidden, self.head)

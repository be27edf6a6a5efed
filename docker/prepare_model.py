"""model-init: pull and convert the default model into ORTSERVE_CACHE_DIR (a shared volume) as both graphs, the fp32
CPU graph and the fp16 CUDA graph (conversion needs no GPU, so the same one-shot job serves either profile), then
derive the CPU graph's dense twin and screened LM head there too, so that inference replicas start from a read-only
volume and never race to write them.

Every step is cached: a rerun checks the GGUF's sha256 and returns. ORTSERVE_DENSE_MIN_ROWS=0 skips the twin and
ORTSERVE_SCREEN_HEAD=false the screened head, as they do for `serve` (the CUDA EP uses neither).
"""

from __future__ import annotations

import logging

from inference_service.__main__ import default_model_dir
from inference_service.models import paths
from inference_service.models.cpu_graphs import cpu_graphs
from inference_service.models.folder import load_model_config
from inference_service.server.settings import ServiceSettings
from ortserve_common.logs import configure_logging

logger = logging.getLogger("prepare_model")


def main() -> None:
    configure_logging(fmt="text")
    folders = {precision: default_model_dir(progress=False, precision=precision) for precision in ("fp16", "fp32")}
    logger.info("model folders ready: %s", folders)
    folder = folders["fp32"]
    settings = ServiceSettings()  # the same ORTSERVE_* environment `serve` reads
    config = load_model_config(folder)
    # Same cache location `serve` uses (inference_service.__main__._load).
    graphs = cpu_graphs(
        config.model_file,
        config.logits_name,
        paths.cpu_graphs_dir(),
        dense=settings.dense_min_rows > 0,
        screen_head=settings.screen_head,
    )
    logger.info("CPU graphs: %s", graphs)


if __name__ == "__main__":
    main()

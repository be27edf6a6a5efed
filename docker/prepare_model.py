"""model-init: pull and convert the default model into ORTSERVE_CACHE_DIR (a shared volume) as both graphs, the fp32
CPU graph and the fp16 CUDA graph (conversion needs no GPU, so the same one-shot job serves either profile), then
derive the CPU graph's dense twin and screened LM head there too, so that inference replicas start from a read-only
volume and never race to write them.

Every step is cached: a rerun checks the GGUF's sha256 and returns. ORTSERVE_DENSE_MIN_ROWS=0 skips the twin and
ORTSERVE_SCREEN_HEAD=false the screened head, as they do for `serve` (the CUDA EP uses neither).
"""

from __future__ import annotations

import dataclasses
import logging

from inference_service.engine.loader import prepare_graphs
from inference_service.models.folder import load_model_config
from inference_service.models.prepare import default_model_dir
from inference_service.server.config import engine_config
from inference_service.server.settings import ServiceSettings
from ortserve_common.logs import configure_logging

logger = logging.getLogger("prepare_model")


def main() -> None:
    configure_logging(fmt="text")
    folders = {precision: default_model_dir(progress=False, precision=precision) for precision in ("fp16", "fp32")}
    logger.info("model folders ready: %s", folders)
    # the CPU graphs `serve` would derive (same settings, same cache), on the CPU EP whatever ORTSERVE_DEVICE says
    runner = dataclasses.replace(engine_config(ServiceSettings()).runner, device="cpu")
    graphs = prepare_graphs(load_model_config(folders["fp32"]), runner)
    logger.info("CPU graphs: %s", graphs)


if __name__ == "__main__":
    main()

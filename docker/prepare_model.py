"""model-init: pull and convert the default model into ORTSERVE_CACHE_DIR (a shared volume), then build its
CPU dense twin there too, so that inference replicas start from a read-only volume and never race to write it.

Every step is cached: a rerun checks the GGUF's sha256 and returns. ORTSERVE_DENSE_MIN_ROWS=0 skips the twin
(the CUDA EP never uses it).
"""

from __future__ import annotations

import logging
import os

from inference_service.__main__ import default_model_dir
from inference_service.models import paths
from inference_service.models.densify import dense_model_path
from inference_service.models.folder import load_model_config
from inference_service.server.logs import configure_logging

logger = logging.getLogger("prepare_model")


def main() -> None:
    configure_logging("text")
    folder = default_model_dir(progress=False)
    logger.info("model folder ready: %s", folder)
    if os.environ.get("ORTSERVE_DENSE_MIN_ROWS", "2").strip() == "0":
        return
    # Same cache location `serve` uses for the twin (inference_service.__main__: cache_dir() / "dense").
    dense = dense_model_path(load_model_config(folder).model_file, paths.cache_dir() / "dense")
    logger.info("dense twin: %s", dense or "not needed (no MatMulNBits)")


if __name__ == "__main__":
    main()

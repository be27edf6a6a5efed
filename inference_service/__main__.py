"""Command line: `python -m inference_service serve|pull|convert`."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from inference_service.models import paths
from inference_service.models.prepare import preparation_errors, prepare_model, registry_name
from inference_service.server.settings import ServiceSettings
from ortserve_common.logs import configure_logging
from ortserve_common.settings_flags import add_settings_flags, fail, settings_from_args

if TYPE_CHECKING:
    from inference_service.engine.loader import ServedModel


def _fail(command: str, message: str) -> NoReturn:
    """A clear message and exit status 2, as argparse gives for a bad flag."""
    fail(f"python -m inference_service {command}", message)


def _serve(args: argparse.Namespace) -> None:
    from inference_service.engine.loader import ModelNotServableError
    from inference_service.models.folder import ModelFolderError
    from inference_service.models.pull import MODELS
    from inference_service.server.app import ListenError, check_listen, serve

    settings = settings_from_args(ServiceSettings, args, "python -m inference_service serve")
    name = registry_name(settings.model)  # a registry name wins over a folder of the same name (use ./NAME)
    if name is None and not Path(settings.model).is_dir():
        _fail("serve", f"--model {settings.model!r}: not a folder, nor 'default' or a model name ({', '.join(MODELS)})")
    configure_logging(settings.log_level, settings.log_format)
    not_servable: tuple[type[Exception], ...] = (
        ListenError,
        ModelFolderError,
        ModelNotServableError,
        *preparation_errors(),
    )
    try:  # a clear message and exit status 1, never "ready"
        for port in (settings.port, settings.metrics_port):  # before a model loads for minutes
            check_listen(settings.host, port)
        cache = settings.cache_dir
        folder = Path(settings.model) if name is None else prepare_model(name, device=settings.device, cache=cache)
        names = settings.served_names(default=name or folder.name)
        model = _load(settings, folder, names[0], tuple(names[1:]))
        asyncio.run(serve(settings, {model.model_id: model}))
    except not_servable as e:
        logging.getLogger("inference_service").error("not serving: %s", e)
        raise SystemExit(1) from None


def _load(settings: ServiceSettings, folder: Path, model_id: str, aliases: tuple[str, ...] = ()) -> ServedModel:
    """The model in `folder`, answering to `model_id` (its id in logs and metrics) and `aliases`."""
    from inference_service.engine.loader import load_model
    from inference_service.server.config import engine_config

    config = engine_config(settings)
    model = load_model(
        folder,
        model_id,
        config.runner,
        config.scheduler,
        config.prefix_cache,
        chat_template=settings.chat_template,
        aliases=aliases,
        speculative=config.speculative,
        max_waiting=config.max_waiting,
    )
    if config.fault_hook is not None:
        model.engine.core.fault_hook = config.fault_hook
    return model


def _pull(args: argparse.Namespace) -> None:
    from inference_service.models.pull import DEFAULT_MODEL, MODELS, get_model, pull

    if args.list:
        for m in MODELS.values():
            kind = "instruct" if m.instruct else "base"
            default = "  (default)" if m is DEFAULT_MODEL else ""
            print(f"{m.name:<24} {m.size / 1e6:6.1f} MB  {kind:<8}  {m.license.name} ({m.license.url}){default}")
        return
    name = registry_name(args.name)
    if name is None:
        _fail("pull", f"unknown model {args.name!r}; known models: {', '.join(MODELS)} (see --list)")
    try:
        print(pull(args.cache_dir or paths.default_gguf_dir(), get_model(name)))
    except preparation_errors() as e:
        logging.getLogger("inference_service").error("pull failed: %s", e)
        raise SystemExit(1) from None


def _convert(args: argparse.Namespace) -> None:
    from inference_service.models.convert import convert, gguf_architecture
    from inference_service.models.prepare import default_precision
    from inference_service.models.pull import MODELS, get_model, pull

    name = registry_name(args.model)
    if name is None:
        _fail("convert", f"unknown model {args.model!r}; known models: {', '.join(MODELS)} (see `pull --list`)")
    try:
        gguf = args.gguf or pull(paths.default_gguf_dir(), get_model(name))
        architecture = (
            (lambda: get_model(name).architecture) if args.gguf is None else (lambda: gguf_architecture(gguf))
        )
        precision = default_precision("auto", architecture) if args.precision == "auto" else args.precision
        out = args.out or paths.model_dir(name, precision)
        print(convert(gguf, out, accuracy_level=args.accuracy_level, precision=precision))
    except preparation_errors() as e:
        logging.getLogger("inference_service").error("convert failed: %s", e)
        raise SystemExit(1) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m inference_service", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the gRPC inference service")
    add_settings_flags(serve, ServiceSettings)
    serve.set_defaults(func=_serve)

    pull = sub.add_parser("pull", help="download and verify a named model's GGUF (default: the default model)")
    pull.add_argument("name", nargs="?", default="default", help="model name (see --list); default: the default model")
    pull.add_argument("--list", action="store_true", help="print the known models with size and license")
    pull.add_argument("--cache-dir", type=Path)
    pull.set_defaults(func=_pull)

    conv = sub.add_parser("convert", help="convert a GGUF (default: a pulled named model) into an ONNX model folder")
    conv.add_argument(
        "--model",
        default="default",
        help="model name to pull and convert (see `pull --list`); default: the default model",
    )
    conv.add_argument("--gguf", type=Path, help="GGUF file to convert instead of the pulled --model")
    conv.add_argument("--out", type=Path, help="output folder (default: the cached folder of --model)")
    conv.add_argument(
        "--accuracy-level",
        dest="accuracy_level",
        type=int,
        default=0,
        choices=[0, 1, 2, 3, 4],
        help="MatMulNBits accuracy_level; 0 keeps fp32 compute (exact), 4 rounds activations to int8",
    )
    conv.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "fp32", "fp16", "bf16"],
        help="graph precision: fp32 for the CPU EP (GGUF weights exact), fp16/bf16 for the CUDA EP; "
        "auto picks fp16 where a CUDA GPU is visible, else fp32",
    )
    conv.set_defaults(func=_convert)

    args = parser.parse_args(argv)
    configure_logging(fmt="text")  # serve reconfigures from its settings
    args.func(args)


if __name__ == "__main__":
    main()

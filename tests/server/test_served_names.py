"""A model served under several names (--served-model-name): every name lists, resolves and echoes."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any, cast

import pytest

from inference_service.api.v1 import model_pb2 as model_pb
from inference_service.engine.errors import ModelNotFoundError
from inference_service.engine.loader import ServedModel
from inference_service.server.servicer import GenerationServicer, ModelServicer, _resolve, by_name
from inference_service.server.settings import ServiceSettings
from ortserve_common.settings_flags import add_settings_flags, settings_from_args

pytestmark = pytest.mark.anyio
NAMES = ("smollm2-135m-instruct", "radiance", "llama3.1:8b-instruct-fp16", "org/model")


def served(model_id: str, *aliases: str) -> ServedModel:
    config = SimpleNamespace(
        vocab_size=10, eos_token_ids=[2], search=SimpleNamespace(temperature=1.0, top_p=1.0, top_k=0)
    )
    engine = SimpleNamespace(context_length=64)
    return ServedModel(model_id, cast(Any, config), cast(Any, engine), "CPUExecutionProvider", "fp32", "fp", 1, aliases)


def test_every_name_resolves_to_its_model() -> None:
    a, b = served(NAMES[0], *NAMES[1:]), served("other")
    names = by_name({a.model_id: a, b.model_id: b})
    assert list(names) == [*NAMES, "other"]
    assert all(_resolve(names, name) is a for name in NAMES)
    assert _resolve(names, "other") is b
    with pytest.raises(ModelNotFoundError, match="'radiance '"):
        _resolve(names, "radiance ")
    with pytest.raises(ModelNotFoundError):
        _resolve(names, "")  # two models: an empty name is ambiguous
    assert _resolve(by_name({a.model_id: a}), "") is a


async def test_list_models_has_one_entry_per_name_and_info_echoes_the_name() -> None:
    model = served(NAMES[0], *NAMES[1:])
    servicer = ModelServicer({model.model_id: model})
    listed = await servicer.ListModels(model_pb.ListModelsRequest(), cast(Any, None))
    assert [info.id for info in listed.models] == list(NAMES)
    for name in NAMES:
        info = await servicer.GetModelInfo(model_pb.GetModelInfoRequest(model=name), cast(Any, None))
        assert info.model.id == name
    info = await servicer.GetModelInfo(model_pb.GetModelInfoRequest(), cast(Any, None))
    assert info.model.id == NAMES[0]


def test_metric_label_is_the_model_id_whatever_name_was_sent() -> None:
    model = served(NAMES[0], *NAMES[1:])
    servicer = GenerationServicer({model.model_id: model})
    assert {servicer._label(name) for name in NAMES} == {NAMES[0]}
    assert servicer._label("nope") == "unknown"


@pytest.mark.parametrize(
    ("model_id", "served_model_name", "names"),
    [
        ("", "", ["folder"]),
        ("id", "", ["id"]),
        ("", "a,b:c,org/d", ["a", "b:c", "org/d"]),
        ("", '["a", "b,c"]', ["a", "b,c"]),
        ("id", "a,id", ["id", "a"]),
    ],
)
def test_served_names_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, model_id: str, served_model_name: str, names: list[str]
) -> None:
    monkeypatch.setenv("ORTSERVE_MODEL_ID", model_id)
    monkeypatch.setenv("ORTSERVE_SERVED_MODEL_NAME", served_model_name)
    assert ServiceSettings().served_names(default="folder") == names


def test_served_names_from_flags() -> None:
    parser = argparse.ArgumentParser()
    add_settings_flags(parser, ServiceSettings)
    args = parser.parse_args(["--served-model-name", "radiance", "llama3.1:8b-instruct-fp16", "org/model"])
    settings = settings_from_args(ServiceSettings, args, "serve")
    assert settings.served_names(default="x") == ["radiance", "llama3.1:8b-instruct-fp16", "org/model"]
    args = parser.parse_args(["--served-model-name", "a,b"])
    assert settings_from_args(ServiceSettings, args, "serve").served_model_name == ["a", "b"]


@pytest.mark.parametrize("bad", ['["a", ""]', '[" radiance"]', '["radiance "]'])
def test_empty_names_or_names_with_surrounding_spaces_are_refused(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("ORTSERVE_SERVED_MODEL_NAME", bad)
    with pytest.raises(ValueError, match="served model name"):
        ServiceSettings()

"""The one dispatch from a description of a front end to its config and module."""

from __future__ import annotations

from typing import Any

from torch import nn

from axlstm.audio.features import FrontEndConfig
from axlstm.audio.frontend import FrontEndSpec
from axlstm.audio.kaldi import KaldiFbankConfig
from axlstm.core.errors import ConfigError

__all__ = ["FRONT_END_KINDS", "build_front_end", "front_end_from_dict"]

#: ``"kind"`` of a release's ``"front_end"`` -> its config class.
FRONT_END_KINDS: dict[str, type[FrontEndSpec]] = {
    "log_mel": FrontEndConfig,
    "kaldi_fbank": KaldiFbankConfig,
}


def front_end_from_dict(config: dict[str, Any] | None) -> FrontEndSpec:
    """The config a release's ``"front_end"`` dict describes: ``{"kind": "kaldi_fbank", ...}``
    or a dict without ``kind`` (every AxLSTM release) / ``kind == "log_mel"``."""
    config = dict(config or {})
    kind = config.get("kind", "log_mel")
    if kind not in FRONT_END_KINDS:
        raise ConfigError(
            f"unknown front end kind {kind!r}; use one of {', '.join(FRONT_END_KINDS)}"
        )
    cls = FRONT_END_KINDS[kind]
    if "kind" not in {f for f in cls.__dataclass_fields__}:
        config.pop("kind", None)
    return cls.from_dict(config)


def build_front_end(config: Any = None) -> nn.Module:
    """The front end a model or a release describes: the one dispatch on the input kind.

    Args:
        config: a release's ``"front_end"`` dict, a model's ``front_end_config``
            (:class:`KaldiFbankConfig` or :class:`~axlstm.audio.features.FrontEndConfig`), or
            None (the AxLSTM defaults). ``{"kind": "kaldi_fbank", ...}`` gives
            :class:`KaldiFbankFrontEnd`; a dict without ``kind`` (every AxLSTM release) or with
            ``kind == "log_mel"`` gives the AxLSTM
            :class:`~axlstm.audio.features.LogMelFrontEnd`.

    Raises:
        ValueError: an unknown kind or an object that is neither a dict nor a config.
    """
    if isinstance(config, FrontEndSpec):
        return config.build()
    if config is not None and not isinstance(config, dict):
        raise ConfigError(
            f"expected a front-end dict or config, got {type(config).__name__}: {config!r}"
        )
    return front_end_from_dict(config).build()

"""Embeddings for any audio: one function for arrays, one loop for files, one way to name a model.

model = axlstm.embedding.resolve_model("path/to/release")    # or a preset name
out = axlstm.embedding.embed(model, wave, sample_rate=44100)  # == model.embed(wave, 44100)
out.scene, out.frames, out.timestamps
"""

from axlstm.embedding.extract import (
    MODEL_SAMPLE_RATE,
    OFFICIAL_WINDOW,
    Embeddings,
    check_clip,
    embed,
    front_end_config,
    layer_labels,
    model_layers,
    model_window,
    num_input_frames,
    official_window,
    parse_layers,
    parse_window,
)
from axlstm.embedding.files import (
    FileEmbedding,
    collect_inputs,
    iter_file_embeddings,
    read_manifest,
)
from axlstm.embedding.resolve import resolve_model

__all__ = [
    "MODEL_SAMPLE_RATE",
    "OFFICIAL_WINDOW",
    "Embeddings",
    "FileEmbedding",
    "check_clip",
    "collect_inputs",
    "embed",
    "front_end_config",
    "iter_file_embeddings",
    "layer_labels",
    "model_layers",
    "model_window",
    "num_input_frames",
    "official_window",
    "parse_layers",
    "parse_window",
    "read_manifest",
    "resolve_model",
]

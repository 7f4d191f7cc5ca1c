"""Embeddings for any audio: one function for arrays, one loop for files, one way to name a model.

model = axlstm.embedding.resolve_model("path/to/release")    # or a preset name
out = axlstm.embed(model, wave, sample_rate=44100)            # any Encoder
out.scene, out.frames, out.timestamps
"""

from axlstm.audio.listing import collect_inputs, read_manifest
from axlstm.embedding.extract import (
    Embeddings,
    check_clip,
    embed,
    front_end_config,
)
from axlstm.embedding.files import FileEmbedding, iter_file_embeddings
from axlstm.embedding.options import (
    OFFICIAL_WINDOW,
    check_frame_layout,
    hop_split_for,
    layer_labels,
    model_layers,
    model_window,
    official_window,
    parse_layers,
    parse_window,
    precision_context,
)
from axlstm.embedding.resolve import resolve_model
from axlstm.embedding.streaming import stream_file_embedding

__all__ = [
    "OFFICIAL_WINDOW",
    "Embeddings",
    "FileEmbedding",
    "check_clip",
    "check_frame_layout",
    "collect_inputs",
    "embed",
    "front_end_config",
    "hop_split_for",
    "iter_file_embeddings",
    "layer_labels",
    "model_layers",
    "model_window",
    "official_window",
    "parse_layers",
    "parse_window",
    "precision_context",
    "read_manifest",
    "resolve_model",
    "stream_file_embedding",
]

"""Building blocks shared by every backbone: patches, positions, norms, mLSTM and attention."""

from axlstm.layers.attention import Attention, FeedForward, TransformerBlock
from axlstm.layers.drop import drop_path, drop_path_rates
from axlstm.layers.mamba import BiMambaMixer, MambaBlock, MambaMixer
from axlstm.layers.mlstm import mlstm_parallel, mlstm_recurrent
from axlstm.layers.norms import MultiHeadNorm, OffsetLayerNorm
from axlstm.layers.patch import PatchEmbed, patchify, sincos_pos_embed_2d
from axlstm.layers.scan import selective_scan
from axlstm.layers.vil import CausalConv1d, HeadwiseLinear, MLSTMCell, ViLBlock, ViLLayer

__all__ = [
    "Attention",
    "BiMambaMixer",
    "CausalConv1d",
    "FeedForward",
    "HeadwiseLinear",
    "MLSTMCell",
    "MambaBlock",
    "MambaMixer",
    "MultiHeadNorm",
    "OffsetLayerNorm",
    "PatchEmbed",
    "TransformerBlock",
    "ViLBlock",
    "ViLLayer",
    "drop_path",
    "drop_path_rates",
    "mlstm_parallel",
    "mlstm_recurrent",
    "patchify",
    "selective_scan",
    "sincos_pos_embed_2d",
]

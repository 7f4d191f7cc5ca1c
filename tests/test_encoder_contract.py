"""The encoder contract: one test class over every registered preset.

Every model family implements :class:`axlstm.models.Encoder`; these tests check the declared
interface against what the model does (shapes, the frame rule, layers, finite values, gradients,
the pretraining step, the release round trip, the front end). A new family passes them by
registering its presets; nothing here names a family.
"""

from __future__ import annotations

import json

import pytest
import torch

import axlstm
from axlstm.audio import FrontEndSpec, build_front_end
from axlstm.models import MODEL_CLASSES, Encoder

ALL = axlstm.list_models()


def small(name: str) -> Encoder:
    """The preset at its own width with two blocks (one bidirectional pair), so every preset
    runs fast on a CPU."""
    return axlstm.create_model(name, depth=2)


@pytest.mark.parametrize("name", ALL)
class TestEncoderContract:
    def test_declares_the_interface(self, name):
        with torch.device("meta"):  # the full preset, no weights allocated
            full = axlstm.create_model(name)
        model = small(name)
        for m in (full, model):
            assert isinstance(m, Encoder)
            assert MODEL_CLASSES[m.release_class][0] is type(m)
            assert isinstance(m.front_end_config, FrontEndSpec)
            assert m.frame_layouts[0] == "time" and m.config.frame_layout in m.frame_layouts
            assert 0 < m.frame_hop <= m.frame_span <= m.embed_window
            assert m.num_layers >= 1 and m.frame_dim % m.embed_dim == 0
            assert m.pretraining_problem() is None
        assert full.config.name == name and model.config.to_dict()["name"] == name

    def test_frames_follow_the_declared_rule(self, name):
        model = small(name).eval()
        span, hop = model.frame_span, model.frame_hop
        T0 = model.example_input(1).shape[2]
        for T in (span, T0, T0 + 3 * hop + 1):
            spec = model.example_input(2, T)
            assert spec.shape[:3] == (2, 1, T)
            n = model.frames_for(T)
            assert n == (T - span) // hop + 1 and model.num_tokens(T) >= n
            with torch.no_grad():
                feats = model.forward_features(spec)
            assert feats.shape == (2, n, model.frame_dim)
            assert torch.isfinite(feats).all()
        with pytest.raises(ValueError):
            model.forward_features(model.example_input(1, span - 1))

    def test_layers_from_one_pass_equal_single_layers(self, name):
        model = small(name).eval()
        spec = model.example_input(1)
        choice = [0, -1, None]
        with torch.no_grad():
            many = model.forward_features(spec, layer=choice)
            single = [model.forward_features(spec, layer=i) for i in choice]
        assert isinstance(many, list) and len(many) == 3
        for a, b in zip(many, single, strict=True):
            assert torch.equal(a, b)
        assert not torch.equal(many[0], many[2])  # a hidden state is not the final output
        with pytest.raises(IndexError):
            model.forward_features(spec, layer=model.num_layers)

    def test_pretrain_step_gives_a_loss_metrics_and_gradients(self, name):
        model = small(name).train()
        spec = model.example_input(2)
        step = model.pretrain_step(spec, generator=torch.Generator().manual_seed(0))
        assert step.loss.dim() == 0 and torch.isfinite(step.loss)
        assert set(step.metrics) == set(model.pretrain_metrics)
        assert all(v.dim() == 0 and not v.requires_grad for v in step.metrics.values())
        step.loss.backward()
        for key, p in model.named_parameters():
            if not p.requires_grad:
                continue  # fixed sin-cos positions
            assert p.grad is not None, f"{name}: {key} got no gradient"
            assert torch.isfinite(p.grad).all(), f"{name}: {key} has a non-finite gradient"
            assert p.grad.abs().sum() > 0, f"{name}: {key} has an all-zero gradient"
        rec = model.reconstruction(spec, generator=torch.Generator().manual_seed(0))
        if rec is not None:  # predictions for every patch
            assert rec.pred.shape[:2] == rec.mask.shape and rec.mask.shape[0] == 2

    def test_release_round_trip(self, name, tmp_path):
        model = small(name).eval()
        path = model.save_pretrained(tmp_path / name, note="test")
        cfg = json.loads((path / "config.json").read_text())
        assert cfg["model_class"] == model.release_class
        assert cfg["model"]["name"] == name and cfg["provenance"] == {"note": "test"}
        assert cfg["front_end"] == model.front_end_config.to_dict()
        loaded = axlstm.load_model(path)
        assert type(loaded) is type(model) and loaded.config == model.config
        for key, value in model.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key])
        spec = model.example_input(1)
        with torch.no_grad():
            assert torch.equal(model.forward_features(spec), loaded.forward_features(spec))

    def test_front_end_makes_the_models_input(self, name):
        model = small(name).eval()
        fe = model.front_end_config
        wave = 0.1 * torch.randn(fe.sample_rate + 123)
        spec = build_front_end(fe.to_dict())(wave)  # the release's description of it
        T = fe.fixed_length or fe.num_frames(wave.shape[0])
        assert spec.shape == (1, 1, T, fe.n_mels) == (1, 1, T, model.example_input(1).shape[3])
        whole = fe.whole_clip().build()(wave)
        assert whole.shape[2] == fe.num_frames(wave.shape[0])
        out = axlstm.embed(model, wave, fe.sample_rate, window="none")
        assert out.scene.shape == (1, model.frame_dim) and torch.isfinite(out.scene).all()

    def test_example_input_and_counts(self, name):
        model = small(name)
        assert model.example_input(3).shape[0] == 3
        enc, total = model.num_parameters("encoder"), model.num_parameters("all")
        assert 0 < enc <= total
        assert total == sum(p.numel() for p in model.parameters())

"""Wav2Vec2 teacher through ``transformers``: a pretrained checkpoint when the user has one (a hub name
or a local folder saved with ``save_pretrained``), otherwise a from-scratch configuration from a preset.

The resolved Hugging Face config is kept in ``resolved_params['hf_config']``, so a wakeword checkpoint
rebuilds the network without the original pretrained folder (its weights are in the state dict).
"""
from __future__ import annotations

import torch
from torch import nn

PRESETS: dict[str, dict] = {
    # tests: a few thousand parameters
    "tiny": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
             "conv_dim": (16,) * 7, "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4},
    # trains on a CPU: ~1 M parameters (0.8 s per batch of 64 on one core with the conv encoder frozen)
    "small": {"hidden_size": 144, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 576,
              "conv_dim": (64,) * 7, "num_conv_pos_embeddings": 64, "num_conv_pos_embedding_groups": 8},
    # the wav2vec2-base architecture (95 M parameters)
    "base": {},
}

KNOWN = {"preset", "pretrained", "hf_config", "freeze_feature_encoder", "freeze_layers", "dropout", "n_mels"}


class Wav2Vec2Teacher(nn.Module):
    """Teacher backbone on raw audio.

    forward_features(audio: (batch, 1, samples) at 16 kHz) -> (logits (batch,),
    [hidden state (batch, hidden, frames)] per transformer layer, frames at 20 ms).

    Parameters (a dict, stored in checkpoints): ``preset`` (tiny/small/base) or ``pretrained``
    (name or folder for ``Wav2Vec2Model.from_pretrained``); ``freeze_feature_encoder`` (the conv
    waveform encoder is not trained), ``freeze_layers`` (the lowest N transformer layers are not trained).
    """

    input_kind = "audio"

    def __init__(self, params: dict):
        super().__init__()
        from transformers import Wav2Vec2Config, Wav2Vec2Model

        unknown = set(params) - KNOWN
        if unknown:
            raise ValueError(f"unknown wav2vec2 parameters: {sorted(unknown)}; known: {sorted(KNOWN - {'n_mels'})}")
        if params.get("hf_config"):
            self.encoder = Wav2Vec2Model(Wav2Vec2Config.from_dict(params["hf_config"]))
        elif params.get("pretrained"):
            try:
                self.encoder = Wav2Vec2Model.from_pretrained(params["pretrained"])
            except Exception as exc:  # offline hub, missing folder, wrong model type
                raise ValueError(f"cannot load a pretrained Wav2Vec2 from '{params['pretrained']}': {exc}. "
                                 "Pass a local folder saved with save_pretrained, or use a preset "
                                 "(from scratch).") from exc
        else:
            preset = params.get("preset", "small")
            if preset not in PRESETS:
                raise ValueError(f"unknown wav2vec2 preset '{preset}'; known: {sorted(PRESETS)}")
            self.encoder = Wav2Vec2Model(Wav2Vec2Config(**PRESETS[preset]))
        cfg = self.encoder.config
        # LayerDrop skips whole layers in training, which would change how many hidden states come back.
        cfg.layerdrop = 0.0
        if "dropout" in params:
            cfg.hidden_dropout = cfg.attention_dropout = cfg.activation_dropout = float(params["dropout"])
        self.freeze_feature_encoder = bool(params.get("freeze_feature_encoder", False))
        self.freeze_layers = int(params.get("freeze_layers", 0))
        if self.freeze_layers > cfg.num_hidden_layers:
            raise ValueError(f"freeze_layers={self.freeze_layers} but the model has {cfg.num_hidden_layers} layers")
        if self.freeze_feature_encoder:
            self.encoder.freeze_feature_encoder()
        for layer in self.encoder.encoder.layers[:self.freeze_layers]:
            for p in layer.parameters():
                p.requires_grad_(False)
        hidden = cfg.hidden_size
        self.pool = nn.Linear(hidden, 1)  # attention pooling over frames
        self.classifier = nn.Linear(hidden, 1)
        self.feature_dims = [hidden] * cfg.num_hidden_layers
        self.resolved_params = {k: v for k, v in params.items() if k not in ("pretrained", "n_mels")}
        self.resolved_params["hf_config"] = cfg.to_dict()

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if x.dim() == 3:
            x = x[:, 0]
        if x.dim() != 2:
            raise ValueError(f"expected (batch, 1, samples), got {tuple(x.shape)}")
        # Zero mean, unit variance per window, as Wav2Vec2's feature extractor does.
        x = (x - x.mean(dim=1, keepdim=True)) / (x.std(dim=1, keepdim=True) + 1e-5)
        out = self.encoder(x, output_hidden_states=True)
        layers = out.hidden_states[-self.encoder.config.num_hidden_layers:]
        h = out.last_hidden_state
        w = self.pool(h).softmax(dim=1)
        logits = self.classifier((w * h).sum(dim=1)).squeeze(1)
        return logits, [t.transpose(1, 2) for t in layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)[0]

"""Tiny backbone configs shared by the tests (random weights, built in milliseconds)."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import BertConfig, WhisperConfig

from modeling_ter import TERConfig, TERForEmotionRecognition

REPO_ROOT = Path(__file__).resolve().parents[1]


def tiny_whisper_config(encoder_layers: int = 1, max_source_positions: int = 50, **overrides) -> WhisperConfig:
    """A random Whisper of `d_model=16`, 2 heads, 80 mel bins and `encoder_layers` layers (one decoder layer: TER uses
    the encoder only). `max_source_positions=50` takes 1 s of mel frames; give 1500 (30 s, the real Whisper's) for
    inputs as long as the pipeline feeds."""
    return WhisperConfig(
        d_model=16,
        encoder_layers=encoder_layers,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        num_mel_bins=80,
        max_source_positions=max_source_positions,
        vocab_size=60,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
        **overrides,
    )


def tiny_bert_config(vocab_size: int = 50, num_hidden_layers: int = 1, **overrides) -> BertConfig:
    """A random BERT of `hidden_size=16`, 2 heads, feed-forward 24 and `num_hidden_layers` layers."""
    options = {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 24, **overrides}
    return BertConfig(vocab_size=vocab_size, num_hidden_layers=num_hidden_layers, **options)


def tiny_ter_with_every_backbone(text_vocab_size: int = 40) -> TERForEmotionRecognition:
    """Random tiny Whisper (audio), BERT (text) and our face CNN (video): every raw-input path of the remote code."""
    torch.manual_seed(0)
    whisper = tiny_whisper_config(
        max_source_positions=1500,  # 30 s of mel frames, as the real Whisper (the pipeline feeds clips that long)
        name_or_path=str(REPO_ROOT / "local-folder" / "tiny-whisper"),  # as a backbone loaded from a local folder
    )
    bert = tiny_bert_config(vocab_size=text_vocab_size)
    face = {"model_type": "ter_face_cnn", "block_channels": [8, 16], "hidden_size": 16}
    config = TERConfig(
        modality_configs={
            "audio": {"backbone": whisper.to_dict(), "use_weighted_layer_sum": True},
            "text": {"backbone": bert.to_dict()},
            "video": {"backbone": face},
        },
        id2label={0: "anger", 1: "happiness", 2: "sadness"},
        head_hidden_size=8,
        trusted_threshold=0.01,
    )
    return TERForEmotionRecognition(config).eval()

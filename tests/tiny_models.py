"""Tiny random TER models shared by the tests (imported by name, as `hub_server`: tests/ is on `sys.path`)."""

import torch
from transformers import BertConfig, WhisperConfig

from modeling_ter import TERConfig, TERForEmotionRecognition


def tiny_ter_with_every_backbone() -> TERForEmotionRecognition:
    """Random tiny Whisper (audio), BERT (text) and our face CNN (video): every raw-input path of the remote code."""
    torch.manual_seed(0)
    whisper = WhisperConfig(
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=24,
        decoder_ffn_dim=24,
        num_mel_bins=80,
        max_source_positions=50,
        vocab_size=60,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    bert = BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=24)
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

"""Tiny backbone configs shared by the tests (random weights, built in milliseconds)."""

from __future__ import annotations

from transformers import WhisperConfig


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

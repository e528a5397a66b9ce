"""Whisper's encoder on mel features of their real length (no padding to 30 s). Copied with the model as remote
code."""

import torch

# ----------------------------------------------------------------------------------------------------------------
# Whisper on real-length input
# ----------------------------------------------------------------------------------------------------------------


def whisper_encoder_unpadded(
    encoder: torch.nn.Module,
    input_features: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None, torch.Tensor]:
    """Run a transformers `WhisperEncoder` on mel features of their real length, without padding to 30 s.

    The same computation as `WhisperEncoder.forward` (conv1 -> gelu -> conv2 -> gelu -> + positions -> layers ->
    layer norm) with the position table sliced to the input length. For a batch of unequal lengths, mel frames
    after each sample's length are zeroed before each convolution (as the convolution's own zero padding does for
    a sample alone) and masked out of self-attention, so each sample's output equals that of the sample run alone.

    Args:
        encoder: a `WhisperEncoder` (eager or sdpa attention).
        input_features: `(batch_size, num_mel_bins, num_frames)` log-mel features, `num_frames` <= 3000 (any
            parity), padding on the right.
        attention_mask: `(batch_size, num_frames)`, 1 for real mel frames, 0 for padding; `None` when all frames
            are real.
        output_hidden_states: also return the embeddings output and every layer's output.

    Returns:
        `(last_hidden_state, hidden_states, frame_mask)`: `last_hidden_state` of shape `(batch_size, out_frames,
        d_model)` with `out_frames = ceil(num_frames / 2)`; `hidden_states` a tuple of `num_layers + 1` tensors of
        that shape (the last one after the final layer norm, as transformers returns it) or `None`; `frame_mask`
        `(batch_size, out_frames)` long, 1 for output frames of real input (ceil(length / 2) per sample).
    """
    batch_size, num_mel_bins, num_frames = input_features.shape
    max_frames = encoder.embed_positions.num_embeddings * encoder.conv1.stride[0] * encoder.conv2.stride[0]
    if num_mel_bins != encoder.conv1.in_channels or not 0 < num_frames <= max_frames:
        raise ValueError(
            f"The Whisper encoder expects mel features of shape (batch_size, {encoder.conv1.in_channels}, "
            f"num_frames <= {max_frames}), but got {tuple(input_features.shape)}."
        )
    # While torch.export / torch.compile trace, the data-dependent mask check is skipped and the masked path is
    # always taken (for equal lengths it multiplies by 1 and adds 0: the same values up to rounding).
    tracing = torch.compiler.is_compiling()
    frames = torch.arange(num_frames, device=input_features.device)
    if attention_mask is None:
        lengths = torch.full((batch_size,), num_frames, device=input_features.device)
    else:
        if attention_mask.shape != (batch_size, num_frames):
            raise ValueError(
                f"The attention mask has shape {tuple(attention_mask.shape)}, expected (batch_size, num_frames) = "
                f"{(batch_size, num_frames)}."
            )
        lengths = attention_mask.long().sum(-1)
        valid = tracing or torch.equal(attention_mask.bool(), frames < lengths[:, None]) and bool((lengths > 0).all())
        if not valid:
            raise ValueError(
                "The attention mask must mark each sample's real mel frames as a non-empty prefix of 1s followed "
                "by 0s (right padding)."
            )
    padded = tracing or bool((lengths < num_frames).any())
    mel_mask = (frames < lengths[:, None]).unsqueeze(1).to(input_features.dtype)  # (batch, 1, num_frames)

    hidden_states = input_features * mel_mask if padded else input_features
    hidden_states = torch.nn.functional.gelu(encoder.conv1(hidden_states))
    if padded:
        hidden_states = hidden_states * mel_mask
    hidden_states = torch.nn.functional.gelu(encoder.conv2(hidden_states)).permute(0, 2, 1)
    out_frames = hidden_states.shape[1]
    hidden_states = hidden_states + encoder.embed_positions.weight[:out_frames]
    hidden_states = torch.nn.functional.dropout(hidden_states, p=encoder.dropout, training=encoder.training)

    out_lengths = (lengths - 1) // 2 + 1
    frame_mask = (torch.arange(out_frames, device=lengths.device) < out_lengths[:, None]).long()
    layer_mask = None
    if padded:
        implementation = encoder.config._attn_implementation
        if implementation not in ("eager", "sdpa"):
            raise ValueError(
                f"Masking unequal lengths supports eager and sdpa attention, but the encoder uses {implementation}; "
                "load it with `attn_implementation='sdpa'` or run samples of equal length."
            )
        # Additive key-padding mask (batch, 1, 1, out_frames): 0 for real frames, the dtype's minimum for padding.
        min_value = torch.finfo(hidden_states.dtype).min
        layer_mask = (1.0 - frame_mask[:, None, None, :].to(hidden_states.dtype)) * min_value

    all_hidden_states = [hidden_states] if output_hidden_states else None
    for encoder_layer in encoder.layers:
        if encoder.training and torch.rand([]) < encoder.layerdrop:
            continue
        hidden_states = encoder_layer(hidden_states, layer_mask)
        if output_hidden_states:
            all_hidden_states.append(hidden_states)
    hidden_states = encoder.layer_norm(hidden_states)
    if output_hidden_states:
        all_hidden_states[-1] = hidden_states
        all_hidden_states = tuple(all_hidden_states)
    return hidden_states, all_hidden_states, frame_mask

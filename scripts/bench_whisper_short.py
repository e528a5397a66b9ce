"""Benchmark: Whisper tiny.en encoder on short real clips, padded to 30 s vs run on their real length.

    python scripts/bench_whisper_short.py [--emodb 10] [--repeats 3] [--threads N]

Uses the 6 CREMA-D clips (16 kHz) and the first `--emodb` EmoDB files (22.05 kHz, resampled to 16 kHz) from
../shared/data. Prints utterances/s of `WhisperEncoder.forward` on 3000 padded mel frames and of
`whisper_encoder_unpadded` on the real frames, at batch size 1 and 8, the speed-up of the second over the first
(both measured in this run), and the cosine similarity of the masked-mean pooled last hidden states.
"""

import argparse
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly
from transformers import AutoFeatureExtractor, WhisperModel

from modeling_ter.encoders.whisper_conversion import SAMPLING_RATE, whisper_tiny_en_path
from modeling_ter.models.whisper_unpadded import whisper_encoder_unpadded

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_clips(num_emodb: int) -> list[np.ndarray]:
    """The real clips as 16 kHz mono float32 arrays."""
    files = sorted((DATA / "crema_d" / "AudioWAV_16k").glob("*.wav"))
    files += sorted((DATA / "emodb" / "wav").glob("*.wav"))[:num_emodb]
    if not files:
        raise FileNotFoundError(f"No clips under {DATA}: this benchmark needs ../shared/data (CREMA-D, EmoDB).")
    clips = []
    for file in files:
        wave, rate = sf.read(file, dtype="float32")
        if rate != SAMPLING_RATE:
            divisor = np.gcd(rate, SAMPLING_RATE)
            wave = resample_poly(wave, SAMPLING_RATE // divisor, rate // divisor).astype(np.float32)
        clips.append(wave)
    return clips


def best_time(function, repeats: int) -> float:
    """The best of `repeats` wall times of `function()` in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--emodb", type=int, default=10, help="number of EmoDB files to add to the 6 CREMA-D clips")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)

    path = whisper_tiny_en_path()
    encoder = WhisperModel.from_pretrained(path).encoder.eval()
    feature_extractor = AutoFeatureExtractor.from_pretrained(path)
    clips = load_clips(args.emodb)
    batch = feature_extractor(clips, sampling_rate=SAMPLING_RATE, return_tensors="pt", return_attention_mask=True)
    features, mask = batch.input_features, batch.attention_mask
    lengths = mask.sum(-1)
    print(
        f"{len(clips)} clips, {min(len(c) for c in clips) / SAMPLING_RATE:.2f}-"
        f"{max(len(c) for c in clips) / SAMPLING_RATE:.2f} s, {torch.get_num_threads()} threads"
    )

    def padded(start: int, size: int) -> torch.Tensor:
        return encoder(features[start : start + size]).last_hidden_state

    def unpadded(start: int, size: int):
        frames = int(lengths[start : start + size].max())
        chunk_mask = mask[start : start + size, :frames] if size > 1 else None
        return whisper_encoder_unpadded(encoder, features[start : start + size, :, :frames], chunk_mask)

    for size in (1, 8):
        starts = range(0, len(clips) - size + 1, size)
        count = len(starts) * size
        rates = {}
        for name, run in (("padded 3000 frames", padded), ("unpadded", unpadded)):
            run(0, size)  # warm-up
            seconds = best_time(lambda: [run(start, size) for start in starts], args.repeats)
            rates[name] = count / seconds
            print(f"batch {size}: {name:>18}: {rates[name]:8.1f} utterances/s")
        print(f"batch {size}: speed-up {rates['unpadded'] / rates['padded 3000 frames']:.1f}x")

    full = encoder(features).last_hidden_state
    frames = int(lengths.max())
    short, _, frame_mask = whisper_encoder_unpadded(encoder, features[:, :, :frames], mask[:, :frames])
    weights = frame_mask[..., None].float()
    pooled_short = (short * weights).sum(1) / weights.sum(1)
    pooled_full = (full[:, : short.shape[1]] * weights).sum(1) / weights.sum(1)
    cosine = torch.nn.functional.cosine_similarity(pooled_short, pooled_full, dim=-1)
    relative = (pooled_short - pooled_full).norm(dim=-1) / pooled_full.norm(dim=-1)
    print(
        f"pooled last hidden state, unpadded vs padded: cosine mean {cosine.mean():.4f} "
        f"(min {cosine.min():.4f}, max {cosine.max():.4f}); relative L2 difference mean {relative.mean():.3f} "
        f"(max {relative.max():.3f})"
    )


if __name__ == "__main__":
    main()

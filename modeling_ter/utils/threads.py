"""How many intra-op threads torch uses for the frozen-encoder work on CPU (feature extraction, heads, evaluation)."""

import os

import torch


def single_thread_on_cpu(device: torch.device = torch.device("cpu")) -> None:
    """One intra-op thread on CPU unless `$OMP_NUM_THREADS` asks for others (as `accelerate launch
    --num_cpu_threads_per_process` sets it): the heads are small matrices and the encoders small batches, so threads
    cost more than they save on a busy machine (measured on 2 busy cores: Whisper tiny on a 2 s clip 0.92 s with 2
    threads vs 0.06 s with one; a head step of batch 16 0.34 s vs 0.02 s); on idle cores they can help (README,
    Performance)."""
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)

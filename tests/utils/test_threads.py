"""The CPU thread policy of frozen-encoder work (modeling_ter/utils/threads.py)."""

import torch

from modeling_ter.utils.threads import single_thread_on_cpu


def test_cached_feature_training_runs_one_thread_unless_omp_num_threads_asks(monkeypatch):
    # One thread is the default on CPU (threads cost far more than they save on busy cores), but a user's (or
    # `accelerate launch --num_cpu_threads_per_process`'s) $OMP_NUM_THREADS is theirs to set.
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        single_thread_on_cpu(torch.device("cpu"))
        assert torch.get_num_threads() == 2
        monkeypatch.delenv("OMP_NUM_THREADS")
        single_thread_on_cpu(torch.device("cuda"))
        assert torch.get_num_threads() == 2
        single_thread_on_cpu(torch.device("cpu"))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)

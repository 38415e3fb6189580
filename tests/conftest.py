"""Test-suite settings shared by every test package."""

import pytest
from hypothesis import settings

# Property-based tests draw the same examples on every machine and run (as hypothesis's own CI profile does):
# README's test command must give the same verdict everywhere. benchmarks/fuzz_api.py explores at random.
settings.register_profile("psfkit", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("psfkit")


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread: tiny problems, where the thread pool only adds contention on a shared CPU."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)

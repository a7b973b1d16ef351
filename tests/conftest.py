"""Session fixtures of the operations tests (servers started once per session; see ops_support.py)."""

import pytest  # noqa: E402
from ops_support import moto_s3, ops_cache, prefect_server, s3_batch  # noqa: F401


@pytest.fixture(autouse=True)
def _torch_threads_unchanged(request):
    """A test (or the code it runs) must leave torch's thread count as it found it: the float sums,
    and so the outputs, depend on it (tests/test_outputs_unchanged.py compares bytes)."""
    import torch

    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"torch threads {before} -> {after} after {request.node.nodeid}")

"""The GPU checks need CUDA: without it, stop with one line instead of a page of failures."""
import pytest
import torch


def pytest_collection_modifyitems(session, config, items):
    if not torch.cuda.is_available():
        pytest.exit("tests/gpu needs a CUDA device (torch.cuda.is_available() is False); the default test run "
                    "(python -m pytest) checks everything else on the CPU", returncode=4)

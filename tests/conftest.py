"Shared pytest settings: tests marked `slow` run only when asked (`pytest -m slow` or VIVIT_EDU_SLOW=1)."
import os
import pytest


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VIVIT_EDU_SLOW") or "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow` or VIVIT_EDU_SLOW=1")
    for item in items:
        if "slow" in item.keywords: item.add_marker(skip)

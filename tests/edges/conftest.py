"""The fault suite (issue 12): each case runs the real gateway against real
parts and asserts the promise, counted (promise.py). CI runs every case for
its bounded length; `bench/soak --minutes N` runs the same cases long."""


def pytest_configure(config):
    config.addinivalue_line("markers", "edges: the fault suite of issue 12 (bench/soak runs it long)")

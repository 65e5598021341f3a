import os

# Must be set before jax is imported (the house's test setup; the bench needs one device).
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")


def pytest_configure(config):
    # Third-party noise seen when the optional peers (Flax, Equinox) are installed.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:flax.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:orbax.*")

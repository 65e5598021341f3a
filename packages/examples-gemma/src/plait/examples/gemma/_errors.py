"""Exception classes of plait.examples.gemma."""


class ConfigError(ValueError):
    """A configuration value is invalid or an override names no field."""


class CacheError(RuntimeError):
    """Cached decoding was asked for without a cache, or beyond the cache's length."""


class WeightLoadingError(ValueError):
    """A published-weights tree does not fit the model's configuration."""

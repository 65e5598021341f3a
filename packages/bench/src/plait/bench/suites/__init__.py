"""Benchmark suites. Each exposes ``run(args, report)``; see ``plait.bench.__main__``."""

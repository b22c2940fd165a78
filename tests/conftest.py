"""Shared fixtures. Real services live in tests/services/, one module each."""

pytest_plugins = ["tests.services.s3", "tests.services.dask_cluster",
                  "tests.services.redis", "tests.services.celery_workers"]

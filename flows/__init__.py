"""Prefect flows: orchestration only. The work lives in `tasks/`."""

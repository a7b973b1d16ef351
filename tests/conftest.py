"""Session fixtures of the operations tests (servers started once per session; see ops_support.py)."""

from ops_support import moto_s3, ops_cache, prefect_server, s3_batch  # noqa: F401

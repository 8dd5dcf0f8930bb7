"""What a LangSmith server answers on ``GET /info``, for the LangSmith endpoints of tests and benches.

The ``langsmith`` client reads it before its first upload: ``use_multipart_endpoint`` False keeps
runs on ``/runs/batch`` (JSON, readable by the receivers), and the batch limits are LangSmith's
own defaults. Used by tests/monitoring/test_langsmith.py, tests/scaleout.py and
bench/_langsmith_receiver.py.
"""

from __future__ import annotations

from typing import Any

INFO: dict[str, Any] = {
    "version": "0.7.0",
    "batch_ingest_config": {
        "use_multipart_endpoint": False,
        "scale_up_qsize_trigger": 1000,
        "scale_up_nthreads_limit": 4,
        "scale_down_nempty_trigger": 4,
        "size_limit": 100,
        "size_limit_bytes": 20_971_520,
    },
}

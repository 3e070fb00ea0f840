"""Object ids (`org-…`, `key_…`, `resp_…`, `ig_…`): one scheme for every table and wire object."""

import secrets
import threading
import time

# The longest request id kept (a proxy may pass on one its client chose): the column's length.
MAX_REQUEST_ID_LENGTH = 64

_last_id_millis = 0
_id_lock = threading.Lock()


def new_id(prefix: str) -> str:
    """Ids that sort in creation order (lists page by them within one second): a millisecond
    clock, kept strictly increasing in this process, then randomness."""
    global _last_id_millis
    with _id_lock:
        _last_id_millis = max(_last_id_millis + 1, time.time_ns() // 1_000_000)
        millis = _last_id_millis
    return f"{prefix}{millis:012x}{secrets.token_hex(6)}"

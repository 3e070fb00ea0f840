"""Process logging: one handler on the root logger, as text lines or JSON lines, every record
carrying the id of the request it was logged under ("-" outside a request)."""

import logging
from typing import Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# JSON keys a log pipeline can index; `extra=` fields of a record (the access line's method,
# path, status, duration_ms) are added beside them.
_JSON_FIELDS = "{asctime}{levelname}{name}{request_id}{message}"
_JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger"}
# uvicorn repeats each message with terminal colour codes as `color_message`.
_JSON_LEFT_OUT = [*RESERVED_ATTRS, "color_message"]


def configure(level: str, log_format: LogFormat, request_filter: logging.Filter) -> None:
    """Route every logger (uvicorn's included) through one handler in `log_format`."""
    handler = logging.StreamHandler()
    handler.addFilter(request_filter)
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter(
            _JSON_FIELDS, style="{", rename_fields=_JSON_NAMES, reserved_attrs=_JSON_LEFT_OUT
        )
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
    handler.setFormatter(formatter)
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Python warnings (a library's FutureWarning) become records too, not bare stderr lines.
    logging.captureWarnings(True)


class _Unactionable(logging.Filter):
    """Library notices a user can do nothing about, dropped by their exact words."""

    def __init__(self, *phrases: str) -> None:
        super().__init__()
        self._phrases = phrases

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(phrase in message for phrase in self._phrases)


# transformers, once per image-processor class it imports: torchvision is missing, the PIL
# processor is used. No torchvision wheel for the pinned CPU torch exists on PyPI, and the PIL
# processors give the same inputs.
_TORCHVISION_FALLBACK = "requires torchvision (not installed); falling back to"
# diffusers' from_pipe (deriving an edit twin) casts every model to the same dtype and warns for
# models that list float32-only modules, even when the list is empty.
_NO_FP32_MODULES = "that should be kept in float32: []."


def route_library_logs() -> None:
    """diffusers and transformers write to stderr through handlers of their own, with loading
    bars between: send their records to the process handler instead, and drop the bars."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
    logging.getLogger("transformers.utils.import_utils").addFilter(
        _Unactionable(_TORCHVISION_FALLBACK)
    )
    logging.getLogger("diffusers.models.modeling_utils").addFilter(_Unactionable(_NO_FP32_MODULES))

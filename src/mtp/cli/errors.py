"""Turning the faults of ``mtp fit|validate|test|predict`` into one plain message.

jsonargparse wraps an exception raised while a dataset or model is built in ~110 lines of Union-type errors ending
in ``Given value: Namespace(...)``. :func:`build_error_message` digs out the innermost cause and names the config
key and class that raised it (``data.train (mtp.data.datasets.segmentation.LoveDA): <message>``);
:func:`refine_parser_message` shortens jsonargparse's own messages (unknown keys get a "did you mean" from the
class's parameters). ``MTP_DEBUG=1`` (or ``--debug``) shows the full traceback instead.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import re
import traceback
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["UserFacingError", "build_error_message", "debug_enabled", "innermost_cause", "refine_parser_message"]

_NOISE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Expected a <class 'NoneType'>",
    "Given value type:",
    "Given value:",
    "Not a valid subclass of",
    "Subclass types expect one of",
    "Problem with given class_path",
)


class UserFacingError(Exception):
    """A fault explained in plain words; ``exit_code`` is what ``mtp`` returns."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def debug_enabled() -> bool:
    """``MTP_DEBUG`` set to anything but '', '0', 'false', 'no'."""
    return os.environ.get("MTP_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def _chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or (None if err.__suppress_context__ else err.__context__)


def _from_jsonargparse(err: BaseException) -> bool:
    tb = err.__traceback__
    frames = traceback.extract_tb(tb) if tb is not None else []
    return bool(frames) and "jsonargparse" in frames[-1].filename


def innermost_cause(err: BaseException) -> BaseException:
    """The first exception of the cause chain (outermost first) that jsonargparse did not raise itself: the
    error of the code that built the object (which may itself wrap a lower-level cause)."""
    return next((e for e in _chain(err) if not _from_jsonargparse(e)), err)


def _instantiated_class(err: BaseException) -> tuple[type | None, dict[str, Any]]:
    """(class, kwargs) of the innermost ``class_type(*args, **kwargs)`` jsonargparse was calling when ``err`` rose."""
    found: tuple[type | None, dict[str, Any]] = (None, {})
    for e in _chain(err):
        tb = e.__traceback__
        while tb is not None:
            frame = tb.tb_frame
            class_type = frame.f_locals.get("class_type")  # jsonargparse's / LightningCLI's instantiators
            if isinstance(class_type, type):
                found = (class_type, dict(frame.f_locals.get("kwargs") or {}))
            tb = tb.tb_next
    return found


def _class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _nodes(config: Any, prefix: str = "") -> Iterator[tuple[str, Mapping]]:
    """(dotted key, node) for every ``{class_path, init_args}`` node of a parsed config."""
    if hasattr(config, "as_dict"):  # jsonargparse Namespace
        config = config.as_dict()
    if not isinstance(config, Mapping):
        return
    as_dict = config
    if "class_path" in as_dict:
        yield prefix, as_dict
    for key, value in as_dict.items():
        if key in ("class_path", "__path__") or value is None:
            continue
        child = prefix if key == "init_args" else (f"{prefix}.{key}" if prefix else str(key))
        if isinstance(value, Mapping):
            yield from _nodes(value, child)
        elif isinstance(value, list | tuple):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    yield from _nodes(item, f"{child}[{i}]")


def _config_key(config: Any, cls: type, kwargs: Mapping[str, Any]) -> str:
    path = _class_path(cls)
    matches = [(key, node) for key, node in _nodes(config) if node.get("class_path") in (path, cls.__name__)]
    if len(matches) > 1:

        def agreement(node: Mapping) -> int:
            init = node.get("init_args") or {}
            init = init if isinstance(init, Mapping) else {}
            return sum(1 for k, v in kwargs.items() if isinstance(v, str | int | float) and init.get(k) == v)

        matches.sort(key=lambda kv: -agreement(kv[1]))
    return matches[0][0] if matches else ""


def build_error_message(err: BaseException, config: Any = None) -> str:
    """``<key> (<class>): <innermost message>`` for an exception raised while the config's classes were built."""
    cause = innermost_cause(err)
    cls, kwargs = _instantiated_class(err)
    text = _without_worker_traceback(str(cause).strip()) or type(cause).__name__
    if cause is err and _from_jsonargparse(err):
        text = refine_parser_message(text)
    elif not isinstance(cause, ValueError | OSError | KeyError | TypeError):
        text = f"{type(cause).__name__}: {text}"
    if cls is None:
        return text
    key = _config_key(config, cls, kwargs) if config is not None else ""
    where = f"{key} ({_class_path(cls)})" if key else _class_path(cls)
    return f"{where}: {text}"


def _without_worker_traceback(text: str) -> str:
    """An exception re-raised from a DataLoader worker carries the worker's traceback as text: keep the first
    line ("Caught ValueError in DataLoader worker process 0.") and the error line."""
    if "Original Traceback (most recent call last)" not in text:
        return text
    lines = [line for line in text.splitlines() if line.strip()]
    return f"{lines[0]} {lines[-1].strip()}"


def _suggest(option: str, class_path: str) -> str:
    """' (did you mean 'x'?)' from the __init__ parameters of ``class_path``."""
    module, _, name = class_path.rpartition(".")
    try:
        params = list(inspect.signature(getattr(importlib.import_module(module), name).__init__).parameters)
    except (ImportError, AttributeError, ValueError, TypeError):
        return ""
    close = difflib.get_close_matches(option, [p for p in params if p not in ("self", "args", "kwargs")], n=2)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""


def refine_parser_message(message: str) -> str:
    """Shorten a jsonargparse error: unknown options named with their class and a close match; the Union-type
    noise and the ``Given value`` dumps dropped."""
    unknown = re.search(r"Problem with given class_path '([^']+)':\s*Option '([^']+)' is not accepted", message, re.S)
    if unknown is not None:
        class_path, option = unknown.groups()
        key = re.match(r'Parser key "([^"]+)"', message)
        where = f"{key[1]} ({class_path})" if key else class_path
        return f"{where}: unknown option '{option}'{_suggest(option, class_path)}"
    missing = re.search(r'Parser key "config":\s*File does not exist: (.+)', message)
    if missing is not None:
        return f"config file not found: {missing[1].strip()}"
    rejected = re.search(r"does not accept option '([^']+)'", message)
    if rejected is not None:
        option = rejected[1]
        section, _, name = option.rpartition(".")
        hint = _suggest(name, "lightning.pytorch.trainer.trainer.Trainer") if section == "trainer" else ""
        if section in ("model", "data") and not hint:
            hint = f" (options of the {section} class go under {section}.init_args, or as --{section}.NAME)"
        return f"unknown option '{option}'{hint}"
    lines = [line.strip() for line in message.splitlines()]
    kept = [line.lstrip("- ") for line in lines if line and not line.startswith(_NOISE)]
    return "; ".join(dict.fromkeys(kept)) or message.strip()

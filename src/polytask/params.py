"""Validate keyword parameters from a config against a constructor's signature.

Models, weightings, datasets and optimisers take their hyperparameters from YAML. Each
constructor's signature is the schema: an unknown key or a value of the wrong type stops with a
:class:`~polytask.errors.ConfigError` naming the config key (``model.num_experts``), before any
data is read or any run directory is written.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pydantic

from polytask.errors import ConfigError


def validate_params(
    fn: Callable[..., Any], params: Mapping[str, Any], *, where: str, skip: Iterable[str] = ()
) -> dict[str, Any]:
    """Return ``params`` checked (and coerced) against ``fn``'s keyword parameters."""
    skip = set(skip) | {"self"}
    fields: dict[str, Any] = {}
    accepts_any = False
    try:
        hints = inspect.get_annotations(fn.__init__ if inspect.isclass(fn) else fn, eval_str=True)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to Any
        hints = {}
    sig = inspect.signature(fn)
    for name, p in sig.parameters.items():
        if name in skip:
            continue
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            accepts_any = True
            continue
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            continue
        ann = hints.get(name, Any)
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[name] = (ann, default)
    config = pydantic.ConfigDict(extra="allow" if accepts_any else "forbid", arbitrary_types_allowed=True)
    model = pydantic.create_model(f"{getattr(fn, '__name__', 'params')}Params", __config__=config, **fields)
    try:
        checked = model.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=where, accepted=sorted(fields))) from None
    out = {k: getattr(checked, k) for k in fields if k in params}
    if accepts_any:
        out.update({k: v for k, v in params.items() if k not in fields})
    return out


def format_validation_error(exc: pydantic.ValidationError, *, prefix: str = "", accepted: list[str] | None = None) -> str:
    """One line per problem, each starting with the dotted config key."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
        key = f"{prefix}.{loc}" if prefix and loc else (prefix or loc)
        if err["type"] == "extra_forbidden":
            hint = f" (accepted: {', '.join(accepted)})" if accepted else ""
            lines.append(f"{key}: unknown key{hint}")
        elif err["type"] == "missing":
            lines.append(f"{key}: required key is missing")
        elif err["type"] == "value_error":  # a validator's own message says what is wrong
            lines.append(f"{key}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{key}: {err['msg']} (got {err.get('input')!r})")
    return "invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else "invalid configuration: " + lines[0]

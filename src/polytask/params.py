"""Validate keyword parameters from a config against a constructor's signature.

Models, weightings, datasets and optimisers take their hyperparameters from YAML. Each
constructor's signature is the schema: an unknown key or a value of the wrong type stops with a
:class:`~polytask.errors.ConfigError` naming the config key (``model.num_experts``), before any
data is read or any run directory is written.

Types are strict for numbers and booleans (:func:`strict_scalars`): ``epochs: true`` is not 1,
``amp: 1`` is not true and ``"2"`` is not an integer (a ``--set`` value is parsed as YAML, so
``--set train.epochs=2`` is the integer 2); a float field still takes an integer (``lr: 1``).
"""

from __future__ import annotations

import inspect
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import pydantic

from polytask.errors import ConfigError


def _is_bool(value: Any) -> bool:
    """A Python or numpy boolean (numpy is not imported for this)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool_", "bool"))


def _strict_int(value: Any) -> Any:
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ValueError(f"expected an integer, got {value!r} ({type(value).__name__})")
    return int(value)  # numpy integers too


def _strict_bool(value: Any) -> Any:
    if not _is_bool(value):
        raise ValueError(f"expected true or false, got {value!r} ({type(value).__name__})")
    return bool(value)


def _strict_float(value: Any) -> Any:
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(f"expected a number, got {value!r} ({type(value).__name__})")
    return value  # an int is a valid float (lr: 1)


class StrictCheck(pydantic.BeforeValidator):
    """The check :func:`strict_scalars` puts on a number or boolean (marks a type as strict)."""


#: ``int``, ``bool``, ``float`` as strict types: no bool as a number, no number as a bool, no string
#: as either (numpy scalars are accepted for what they are)
_STRICT = {
    int: Annotated[int, StrictCheck(_strict_int)],
    bool: Annotated[bool, StrictCheck(_strict_bool)],
    float: Annotated[float, StrictCheck(_strict_float)],
}

#: field types for hand-written schemas (the config sections): the same strict scalars
StrictInt = _STRICT[int]
StrictBool = _STRICT[bool]
StrictFloat = _STRICT[float]


def strict_scalars(annotation: Any) -> Any:
    """``annotation`` with every ``int``, ``bool`` and ``float`` in it made strict, through
    ``Annotated``, unions, ``Optional`` and generic containers (``list[int]``, ``dict[str, float]``).
    Constraints (``Annotated[int, Field(ge=1)]``) are kept."""
    if isinstance(annotation, type) and annotation in _STRICT:
        return _STRICT[annotation]
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    args = typing.get_args(annotation)
    if origin is Annotated:
        if any(isinstance(m, StrictCheck) for m in annotation.__metadata__):
            return annotation  # already strict
        return Annotated[(strict_scalars(args[0]), *annotation.__metadata__)]
    if origin is typing.Literal:
        return annotation
    new = tuple(strict_scalars(a) if a is not Ellipsis else a for a in args)
    if new == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new]
    try:
        return origin[new] if len(new) > 1 else origin[new[0]]
    except TypeError:  # a generic that cannot be re-subscripted this way: leave it as written
        return annotation


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
        ann = strict_scalars(hints.get(name, Any))
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

"""The trainer's settings, declared once: in the trainer's signature.

The ``train:`` section of a config is not a second, hand-written list of the trainer's keywords:
:func:`settings_fields` reads the keyword parameters of ``Trainer.__init__`` (type hints,
constraints written as ``Annotated[int, Field(ge=1)]``, defaults) and
:class:`polytask.config.TrainConfig` is built from them. The same schema checks the keywords when a
trainer is built in Python (:func:`checks_settings`), so ``Trainer(epochs=0)`` and
``train: {epochs: 0}`` fail with the same ``train.epochs: ...`` message. Integers, booleans and
floats are strict (:func:`polytask.params.strict_scalars`): ``epochs: true`` is refused, not 1.

Keywords that are objects (the weighting, callbacks) or come from other config sections (the
optimiser and scheduler) are not settings; the trainer lists them in ``NOT_SETTINGS``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Collection, Mapping
from typing import Any

import pydantic

from polytask.errors import ConfigError
from polytask.params import format_validation_error, strict_scalars

#: the config section the settings live in, and the prefix of every error message about them
SECTION = "train"


def settings_fields(init: Callable[..., Any], exclude: Collection[str] = ()) -> dict[str, tuple[Any, Any]]:
    """``{name: (type, default)}`` of the keyword-only parameters of ``init`` not in ``exclude``
    (pydantic field definitions, in signature order). Every one needs a default: a setting without
    one could not be left out of a config."""
    init = inspect.unwrap(init)
    hints = inspect.get_annotations(init, eval_str=True)
    fields: dict[str, tuple[Any, Any]] = {}
    for name, p in inspect.signature(init).parameters.items():
        if p.kind is not inspect.Parameter.KEYWORD_ONLY or name in exclude:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"{init.__qualname__}: setting {name!r} has no default")
        fields[name] = (strict_scalars(hints.get(name, Any)), p.default)
    return fields


@functools.cache
def settings_model(init: Callable[..., Any], exclude: frozenset[str]) -> type[pydantic.BaseModel]:
    """The pydantic model of :func:`settings_fields` (built once per function)."""
    config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name = inspect.unwrap(init).__qualname__.split(".")[0] + "Settings"
    return pydantic.create_model(name, __config__=config, **settings_fields(init, exclude))


def check_settings(init: Callable[..., Any], exclude: Collection[str], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (settings of ``init`` only) checked and coerced; a ConfigError naming
    ``train.<key>`` otherwise."""
    model = settings_model(init, frozenset(exclude))
    try:
        checked = model.model_validate(dict(values))
    except pydantic.ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix=SECTION, accepted=sorted(model.model_fields))) from None
    return {k: getattr(checked, k) for k in values}


def checks_settings(exclude: Collection[str]) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Decorate an ``__init__`` so that the settings among its keyword arguments are checked (and
    normalised, a numpy integer -> int) against its own signature before it runs."""
    exclude = frozenset(exclude)

    def decorate(init: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
            names = settings_model(init, exclude).model_fields
            given = {k: v for k, v in kwargs.items() if k in names}
            if given:
                kwargs.update(check_settings(init, exclude, given))
            init(self, *args, **kwargs)

        return wrapper

    return decorate

"""Command-line options generated from the pydantic settings (defaults declared once)."""

import argparse
import typing
from typing import Any

__all__ = ["add_settings_arguments", "settings_from_args"]


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_settings_arguments(p: argparse.ArgumentParser, model: type, title: str,
                           skip: tuple[str, ...] = ()) -> None:
    """One option per field of a pydantic settings model, its description and default as help."""
    g = p.add_argument_group(title)
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        ann = field.annotation
        args = typing.get_args(ann)
        kw: dict[str, Any] = {"default": None, "dest": f"setting_{name}"}
        help_ = f"{field.description} (default {field.default!r})"
        if ann is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            lits = [a for a in args if typing.get_origin(a) is typing.Literal]
            if typing.get_origin(ann) is typing.Literal:
                kw["choices"] = list(typing.get_args(ann))
            elif lits:
                kw["choices"] = list(typing.get_args(lits[0]))
            base = [a for a in (args or (ann,)) if a is not type(None)]
            kw["type"] = base[0] if base and base[0] in (int, float, str) else str
            kw["metavar"] = kw["type"].__name__.upper() if "choices" not in kw else None
        g.add_argument(_option(name), help=help_.replace("%", "%%"), **kw)


def settings_from_args(model: type, args: argparse.Namespace, **fixed: Any) -> Any:
    """Build the settings from the options given (unset ones keep the model's defaults).

    Raises
    ------
    pipeline.errors.ConfigError
        A value the model rejects, as one line naming the option.
    """
    from pydantic import ValidationError

    from models.settings import format_validation_error
    from pipeline.errors import ConfigError

    values = {k[len("setting_"):]: v for k, v in vars(args).items()
              if k.startswith("setting_") and v is not None}
    values.update(fixed)
    try:
        return model(**values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, prefix="--").replace("_", "-")) from None

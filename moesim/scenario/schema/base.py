"""What every scenario section shares: strict values, integral floats read as integers, and the
name pattern of scenarios and variants.

Unknown keys are rejected; values are strict (YAML has already typed them).
"""

from __future__ import annotations

import types
import typing

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationInfo,
    field_validator,
)


def _accepts(annotation, kind: type) -> bool:
    """Whether a field annotation (possibly ``X | None``) admits values of type ``kind``."""
    if annotation is kind:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(member, kind) for member in typing.get_args(annotation))
    return False


class _Section(BaseModel):
    # Strict: `true` is not an integer and "8" is not a number (YAML already typed the values);
    # inf and nan are never meaningful settings.
    model_config = ConfigDict(
        extra="forbid", validate_default=True, strict=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _integral_floats_are_integers(cls, value, info: ValidationInfo):
        # `steps: 1e4` reads as the float 10000.0; take it as the integer it names.
        if isinstance(value, float) and value.is_integer() and info.field_name is not None:
            annotation = cls.model_fields[info.field_name].annotation
            if _accepts(annotation, int) and not _accepts(annotation, float):
                return int(value)
        return value


#: A name is a folder name: no separators, and no leading dot (".", ".." and hidden folders).
NAME_PATTERN = r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$"

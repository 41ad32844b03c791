"""Shared pydantic configuration: camelCase on the wire, unknown fields rejected (kubectl strict validation)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints
from pydantic.alias_generators import to_camel

# A DNS-1123 label: valid as a Kubernetes object name and safe inside a quoted PromQL label value.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN, min_length=1, max_length=63)]


class ApiModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        frozen=True,
        use_attribute_docstrings=True,
    )

    def to_wire(self) -> dict:
        """The object as it is written to the API server: camelCase, defaults included, None left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

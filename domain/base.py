"""The shared base for every JSON model: camelCase on the wire, snake_case in Python."""

from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """A model whose JSON uses the reference API's camelCase names.

    Unknown fields are refused so that a typo in a report is an error, not silently lost data.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        str_strip_whitespace=True,
    )

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON form a client sees: camelCase keys, no unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Contract(BaseModel):
    """A message between the workflow and its callers or activities: snake_case, no unknown
    fields, immutable (workflow state must not change behind the flow's back)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

"""Reading a JSON body ourselves, for routes whose body is validated by the domain's parsers."""

import json
from typing import Any

from fastapi import Request

from api.errors import ApiError


async def read_json(request: Request, *, required: bool = True) -> Any:
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "the request needs a JSON body")
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        # json's message gives line and column only, never the input itself.
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {err}") from None


def json_body_doc(schema_ref: str, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body that the route reads with read_json."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": schema_ref}}},
        }
    }

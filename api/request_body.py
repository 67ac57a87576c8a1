"""Reading a JSON body ourselves, for routes whose body is validated by the domain's parsers, and
checking the ids in a request's path before any store sees them."""

from typing import Any

from fastapi import Request

from api.errors import ApiError, FieldProblem
from domain.checkout import MAX_CHECKOUT_ID_LENGTH, text_problem
from domain.report import NotJsonError, load_json


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The body's JSON document, read as the CLI reads a file (domain.report.load_json): UTF-8,
    standard JSON only; a 400 saying why otherwise, never echoing the input."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise ApiError(400, "invalid_json", "the request needs a JSON body")
        return {}
    try:
        return load_json(raw)
    except NotJsonError as err:
        raise ApiError(400, "invalid_json", f"the body is {err}") from None


async def checked_path_ids(request: Request) -> None:
    """Refuses a path id that no stored id could equal (longer than the id column, or holding a
    control character, which PostgreSQL would refuse with an error): a 400 naming the parameter,
    as FastAPI names one, instead of a lookup that cannot succeed.

    A router-level dependency (`APIRouter(dependencies=[Depends(checked_path_ids)])`): it reads
    whatever path parameters the matched route has, so one line covers every route of a router.
    Async although it does no I/O: FastAPI runs a plain-function dependency in its thread pool,
    a thread hop per request.
    """
    details = [
        FieldProblem(field=f"path.{name}", message=problem)
        for name, value in request.path_params.items()
        if isinstance(value, str)
        and (problem := text_problem(value, MAX_CHECKOUT_ID_LENGTH)) is not None
    ]
    if details:
        raise ApiError(400, "invalid_request", "the request is not valid", details)


def json_body_doc(schema_ref: str, *, required: bool = True) -> dict[str, Any]:
    """`openapi_extra` describing a JSON body that the route reads with read_json."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": schema_ref}}},
        }
    }

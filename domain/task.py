"""Tasks for shop staff, created by `task` steps of a recovery policy."""

from enum import StrEnum

from pydantic import AwareDatetime

from domain.base import CamelModel


class TaskStatus(StrEnum):
    OPEN = "OPEN"
    DONE = "DONE"


class StaffTask(CamelModel):
    id: int | None = None
    checkout_id: str
    title: str
    assignee: str
    due_date: AwareDatetime
    link: str
    status: TaskStatus = TaskStatus.OPEN
    created_date: AwareDatetime

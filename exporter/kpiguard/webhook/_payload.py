"""The Alertmanager webhook payload, version 4, as pydantic models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    # Alertmanager may add fields in later 4.x releases; unknown ones are ignored, known ones checked.
    model_config = ConfigDict(extra="ignore")


class Alert(_Model):
    """One alert of a notification."""

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    endsAt: datetime | None = None  # noqa: N815
    generatorURL: str = Field("", max_length=2048)  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)


class Notification(_Model):
    """One webhook notification: a group of alerts."""

    version: Literal["4"]
    groupKey: str = ""  # noqa: N815
    truncatedAlerts: int = Field(0, ge=0)  # noqa: N815
    status: Literal["firing", "resolved"]
    receiver: str = ""
    groupLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, str] = Field(default_factory=dict)  # noqa: N815
    externalURL: str = ""  # noqa: N815
    alerts: list[Alert] = Field(max_length=10_000)

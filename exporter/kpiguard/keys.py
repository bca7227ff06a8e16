"""Typed keys for the state an app shares between its handlers and background tasks."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from kpiguard.ingest import EventWriter
from kpiguard.metrics import Metrics
from kpiguard.monitor.service import MonitorService
from kpiguard.settings import Settings
from kpiguard.tripwire._runner import Evaluator
from kpiguard.webhook import Receiver

SETTINGS = web.AppKey("settings", Settings)
METRICS = web.AppKey("metrics", Metrics)
ENGINE = web.AppKey("engine", AsyncEngine)
SESSIONS = web.AppKey("sessions", async_sessionmaker[AsyncSession])
WRITER = web.AppKey("writer", EventWriter)
EVALUATOR = web.AppKey("evaluator", Evaluator)
RECEIVER = web.AppKey("receiver", Receiver)
MONITOR = web.AppKey("monitor", MonitorService)

"""The Alertmanager webhook receiver."""

from kpiguard.webhook._payload import Alert, Notification
from kpiguard.webhook._receiver import Receiver, Report

__all__ = ["Alert", "Notification", "Receiver", "Report"]

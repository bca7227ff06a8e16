"""KPI event ingest: the event schema and the durable writer."""

from kpiguard.ingest._schema import KpiEventFields, KpiEventIn
from kpiguard.ingest._writer import BatchResult, EventWriter, StoredEvent

__all__ = ["BatchResult", "EventWriter", "KpiEventFields", "KpiEventIn", "StoredEvent"]

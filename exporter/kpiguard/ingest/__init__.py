"""KPI event ingest: the event schema and the durable writer."""

from kpiguard.ingest._schema import (
    ROW_FIELDS,
    EventRow,
    KpiEventFields,
    KpiEventIn,
    row_from_json,
    row_of,
    rows_from_json_array,
    rows_of,
)
from kpiguard.ingest._writer import BatchResult, EventWriter, StoredEvent

__all__ = [
    "ROW_FIELDS",
    "BatchResult",
    "EventRow",
    "EventWriter",
    "KpiEventFields",
    "KpiEventIn",
    "StoredEvent",
    "row_from_json",
    "row_of",
    "rows_from_json_array",
    "rows_of",
]

"""A report as CSV: one row per queue, operator, bucket or channel; nested figures as dotted columns."""
import csv
import io

# Which list of a report its CSV rows are; the overview's rows are its totals, then each channel.
ROWS = {"queues": "queues", "operators": "operators", "timeline": "buckets"}


def flatten(row: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists are left out (they are rows of their own)."""
    out = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        elif not isinstance(value, list):
            out[name] = value
    return out


def rows(kind: str, report: dict) -> list[dict]:
    if kind == "overview":
        totals = {k: v for k, v in report.items() if k not in ("period", "channels")}
        return [flatten({"row": "total", **totals})] + [flatten({"row": "channel", **c}) for c in report["channels"]]
    return [flatten(row) for row in report[ROWS[kind]]]


def to_csv(table: list[dict]) -> str:
    """Columns in order of first appearance across rows; a missing or null value is an empty cell."""
    columns = list(dict.fromkeys(name for row in table for name in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in table)
    return out.getvalue()

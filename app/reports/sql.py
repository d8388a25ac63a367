"""Two time expressions SQLite and PostgreSQL spell differently, compiled for each."""
from sqlalchemy import BigInteger, Float
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

SLOT_SECONDS = 900  # every UTC offset in use is a whole number of quarter hours


class slot(FunctionElement):
    """The UTC quarter hour an instant falls in (seconds since 1970 // 900): any local hour or
    day is a whole number of them, so counts grouped by slot sum exactly into local buckets."""
    type = BigInteger()
    inherit_cache = True


@compiles(slot)
def _slot_pg(element, compiler, **kw):
    return f"CAST(floor(extract(epoch from {compiler.process(element.clauses, **kw)}) / {SLOT_SECONDS}) AS BIGINT)"


@compiles(slot, "sqlite")
def _slot_sqlite(element, compiler, **kw):
    return f"(CAST(strftime('%s', {compiler.process(element.clauses, **kw)}) AS INTEGER) / {SLOT_SECONDS})"


class seconds_between(FunctionElement):
    """seconds_between(later, earlier): the elapsed seconds, fractional."""
    type = Float()
    inherit_cache = True


@compiles(seconds_between)
def _between_pg(element, compiler, **kw):
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(extract(epoch from ({later} - {earlier})) AS DOUBLE PRECISION)"


@compiles(seconds_between, "sqlite")
def _between_sqlite(element, compiler, **kw):
    later, earlier = (compiler.process(c, **kw) for c in element.clauses)
    return f"((julianday({later}) - julianday({earlier})) * 86400.0)"

"""Query filters: absent or empty means no filter; a given value keeps its constraints."""
import pytest
from pydantic import BaseModel, ValidationError

from app.api.contract import Filter


class Query(BaseModel):
    process: Filter(str, max_length=3) = None
    queue_id: Filter(int, ge=1) = None
    start: Filter(str, max_length=10, alias="from", description="a day") = None


def test_an_empty_filter_is_no_filter_even_with_constraints():
    # An empty `?process=` once reached max_length as None: a 500 schemathesis found.
    assert Query(process="", queue_id="").model_dump() == {"process": None, "queue_id": None, "start": None}


@pytest.mark.parametrize("given", [{"process": "abcd"}, {"queue_id": 0}])
def test_a_given_filter_keeps_its_constraints(given):
    with pytest.raises(ValidationError):
        Query(**given)


def test_a_filter_keeps_its_alias():
    assert Query.model_validate({"from": "2026-03-10"}).start == "2026-03-10"

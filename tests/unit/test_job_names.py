"""Every job name that code enqueues names a job function of app.jobs."""
from importlib import import_module

import pytest

from app import job_names

NAMES = {k: v for k, v in vars(job_names).items() if k.isupper()}


@pytest.mark.parametrize("constant", sorted(NAMES))
def test_job_name_resolves_to_a_job_function(constant):
    module, _, function = NAMES[constant].rpartition(".")
    assert module == "app.jobs"
    assert callable(getattr(import_module(module), function, None)), NAMES[constant]

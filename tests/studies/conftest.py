"""One smoke-profile study per test session, shared by every study test (it is the expensive part)."""

import os

import pytest

from automot.io import read_jsonl
from studies.config import load_study_config
from studies.runner import run_study


@pytest.fixture(scope="session")
def smoke(tmp_path_factory):
    """(StudyResult, runs) of a smoke study run under umask 022 (its outputs must be group/other-readable)."""
    study = tmp_path_factory.mktemp("smoke_study")
    old = os.umask(0o022)
    try:
        result = run_study(study, load_study_config("smoke"), workers=2, progress=None)
    finally:
        os.umask(old)
    return result, read_jsonl(study / "runs.jsonl")

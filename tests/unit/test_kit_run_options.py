"""run_workflow's options grouped in one `RunOptions`; the old keyword arguments keep working."""

from __future__ import annotations

import dataclasses
import inspect

import httpx
import pytest

from workflow_kit import MemoryClient, RunOptions, Workflow, run_workflow
from workflow_kit.metrics import Metrics


@pytest.fixture
async def client(app):
    async with MemoryClient("http://memory-spine", transport=httpx.ASGITransport(app=app)) as c:
        yield c


def test_every_option_is_a_keyword_of_run_workflow_with_the_same_default() -> None:
    params = inspect.signature(run_workflow).parameters
    for f in dataclasses.fields(RunOptions):
        assert params[f.name].kind is inspect.Parameter.KEYWORD_ONLY, f.name
        assert params[f.name].default == f.default, f.name


def test_keywords_lay_over_the_options_and_a_disagreement_is_refused() -> None:
    base = RunOptions(lease_seconds=30, holder="w1")
    assert base.merged(lease_seconds=10.0, holder=None) is base  # at their defaults: nothing given
    assert base.merged(timeout=5.0) == dataclasses.replace(base, timeout=5.0)
    assert base.merged(holder="w1") == base  # the same value twice is no conflict
    with pytest.raises(TypeError, match="holder"):
        base.merged(holder="w2")
    m = Metrics()
    assert RunOptions(metrics=m).merged(metrics=m).metrics is m


async def test_options_run_a_workflow_like_the_keywords(client) -> None:
    def one() -> str:
        return "done"

    by_keywords = await run_workflow(client, "opts-a", [one], name="named", holder="me", lease_seconds=5)
    by_options = await run_workflow(
        client, "opts-b", [one], options=RunOptions(name="named", holder="me", lease_seconds=5)
    )
    assert (by_keywords.result, by_keywords.holder) == (by_options.result, by_options.holder) == ("done", "me")
    with pytest.raises(TypeError, match="holder"):
        await run_workflow(client, "opts-c", [one], holder="me", options=RunOptions(holder="you"))
    wf = Workflow("flow", [one])
    assert (await wf.run(client, "opts-d", options=RunOptions(holder="me"))).holder == "me"

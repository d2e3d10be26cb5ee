"""Model calls with a timeout and bounded retries; a pool that frees what the next group of work
does not need, within a memory budget; empty captions as outputs."""

import dataclasses
import logging
import os
import threading
import time
import weakref

from PIL import Image

from tracer_pipeline.config import parse_experiment
from tracer_pipeline.models import registry
from tracer_pipeline.models.base import CallPolicy, ModelFailure, batch_then_items, check_caption, each_item
from tracer_pipeline.models.pool import ModelPool, resolve_load_options
from tracer_pipeline.status import RunStatus
from tracer_pipeline.store import TraceStore
from tracer_pipeline.tracing.invocations import run_invocations


def test_a_failing_item_is_retried_a_bounded_number_of_times_then_recorded(caplog):
    calls = []

    def flaky(items):
        calls.append(list(items))
        if items == ["b"] and calls.count(["b"]) == 1:
            raise RuntimeError("CUDA out of memory (for a moment)")
        if items == ["c"]:
            raise RuntimeError("always broken")
        if len(items) > 1:
            raise RuntimeError("batch failed")
        return [x.upper() for x in items]

    with caplog.at_level(logging.WARNING):
        results = batch_then_items(flaky, ["a", "b", "c"], policy=CallPolicy(timeout_s=None, retries=2))
    assert results[:2] == ["A", "B"]
    assert results[2] == ModelFailure("RuntimeError", "always broken")
    assert calls.count(["c"]) == 3  # once, then two retries
    assert sum("trying again" in r.message for r in caplog.records) == 2 + 1  # c twice, b once


def test_a_call_that_does_not_answer_in_time_is_a_failure_not_a_hang():
    started = time.perf_counter()
    results = batch_then_items(lambda items: time.sleep(30) or items, ["a", "b"],
                               policy=CallPolicy(timeout_s=0.5, retries=2))
    assert time.perf_counter() - started < 20
    assert [r.error_type for r in results] == ["ModelTimeoutError", "ModelTimeoutError"]


def test_calls_share_one_thread_and_a_call_after_a_timeout_gets_a_new_one():
    def where(items):
        return [threading.current_thread() for _ in items]

    policy = CallPolicy(timeout_s=60, retries=0)
    first, second = (batch_then_items(where, ["a", "b"], policy=policy)[0] for _ in range(2))
    assert first is second and first is not threading.current_thread()
    stuck = threading.Event()
    [failure] = batch_then_items(lambda items: stuck.wait(60) and items, ["a"],
                                 policy=CallPolicy(timeout_s=0.2, retries=0))
    assert failure.error_type == "ModelTimeoutError"
    [after] = batch_then_items(where, ["a"], policy=policy)  # not queued behind the stuck call
    assert after is not first and after.is_alive() and first.is_alive()
    stuck.set()
    seen = []
    worker = threading.Thread(target=lambda: seen.extend(batch_then_items(where, ["a"], policy=policy)))
    worker.start()
    worker.join()
    assert seen[0] not in (first, after)  # each calling thread has its own


def test_the_pool_frees_what_the_next_network_does_not_need_within_its_budget(tmp_path):
    config = {"name": "pool", "networks": [["TinySD", "TinyBLIP"], ["TinySDXL", "TinyBLIP"]], "seeds": [1],
              "prompts": ["a red balloon"], "embedding_models": ["TinyCLIP"], "max_length": 2}
    options = resolve_load_options("cpu", "auto", os.environ["TRACER_MODEL_DIR"])
    for budget, frees in ((0, [("free", "TinySD")]), (None, [])):
        store = TraceStore(f"sqlite:///{tmp_path / f'pool-{budget}.sqlite'}")
        pool = ModelPool(options, memory_budget_bytes=budget)
        run_invocations(store, pool, store.register_experiment(parse_experiment(config, "pool.json")))
        assert [e for e in pool.events if e[0] == "load"] == [("load", "TinySD"), ("load", "TinyBLIP"),
                                                               ("load", "TinySDXL")]  # each loaded once
        assert [e for e in pool.events if e[0] == "free"] == frees
        assert "TinySD" not in pool.loaded if budget == 0 else set(pool.loaded) == {"TinySD", "TinyBLIP", "TinySDXL"}


def test_a_wrong_modality_or_a_raising_item_fails_that_item_only():
    def one(text: str, seed: int) -> str:
        if text == "boom":
            raise ValueError("no")
        return f"{text}/{seed}"

    image = Image.new("RGB", (2, 2))
    results = each_item("M", "text", ["a", image, "boom", "b"], [1, 2, 3, 4], one)
    assert results[0] == "a/1" and results[3] == "b/4"
    assert results[1] == ModelFailure("WrongInput", "M expects text, got an image")
    assert results[2] == ModelFailure("ValueError", "no")


def test_a_released_model_is_collected_though_the_pool_freezes_what_it_loads():
    pool = ModelPool(resolve_load_options("cpu", "auto", "unused"))
    model = pool.get("DummyT2I")
    model.myself = model  # a reference cycle: only the collector frees it, and frozen objects it skips
    alive = weakref.ref(model)
    del model
    pool.release("DummyT2I")
    assert alive() is None


def test_an_empty_caption_is_an_output_the_run_continues_from(tmp_path, monkeypatch):
    class Silent:  # a captioner with nothing to say
        def generate(self, inputs, seeds):
            return [check_caption("  ") for _ in inputs]

    spec = registry.get_model("DummyI2T")
    monkeypatch.setitem(registry._BY_NAME, "DummyI2T", dataclasses.replace(spec, loader=lambda s, o: Silent()))
    store = TraceStore(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    config = {"name": "empty", "networks": [["DummyT2I", "DummyI2T"]], "seeds": [1], "prompts": ["a red balloon"],
              "embedding_models": ["DummyEmbed"], "max_length": 6, "stop_when_stuck": False}
    [run_id] = store.register_experiment(parse_experiment(config, "empty.json"))
    outcome = run_invocations(store, ModelPool(resolve_load_options("cpu", "auto", tmp_path)), [run_id])[run_id]
    assert outcome.status == RunStatus.COMPLETE
    invocations = store.invocations(run_id)
    assert len(invocations) == 6 and [i.empty_caption for i in invocations] == [False, True] * 3
    assert all(i.error is None for i in invocations)

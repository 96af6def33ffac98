"""The micro-batching engine and the embedder on top of it: coalescing, isolation, safety across threads and loops."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from laser_integrations.batching import MicroBatcher
from laser_integrations.embedder import EncodeOptions, LocalEncoder, model_lock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Recorder:
    """A ``run_batch`` that records its calls and fails loudly if two ever overlap."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[object, list[str]]] = []
        self.delay = delay
        self._inside = 0
        self.overlapped = False

    def __call__(self, key: object, items: list[str]) -> list[str]:
        self._inside += 1
        self.overlapped |= self._inside > 1
        try:
            if any(item == "bad" for item in items):
                raise ValueError("bad item")
            time.sleep(self.delay)
            self.calls.append((key, list(items)))
            return [f"{key}:{item}" for item in items]
        finally:
            self._inside -= 1


@pytest.fixture
def recorder() -> Recorder:
    return Recorder(delay=0.001)


@pytest.fixture
def batcher(recorder: Recorder):
    engine = MicroBatcher(recorder, max_batch_size=16, max_wait=0.005)
    yield engine
    engine.close()


async def test_concurrent_requests_share_calls_and_each_caller_gets_its_own_results(batcher, recorder):
    results = await asyncio.gather(*(batcher.arun("q", [f"t{i}", f"u{i}"]) for i in range(40)))

    assert results == [[f"q:t{i}", f"q:u{i}"] for i in range(40)]
    assert len(recorder.calls) < 40
    assert max(len(items) for _, items in recorder.calls) <= 16
    assert batcher.batches_run == len(recorder.calls)


async def test_requests_with_different_keys_never_share_a_call(batcher, recorder):
    keys = [("query", 3), ("query", 6), ("document", 3)]
    results = await asyncio.gather(*(batcher.arun(keys[i % 3], [str(i)]) for i in range(30)))

    assert results == [[f"{keys[i % 3]}:{i}"] for i in range(30)]
    for key, items in recorder.calls:
        assert all(int(item) % 3 == keys.index(key) for item in items)


async def test_a_failing_request_fails_only_its_own_caller(batcher):
    calls = [batcher.arun("q", ["bad" if i == 5 else str(i)]) for i in range(12)]
    results = await asyncio.gather(*calls, return_exceptions=True)

    assert isinstance(results[5], ValueError)
    assert [r for i, r in enumerate(results) if i != 5] == [[f"q:{i}"] for i in range(12) if i != 5]


async def test_empty_request_resolves_without_running(batcher, recorder):
    assert await batcher.arun("q", []) == []
    assert batcher.run("q", []) == []
    assert recorder.calls == []


def test_works_from_successive_event_loops(batcher):
    for loop_number in range(3):
        results = asyncio.run(_gather(batcher, 5))
        assert results == [[f"q:{i}"] for i in range(5)], loop_number


async def _gather(batcher: MicroBatcher, n: int) -> list:
    return await asyncio.gather(*(batcher.arun("q", [str(i)]) for i in range(n)))


def test_sync_callers_in_threads_and_async_callers_never_overlap(batcher, recorder):
    errors: list[BaseException] = []

    def sync_caller(thread: int) -> None:
        try:
            for i in range(10):
                assert batcher.run("s", [f"{thread}-{i}"]) == [f"s:{thread}-{i}"]
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=sync_caller, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    asyncio.run(_gather(batcher, 30))
    for thread in threads:
        thread.join()

    assert errors == []
    assert not recorder.overlapped


def test_worker_thread_stops_when_idle_and_restarts_on_demand(recorder):
    engine = MicroBatcher(recorder, idle_timeout=0.05)
    assert asyncio.run(_gather(engine, 3)) == [["q:0"], ["q:1"], ["q:2"]]
    deadline = time.monotonic() + 5
    while engine.worker_alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not engine.worker_alive

    assert asyncio.run(_gather(engine, 2)) == [["q:0"], ["q:1"]]
    engine.close()
    assert not engine.worker_alive


def test_close_finishes_queued_work_and_leaves_no_thread(recorder):
    before = threading.active_count()
    engine = MicroBatcher(recorder, max_wait=0.05)
    futures = [engine.submit("q", [str(i)]) for i in range(5)]
    engine.close()

    assert [future.result(timeout=5) for future in futures] == [[f"q:{i}"] for i in range(5)]
    assert threading.active_count() == before


async def test_a_cancelled_caller_does_not_disturb_the_others(recorder):
    engine = MicroBatcher(recorder, max_wait=0.2)
    doomed = asyncio.ensure_future(engine.arun("q", ["gone"]))
    kept = asyncio.ensure_future(engine.arun("q", ["kept"]))
    await asyncio.sleep(0)
    doomed.cancel()

    assert await kept == ["q:kept"]
    assert doomed.cancelled()
    assert all("gone" not in items for _, items in recorder.calls)
    engine.close()


def test_rejects_bad_settings(recorder):
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(recorder, max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(recorder, max_wait=-1)


async def test_each_request_gets_its_own_size_and_wait_and_the_engines_settings_stay(recorder):
    """Callers with other limits share one engine: a 0 ms caller never waits behind another's 500 ms window."""
    calls: list[tuple[str, list[str], float]] = []

    def timed(key: str, items: list[str]) -> list[str]:
        calls.append((key, list(items), time.monotonic()))
        return recorder(key, items)

    engine = MicroBatcher(timed, max_batch_size=16, max_wait=0.005)
    start = time.monotonic()
    patient = [engine.arun("b", [f"b{i}"], max_batch_size=64, max_wait=0.5) for i in range(8)]
    hasty = [engine.arun("a", [f"a{i}"], max_batch_size=1, max_wait=0) for i in range(4)]
    results = await asyncio.gather(*patient, *hasty)
    engine.close()

    assert results == [[f"b:b{i}"] for i in range(8)] + [[f"a:a{i}"] for i in range(4)]
    assert [items for key, items, _ in calls if key == "a"] == [[f"a{i}"] for i in range(4)]
    assert [items for key, items, _ in calls if key == "b"] == [[f"b{i}" for i in range(8)]]
    (patient_ran,) = [when for key, _, when in calls if key == "b"]
    assert patient_ran - start >= 0.45
    assert max(when for key, _, when in calls if key == "a") < patient_ran
    assert (engine.max_batch_size, engine.max_wait) == (16, 0.005)


def test_a_requests_limits_are_checked_when_it_is_submitted(batcher):
    with pytest.raises(ValueError, match="max_batch_size"):
        batcher.submit("q", ["x"], max_batch_size=0)
    with pytest.raises(ValueError, match="max_wait"):
        batcher.submit("q", ["x"], max_wait=-1)
    with pytest.raises(AttributeError):
        batcher.max_wait = 1.0  # the engine's own settings are fixed at construction


# -- the embedder on a real (tiny) LaSER model -------------------------------------------------------------


class ForwardCounter:
    """Counts forward passes of the LaSER module (what "shared forward passes" means)."""

    def __init__(self, model) -> None:
        self.count = 0
        self._handle = model[0].register_forward_hook(self._hook)

    def _hook(self, *args: object) -> None:
        self.count += 1

    def remove(self) -> None:
        self._handle.remove()


@pytest.fixture
def embedder(tiny_model):
    engine = LocalEncoder(tiny_model)
    yield engine
    engine.close()


def _cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    x, y = np.asarray(a), np.asarray(b)
    return (x * y).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(y, axis=1)


QUERIES = [f"question {i}: why does {'the ' * (i % 7)}sky look blue at noon?" for i in range(64)]


async def test_64_concurrent_queries_match_sequential_ones_in_fewer_passes(embedder, tiny_model):
    options = EncodeOptions(batch_size=32)
    sequential = [await embedder.aembed_query(query, options) for query in QUERIES]
    counter = ForwardCounter(tiny_model)
    try:
        concurrent = await asyncio.gather(*(embedder.aembed_query(query, options) for query in QUERIES))
    finally:
        counter.remove()

    assert _cosines(concurrent, sequential).min() >= 0.99999
    assert counter.count < 64
    assert all(isinstance(value, float) for value in concurrent[0])


async def test_concurrent_queries_with_other_k_or_instruction_are_not_mixed(embedder):
    settings = [
        EncodeOptions(num_thinking_steps=1),
        EncodeOptions(num_thinking_steps=4),
        EncodeOptions(instruction=""),
    ]
    expected = [embedder.embed_query(QUERIES[0], options) for options in settings]
    results = await asyncio.gather(*(embedder.aembed_query(QUERIES[0], settings[i % 3]) for i in range(12)))

    for i, vector in enumerate(results):
        assert _cosines([vector], [expected[i % 3]])[0] >= 0.99999
    assert _cosines([expected[0]], [expected[1]])[0] < 0.9999  # the settings really change the vector


def test_8_threads_of_sync_calls_give_identical_results(embedder):
    options = EncodeOptions()
    texts = QUERIES[:20]
    expected = [embedder.embed_query(text, options) for text in texts]
    results: dict[int, list[list[float]]] = {}

    def worker(thread: int) -> None:
        results[thread] = [embedder.embed_query(text, options) for text in texts]

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == list(range(8))
    assert all(results[thread] == expected for thread in range(8))


async def test_async_embedding_never_blocks_the_event_loop(embedder, monkeypatch):
    """A forward pass made slow on purpose (0.4 s) must not stall the loop: a ticker keeps running meanwhile.

    Run on the loop's thread, the pass would leave one gap of >= 0.4 s between ticks.
    """
    module = embedder.module
    real_forward = module.forward

    def slow_forward(*args, **kwargs):
        time.sleep(0.4)
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(module, "forward", slow_forward)
    tick_times: list[float] = []

    async def ticker() -> None:
        while True:
            tick_times.append(time.perf_counter())
            await asyncio.sleep(0.01)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    start = time.perf_counter()
    await embedder.aembed_documents(QUERIES, EncodeOptions())
    elapsed = time.perf_counter() - start
    task.cancel()

    during = [t for t in tick_times if start <= t <= start + elapsed]
    gaps = [later - earlier for earlier, later in zip(during, during[1:], strict=False)]
    assert elapsed >= 0.4 and len(during) >= 5
    assert max(gaps) < 0.3, f"the event loop stalled for {max(gaps):.2f} s during a {elapsed:.2f} s pass"


async def test_concurrent_callers_with_other_batch_options_each_get_their_own(embedder, monkeypatch):
    """One caller asks for passes of 1 and no wait, another for passes of 64 after 500 ms: neither changes the
    other's, nor the embedder's batcher settings."""
    model = embedder.model
    passes: list[tuple[list[str], float]] = []
    real_encode_query = model.encode_query

    def recording_encode_query(texts, **kwargs):
        passes.append((list(texts), time.monotonic()))
        return real_encode_query(texts, **kwargs)

    monkeypatch.setattr(model, "encode_query", recording_encode_query)
    settings = (embedder.batcher.max_batch_size, embedder.batcher.max_wait)
    patient, hasty = EncodeOptions(batch_size=64, max_wait_ms=500), EncodeOptions(batch_size=1, max_wait_ms=0)
    start = time.monotonic()
    calls = [embedder.aembed_query(f"patient {i}", patient) for i in range(8)]
    calls += [embedder.aembed_query(f"hasty {i}", hasty) for i in range(4)]
    await asyncio.gather(*calls)

    patient_passes = [(texts, when) for texts, when in passes if texts[0].startswith("patient")]
    hasty_passes = [(texts, when) for texts, when in passes if texts[0].startswith("hasty")]
    assert [texts for texts, _ in patient_passes] == [[f"patient {i}" for i in range(8)]]
    assert [texts for texts, _ in hasty_passes] == [[f"hasty {i}"] for i in range(4)]
    assert patient_passes[0][1] - start >= 0.45
    assert max(when for _, when in hasty_passes) < patient_passes[0][1]
    assert (embedder.batcher.max_batch_size, embedder.batcher.max_wait) == settings


async def test_bad_options_fail_only_their_caller(embedder):
    good = embedder.aembed_query("fine", EncodeOptions())
    with pytest.raises(ValueError, match="num_thinking_steps"):
        await embedder.aembed_query("fine", EncodeOptions(num_thinking_steps=0))
    with pytest.raises(ValueError, match="batch_size"):
        await embedder.aembed_documents(["fine"], EncodeOptions(batch_size=0))
    assert len(await good) == embedder.dimension


def test_embedders_on_one_model_share_its_lock(tiny_model):
    first, second = LocalEncoder(tiny_model), LocalEncoder(tiny_model)

    assert first.batcher.lock is second.batcher.lock is model_lock(tiny_model)

"""The submit slots' journal rows (``batch.submit.GroupJournal``): slots ready at the same moment share one row, no
slot goes on before its row is written, a refused row reaches every slot in it, and a row never grows past
``JOURNAL_GROUP`` entries."""

from __future__ import annotations

import asyncio
import json
import time

from airflow_provider_sam3.batch.state import BatchState, journal_key
from airflow_provider_sam3.batch.submit import JOURNAL_GROUP, GroupJournal
from airflow_provider_sam3.exceptions import StateStoreRefusedError
from airflow_provider_sam3.models.batch import BatchEntry
from airflow_provider_sam3.storage.state_store import guarded


class Store:
    """A task state store that keeps its writes in order, blocking ``latency`` seconds each (as a round trip to
    Airflow's API server blocks the task's event loop), or refusing them once ``refuse`` is set."""

    def __init__(self, latency: float = 0.0) -> None:
        self.values: dict[str, object] = {}
        self.writes: list[str] = []
        self.latency = latency
        self.refuse = False

    def get(self, key, default=None):
        return self.values.get(key, default)

    def set(self, key, value):
        if self.refuse:
            raise RuntimeError("the task instance is no longer running")
        time.sleep(self.latency)
        self.values[key] = json.loads(json.dumps(value))
        self.writes.append(key)

    def delete(self, key):
        self.values.pop(key, None)


def batch_of(count: int) -> BatchState:
    state = BatchState(endpoint_id="fal-ai/sam-3/image", started_at=1.0, deadline=1e12)
    for index in range(count):
        state.add(BatchEntry(index=index, source=f"/in/{index}.png", state="sending"))
    return state


def journalled(store: Store) -> list[list[str]]:
    return [[item["k"] for item in store.values[key]["e"]] for key in store.writes if key.startswith("fal_batch.j.")]


def test_slots_ready_together_share_one_row_and_each_entry_is_durable_before_its_slot_goes_on():
    state, store = batch_of(6), Store()
    journal = GroupJournal(state, guarded(store))
    order: list[str] = []

    async def slot(keys: list[str]) -> None:
        assert await journal.commit(keys) is None
        order.append(f"after {keys[0]}: {len(store.writes)} rows")

    async def three_slots() -> None:
        await asyncio.gather(slot(["0", "1"]), slot(["2", "3"]), slot(["4"]))

    asyncio.run(three_slots())
    assert journalled(store) == [["0", "1", "2", "3", "4"]]
    assert order == ["after 0: 1 rows", "after 2: 1 rows", "after 4: 1 rows"]
    assert [state.entries[str(i)].version for i in range(6)] == [1, 1, 1, 1, 1, 0]


def test_a_slow_store_groups_the_slots_that_answer_while_it_writes():
    state, store = batch_of(8), Store(latency=0.05)
    journal = GroupJournal(state, guarded(store))

    async def slot(key: str, answered: asyncio.Event) -> None:
        await answered.wait()
        assert await journal.commit([key]) is None

    async def run() -> None:
        answers = [asyncio.Event() for _ in range(8)]
        slots = [asyncio.create_task(slot(str(i), answers[i])) for i in range(8)]
        answers[0].set()
        await asyncio.sleep(0.01)  # slot 0's row is being written (it blocks the loop for 50 ms)
        for answer in answers[1:]:
            answer.set()  # the other seven answer meanwhile
        await asyncio.gather(*slots)

    asyncio.run(run())
    rows = journalled(store)
    assert rows == [["0"], ["1", "2", "3", "4", "5", "6", "7"]]


def test_a_refused_row_reaches_every_slot_in_it():
    state, store = batch_of(3), Store()
    store.refuse = True
    journal = GroupJournal(state, guarded(store))

    async def run() -> list:
        return await asyncio.gather(*(journal.commit([str(i)]) for i in range(3)))

    outcomes = asyncio.run(run())
    assert all(isinstance(outcome, StateStoreRefusedError) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 1 and store.writes == []


def test_a_row_holds_at_most_journal_group_entries():
    count = JOURNAL_GROUP * 2 + 5
    state, store = batch_of(count), Store()
    journal = GroupJournal(state, guarded(store))

    async def run() -> None:
        await asyncio.gather(*(journal.commit([str(i)]) for i in range(count)))

    asyncio.run(run())
    rows = journalled(store)
    assert [len(row) for row in rows] == [JOURNAL_GROUP, JOURNAL_GROUP, 5]
    assert store.writes[0] == journal_key(0)


def test_a_refused_row_reaches_only_the_slots_with_an_entry_in_it_and_nothing_is_written_after_it():
    count = JOURNAL_GROUP + 4
    state, store = batch_of(count + 1), Store()
    journal = GroupJournal(state, guarded(store))
    real_set = store.set

    def refuse_the_second_row(key, value):
        store.refuse = len(store.writes) >= 1
        real_set(key, value)

    store.set = refuse_the_second_row

    async def run() -> list:
        asks = [[str(i)] for i in range(JOURNAL_GROUP - 1)] + [[str(JOURNAL_GROUP - 1), str(JOURNAL_GROUP)]]
        asks += [[str(i)] for i in range(JOURNAL_GROUP + 1, count + 1)]
        return await asyncio.gather(*(journal.commit(keys) for keys in asks))

    outcomes = asyncio.run(run())
    assert [len(row) for row in journalled(store)] == [JOURNAL_GROUP]
    assert outcomes[: JOURNAL_GROUP - 1] == [None] * (JOURNAL_GROUP - 1)  # entirely in the written row
    assert all(isinstance(outcome, StateStoreRefusedError) for outcome in outcomes[JOURNAL_GROUP - 1 :])


def test_a_store_that_fails_otherwise_raises_in_every_waiting_slot_instead_of_leaving_it_waiting():
    state, store = batch_of(3), Store()
    journal = GroupJournal(state, store)  # unguarded: its errors are not turned into refusals
    store.set = lambda key, value: (_ for _ in ()).throw(ConnectionResetError("the supervisor went away"))

    async def run() -> list:
        return await asyncio.gather(*(journal.commit([str(i)]) for i in range(3)), return_exceptions=True)

    outcomes = asyncio.run(run())
    assert [type(outcome) for outcome in outcomes] == [ConnectionResetError] * 3


def test_a_cancelled_round_flushes_what_its_slots_asked_for():
    state, store = batch_of(2), Store()
    journal = GroupJournal(state, guarded(store))
    journal.last_write_seconds = 5.0  # the scheduled write would wait JOURNAL_GROUP_WINDOW

    async def run() -> None:
        slot = asyncio.create_task(journal.commit(["0", "1"]))
        await asyncio.sleep(0)  # the slot asked and waits
        slot.cancel()
        journal.flush()  # as Submitter.submit does when the round ends

    asyncio.run(run())
    assert journalled(store) == [["0", "1"]]

"""The batch's task-state-store layout: journal rows (an outcome and the next reservation), shard rewrites, replay
after a crash, and the finished batch's summary kept per run epoch."""

from __future__ import annotations

import json

from airflow_provider_sam3.batch.state import JOURNAL_SLOTS, SHARD_SIZE, BatchState
from airflow_provider_sam3.models.batch import BatchEntry


class DictStore:
    """The task state store's interface (get / set / delete of JSON values), counting writes and their bytes."""

    def __init__(self) -> None:
        self.values: dict[str, object] = {}
        self.writes: list[tuple[str, int]] = []

    def get(self, key, default=None):
        return json.loads(json.dumps(self.values[key])) if key in self.values else default

    def set(self, key, value):
        assert value is not None
        self.values[key] = json.loads(json.dumps(value))
        self.writes.append((key, len(json.dumps(value))))

    def delete(self, key):
        self.values.pop(key, None)


def batch(images: int) -> BatchState:
    state = BatchState(endpoint_id="fal-ai/sam-3/image", started_at=1.0, deadline=2.0)
    for index in range(images):
        state.add(BatchEntry(index=index, source=f"/photos/{index:05d}.png"))
    return state


def submit(state: BatchState, store: DictStore, index: int, reserve: int | None = None) -> None:
    """Record ``index``'s submission and, in the same row, reserve ``reserve`` (as a submit slot does)."""
    entry = state.entries[str(index)]
    entry.request_id, entry.state, entry.submissions = f"req-{index}", "submitted", entry.submissions + 1
    keys = [str(index)]
    if reserve is not None:
        state.entries[str(reserve)].state, state.entries[str(reserve)].reserved_at = "sending", 10.0 + reserve
        keys.append(str(reserve))
    state.journal(store, *keys)


def test_every_submission_survives_a_crash_right_after_it():
    store = DictStore()
    state = batch(250)
    state.save(store)
    for index in range(JOURNAL_SLOTS + 5):  # one shard flush, then 5 journal-only rows
        submit(state, store, index)
    # The process dies here: no save() after the last five submissions.
    loaded = BatchState.load(store)
    assert [e.request_id for e in loaded.ordered()[: JOURNAL_SLOTS + 5]] == [
        f"req-{i}" for i in range(JOURNAL_SLOTS + 5)
    ]
    assert all(e.state == "submitted" and e.submissions == 1 for e in loaded.ordered()[: JOURNAL_SLOTS + 5])
    assert all(e.state == "pending" for e in loaded.ordered()[JOURNAL_SLOTS + 5 :])


def test_a_stale_journal_row_never_rolls_an_entry_back():
    store = DictStore()
    state = batch(10)
    state.save(store)
    submit(state, store, 3)
    entry = state.entries["3"]
    entry.state, entry.retries = "done", 0
    state.touch("3")
    state.save(store)  # the shard now says done; the journal slot still holds the submission
    loaded = BatchState.load(store)
    assert loaded.entries["3"].state == "done"


def test_a_replayed_row_is_written_to_its_shard_before_slots_are_reused():
    store = DictStore()
    state = batch(JOURNAL_SLOTS * 2)
    state.save(store)
    submit(state, store, 7)
    loaded = BatchState.load(store)  # replays row 7, and writes it to its shard at once
    for index in range(JOURNAL_SLOTS, JOURNAL_SLOTS * 2 - 1):  # this process overwrites every slot but one...
        submit(loaded, store, index)
    for slot in range(JOURNAL_SLOTS):  # ...and then all of them are gone
        store.delete(f"fal_batch.j.{slot}")
    assert BatchState.load(store).entries["7"].request_id == "req-7"


def test_write_amplification_per_submission_is_small():
    images = SHARD_SIZE * 10
    store = DictStore()
    state = batch(images)
    state.save(store)
    one_shard = max(size for key, size in store.writes if key.startswith("fal_batch.") and ".j." not in key)
    store.writes.clear()
    for index in range(images):
        submit(state, store, index, reserve=index + 1 if index + 1 < images else None)
    state.save(store)
    journal = [size for key, size in store.writes if ".j." in key]
    assert len(journal) == images and max(journal) < 600  # one small row per submission, with the next reservation
    per_submission = sum(size for _, size in store.writes) / images
    assert per_submission < one_shard / 5, (per_submission, one_shard)  # vs a shard rewrite per submission


def test_loading_a_schema_1_batch_renumbers_rows_by_position():
    store = DictStore()
    store.set(
        "fal_batch",
        {
            "version": 1,
            "endpoint_id": "fal-ai/sam-3/image",
            "started_at": 1.0,
            "deadline": 2.0,
            "url_templates": None,
            "cycle": 0,
            "shards": 1,
            "images": 2,
        },
    )
    store.set(
        "fal_batch.0",
        {
            "a1b2": BatchEntry(index=1, source="/b.png").to_json(),
            "c3d4": BatchEntry(index=0, source="/a.png", request_id="r0", state="submitted", submissions=1).to_json(),
        },
    )
    loaded = BatchState.load(store)
    assert [(k, e.source) for k, e in loaded.entries.items()] == [("0", "/a.png"), ("1", "/b.png")]
    assert loaded.entries["0"].request_id == "r0"
    assert BatchState.load(store).entries["0"].request_id == "r0"  # rewritten in the new layout


def test_each_task_writes_in_its_own_folder_and_odd_ids_stay_distinct(tmp_path):
    from airflow_provider_sam3.batch.manifest import batch_folder

    base = tmp_path
    plain = batch_folder(base, "dag", "manual__1", "segment", -1)
    assert plain == base / "dag" / "manual__1" / "segment"
    assert batch_folder(base, "dag", "manual__1", "segment", 3) == plain / "3"
    colon, underscore = batch_folder(base, "dag", "a:b", "t", -1), batch_folder(base, "dag", "a_b", "t", -1)
    assert colon != underscore  # a cleaned name carries a hash of the original
    for hostile in ("../../escape", "/abs/path", "..", ".", ""):
        folder = batch_folder(base, "dag", hostile, "t", -1)
        assert folder.parent.parent == base / "dag" and ".." not in folder.relative_to(base).parts


def test_a_finished_batch_keeps_its_summary_until_the_state_is_gone():
    store = DictStore()
    state = batch(3)
    state.summary = {"manifest": "/out/manifest.jsonl", "images": 3}
    state.save(store)
    store.delete("fal_batch.0")  # a clean-up that died half way
    assert BatchState.load(store).summary == {"manifest": "/out/manifest.jsonl", "images": 3}


def test_a_reservation_in_a_submission_row_survives_a_crash():
    store = DictStore()
    state = batch(10)
    state.save(store)
    state.entries["0"].state, state.entries["0"].reserved_at = "sending", 5.0
    state.journal(store, "0")  # the slot's first reservation, before its first submit
    submit(state, store, 0, reserve=1)  # 0 answered; 1 reserved in the same row, then the process dies
    loaded = BatchState.load(store)
    assert (loaded.entries["0"].state, loaded.entries["0"].request_id) == ("submitted", "req-0")
    assert (loaded.entries["1"].state, loaded.entries["1"].reserved_at) == ("sending", 11.0)
    assert all(e.state == "pending" for e in loaded.ordered()[2:])


def test_a_journal_row_older_than_its_shard_is_not_replayed():
    store = DictStore()
    state = batch(5)
    state.save(store)
    submit(state, store, 2)
    state.entries["2"].state = "failed"  # a later outcome, saved with its shard, at the same version
    state.touch("2")
    state.save(store)
    submit(state, store, 4)  # a newer row for another entry
    loaded = BatchState.load(store)
    assert loaded.entries["2"].state == "failed" and loaded.entries["4"].state == "submitted"


def test_finishing_keeps_only_the_header_with_the_summary_and_epoch():
    store = DictStore()
    state = batch(SHARD_SIZE + 1)
    state.save(store)
    submit(state, store, 0)
    state.epoch = 3
    state.finish(store, {"manifest": "/out/manifest.jsonl", "images": SHARD_SIZE + 1})
    assert sorted(store.values) == ["fal_batch"]
    loaded = BatchState.load(store)
    assert (loaded.summary["images"], loaded.epoch, len(loaded.entries)) == (SHARD_SIZE + 1, 3, 0)
    loaded.forget(store)
    assert store.values == {}


def test_a_schema_2_journal_row_is_still_replayed():
    """A batch journalled by the previous release (one bare entry per row, no versions) loses nothing on upgrade."""
    store = DictStore()
    state = batch(3)
    state.save(store)
    header = dict(store.values["fal_batch"], version=2)
    store.set("fal_batch", header)
    row = {
        "k": "1",
        **BatchEntry(index=1, source="/photos/00001.png", request_id="r1", state="submitted", submissions=1).to_json(),
    }
    store.set("fal_batch.j.0", row)
    loaded = BatchState.load(store)
    assert (loaded.entries["1"].state, loaded.entries["1"].request_id) == ("submitted", "r1")


def test_submissions_journalled_before_the_header_knows_fal_s_url_templates_can_still_be_polled():
    from airflow_provider_sam3.batch.polling import entry_reference

    store = DictStore()
    state = batch(12)
    state.save(store)  # the header, before any submission: no URL templates yet
    templates = {
        name: f"https://queue.fal.run/fal-ai/sam-3/requests/{{request_id}}{tail}"
        for name, tail in (("status_url", "/status"), ("response_url", ""), ("cancel_url", "/cancel"))
    }
    state.url_templates = templates  # learnt from fal's first answer
    for index in range(3):
        submit(state, store, index)
    # The try stops here (its writes refused, or killed): no shard or header write after these rows.
    assert store.values["fal_batch"]["url_templates"] is None
    loaded = BatchState.load(store)
    assert loaded.url_templates == templates
    reference = entry_reference(loaded, loaded.entries["2"])
    assert reference.status_url == "https://queue.fal.run/fal-ai/sam-3/requests/req-2/status"
    loaded.save(store)  # the header now holds them: later rows no longer repeat them
    submit(loaded, store, 3)
    last_row = store.writes[-1][0]
    assert last_row.startswith("fal_batch.j.") and "u" not in store.values[last_row]
    assert store.values["fal_batch"]["url_templates"] == templates

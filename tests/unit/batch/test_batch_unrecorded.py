"""Reservations an earlier try left unresolved: adopted from its hand-over file, or, once their submit can no longer
be in flight, sent again and counted as unseen. Hand-over files are read from disk: malformed ones are skipped."""

from __future__ import annotations

import json
import logging

from airflow_provider_sam3.batch.state import BatchState
from airflow_provider_sam3.batch.unrecorded import HAND_OVER_GRACE_SECONDS, UnrecordedLedger, resolve_reservations
from airflow_provider_sam3.models.batch import BatchEntry
from airflow_provider_sam3.models.reference import RequestReference

LOG = logging.getLogger("unrecorded-test")
BASE = "https://queue.example/fal-ai/sam-3/requests"


def state_with_reservations(count: int, reserved_at: float = 100.0) -> BatchState:
    state = BatchState(endpoint_id="fal-ai/sam-3/image", started_at=1.0, deadline=1e12)
    state.url_templates = {
        "status_url": f"{BASE}/{{request_id}}/status",
        "response_url": f"{BASE}/{{request_id}}",
        "cancel_url": f"{BASE}/{{request_id}}/cancel",
    }
    for index in range(count):
        state.add(BatchEntry(index=index, source=f"/in/{index}.png", state="sending", reserved_at=reserved_at + index))
    return state


def reference(request_id: str) -> RequestReference:
    return RequestReference(
        endpoint_id="fal-ai/sam-3/image",
        request_id=request_id,
        status_url=f"{BASE}/{request_id}/status",
        response_url=f"{BASE}/{request_id}",
        cancel_url=f"{BASE}/{request_id}/cancel",
    )


def test_a_handed_over_request_is_adopted_and_the_rest_wait_for_their_lease(tmp_path):
    state = state_with_reservations(3)
    ledger = UnrecordedLedger(tmp_path)
    ledger.hand_over(state.entries["1"], reference("req-1"), try_number=2)

    changed = resolve_reservations(state, ledger.read(), lease=60.0, log=LOG, now=110.0)
    assert [e.index for e in changed] == [1]
    adopted = state.entries["1"]
    assert (adopted.state, adopted.request_id, adopted.submissions, adopted.urls) == ("submitted", "req-1", 1, None)
    assert [state.entries[k].state for k in ("0", "2")] == ["sending", "sending"]  # their submits may still answer

    over = 102.0 + 60.0 + HAND_OVER_GRACE_SECONDS
    changed = resolve_reservations(state, ledger.read(), lease=60.0, log=LOG, now=over)
    assert sorted(e.index for e in changed) == [0, 2]
    for key in ("0", "2"):
        entry = state.entries[key]
        assert (entry.state, entry.unseen, entry.submissions, entry.retryable) == ("pending", 1, 0, True)
        assert "nobody can see" in entry.error


def test_a_hand_over_file_answers_only_the_reservation_it_was_written_for(tmp_path):
    state = state_with_reservations(1)
    ledger = UnrecordedLedger(tmp_path)
    ledger.hand_over(state.entries["0"], reference("req-old"), try_number=1)
    state.entries["0"].reserved_at = 500.0  # a later reservation of the same image
    assert resolve_reservations(state, ledger.read(), lease=60.0, log=LOG, now=510.0) == []
    assert state.entries["0"].state == "sending"


def test_malformed_or_foreign_hand_over_files_are_skipped(tmp_path):
    state = state_with_reservations(2)
    ledger = UnrecordedLedger(tmp_path)
    ledger.hand_over(state.entries["0"], reference("req-0"), try_number=1)
    folder = tmp_path / "_unrecorded"
    (folder / "junk.json").write_text("not json")
    (folder / "wrong-types.json").write_text(json.dumps({"index": "1", "source": "/in/1.png", "reserved_at": 101.0}))
    (folder / "other-image.json").write_text(
        json.dumps({**json.loads((folder / "0-req-0.json").read_text()), "index": 1, "request_id": "req-x"})
    )
    records = ledger.read()
    assert sorted(r["request_id"] for r in records) == ["req-0", "req-x"]  # shape-checked only
    resolve_reservations(state, records, lease=60.0, log=LOG, now=105.0)
    assert state.entries["0"].request_id == "req-0"
    assert state.entries["1"].state == "sending"  # the file named images[1] with images[0]'s source: no match


def test_clear_removes_the_hand_over_files(tmp_path):
    state = state_with_reservations(1)
    ledger = UnrecordedLedger(tmp_path)
    ledger.hand_over(state.entries["0"], reference("req-0"), try_number=1)
    ledger.clear()
    assert not (tmp_path / "_unrecorded").exists() and ledger.read() == []

"""Bad samples during a run (mtp.data.datamodules.bad_samples): replaced by the next loadable one, the skip carried
with its batch (also out of worker processes) and counted once per file in the main process."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from mtp.data.datamodules.bad_samples import SKIPPED_KEY, CollateWithSkips, DataCheckHooks, SkipBadSamples, pop_skipped


class Numbers(Dataset):
    """Sample i is {'x': tensor(i)}; the indices in ``bad`` raise like a corrupt file."""

    def __init__(self, n: int, bad: set[int]) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        if i in self.bad:
            raise ValueError(f"f{i}.png: truncated PNG")
        return {"x": torch.tensor(i)}


def test_a_bad_sample_is_replaced_by_the_next_loadable_one():
    data = SkipBadSamples(Numbers(5, {1, 2}))
    sample = data[1]
    assert int(sample["x"]) == 3 and sample[SKIPPED_KEY] == ["f1.png: truncated PNG", "f2.png: truncated PNG"]
    assert SKIPPED_KEY not in data[0] and int(data[4]["x"]) == 4
    with pytest.raises(ValueError, match=r"(?s)3 samples in a row could not be loaded.*f0\.png"):
        SkipBadSamples(Numbers(3, {0, 1, 2}))[0]


def test_skips_travel_with_the_batch_and_are_counted_once_per_file():
    loader = DataLoader(SkipBadSamples(Numbers(6, {2})), batch_size=3, collate_fn=CollateWithSkips(None))
    batches = list(loader)
    assert batches[0]["x"].tolist() == [0, 1, 3] and batches[0][SKIPPED_KEY] == ["f2.png: truncated PNG"]
    assert SKIPPED_KEY not in batches[1]
    hooks = DataCheckHooks()
    for _ in range(2):  # two epochs
        for batch in loader:
            hooks.on_before_batch_transfer(batch, 0)
            assert SKIPPED_KEY not in batch
    assert hooks.num_skipped_samples == 2 and hooks.skipped_samples == {"f2.png: truncated PNG": 2}
    assert pop_skipped({"sota": {"x": 1, SKIPPED_KEY: ["a"]}, "sior": {"x": 2}}) == ["a"]


@pytest.mark.timeout(120)
def test_skips_leave_worker_processes():
    from mtp.data.datamodules.common import worker_process_options

    loader = DataLoader(SkipBadSamples(Numbers(4, {0})), batch_size=2, collate_fn=CollateWithSkips(None),
                        num_workers=1, **worker_process_options(1, "forkserver"))  # fmt: skip
    first = next(iter(loader))
    assert first["x"].tolist() == [1, 1] and first[SKIPPED_KEY] == ["f0.png: truncated PNG"]

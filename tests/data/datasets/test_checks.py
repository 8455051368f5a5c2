"""The data-check engine (mtp.data.datasets.checks): every problem in item order, threads for 'quick', processes
for 'full', datasets without ``check_item``, and the one error listing all datasets' problems."""

from __future__ import annotations

import pytest

from mtp.data.datasets.checks import DataCheckError, check_datasets, scan_dataset


class Items:
    """Item i is bad at the quick level when i % 7 == 3 and at the full level also when i % 11 == 5."""

    transform = None

    def __init__(self, n: int) -> None:
        self.n = n

    def scan_size(self) -> int:
        return self.n

    def __len__(self) -> int:
        return self.n // 2  # a filtered view: the scan still visits scan_size() items

    def check_item(self, i: int, level: str) -> None:
        if i % 7 == 3:
            raise ValueError(f"file{i}.png: truncated PNG")
        if level == "full" and i % 11 == 5:
            raise OSError(f"file{i}.png: cannot read image")


class NoChecks:
    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        if i == 2:
            raise KeyError("a bug, reported with its type")
        return {}


def expected(n: int, level: str) -> list[int]:
    return [i for i in range(n) if i % 7 == 3 or (level == "full" and i % 11 == 5)]


@pytest.mark.parametrize("workers", [0, 3])
def test_quick_scan_in_threads_lists_every_problem_in_order(workers):
    report = scan_dataset(Items(50), "quick", workers, "train")
    assert report.num_items == 50 and [p.index for p in report.problems] == expected(50, "quick")
    assert str(report.problems[0]) == "[train] file3.png: truncated PNG"


@pytest.mark.timeout(120)
def test_full_scan_in_processes_matches_the_in_process_scan():
    in_process = scan_dataset(Items(70), "full", 1, "val")
    in_workers = scan_dataset(Items(70), "full", 2, "val")  # 70 items: 2 processes
    assert [p.index for p in in_workers.problems] == [p.index for p in in_process.problems] == expected(70, "full")


def test_datasets_without_check_item_are_read_at_the_full_level():
    assert scan_dataset(NoChecks(), "quick", 1).problems == []
    (problem,) = scan_dataset(NoChecks(), "full", 1, "predict").problems
    assert problem.index == 2 and problem.message == "item 2: KeyError: 'a bug, reported with its type'"
    with pytest.raises(ValueError, match="check level must be"):
        scan_dataset(NoChecks(), "deep")


def test_check_datasets_raises_one_error_for_all_datasets():
    with pytest.raises(DataCheckError) as info:
        check_datasets({"train": Items(20), "val": Items(10)}, "quick", 1, hint="(hint)")
    error = info.value
    assert [(p.dataset, p.index) for p in error.problems] == [("train", 3), ("train", 10), ("train", 17), ("val", 3)]
    assert str(error).startswith("data check (quick) found 4 problem(s) in 20 train + 10 val item(s):")
    assert str(error).endswith("(hint)")
    assert len(check_datasets({"test": Items(3)}, "quick", 1)) == 1

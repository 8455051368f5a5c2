"""mtp.cli.errors: how faults are condensed into one message (the end-to-end cases are in tests/bad_inputs/)."""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from mtp.cli.errors import build_error_message, refine_parser_message


class _Broken(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i):
        raise ValueError("scene_3.png: mask has values 9 outside 0..6")


def test_error_from_a_dataloader_worker_loses_the_worker_traceback_text():
    try:
        next(iter(DataLoader(_Broken(), num_workers=1, multiprocessing_context="spawn")))
    except ValueError as err:
        message = build_error_message(err)
    assert message == (
        "Caught ValueError in DataLoader worker process 0. ValueError: scene_3.png: mask has values 9 outside 0..6"
    )


def test_parser_messages_are_shortened_with_suggestions():
    union = (
        'Parser key "model":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n  Errors:\n'
        "    - Problem with given class_path 'mtp.tasks.classification.ClassificationTask':\n"
        "        Option 'warmup_epoch' is not accepted\n    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'dict'>\n  Given value: {'class_path': '...'}"
    )
    assert refine_parser_message(union) == (
        "model (mtp.tasks.classification.ClassificationTask): unknown option 'warmup_epoch' "
        "(did you mean 'warmup_epochs' or 'warmup_ratio'?)"
    )
    assert refine_parser_message("Subcommand 'fit' does not accept option 'trainer.precison'") == (
        "unknown option 'trainer.precison' (did you mean 'precision'?)"
    )
    assert refine_parser_message("Parser key \"config\":\n  File does not exist: 'a.yaml'") == (
        "config file not found: 'a.yaml'"
    )

"""Windows: random crops of the training records, and the evaluation windows the feature extractor would make."""

from dataclasses import dataclass

import datasets
import numpy as np
import torch
from transformers import TrainerCallback

from dataset_scripts.common import signal_feature
from modeling_ecgmamba.feature_extraction_ecgmamba import split_windows


def _to_windows(batch, indices, window: int, stride: int):
    signals = [np.asarray(x, dtype=np.float32) for x in batch["input_values"]]
    windows, owner, _ = split_windows(signals, window, stride)
    return {
        "input_values": windows,
        "labels": [batch["labels"][i] for i in owner],
        "record_index": [indices[i] for i in owner],
    }


def sliding_windows(dataset: datasets.Dataset, window: int, stride: int, num_proc=None):
    """Split each record into windows of `window` samples every `stride`, laid out as the feature extractor lays
    them out at inference (`split_windows`: the last window aligned to the record's end).

    Returns the windows (`input_values`, `labels`) and, per window, the index of its record. Records of exactly one
    window (PTB-XL at its native 10 s) are used as they are.
    """
    dataset = dataset.select_columns(["input_values", "labels"])
    if dataset.features["input_values"].shape[0] == window:
        return dataset, np.arange(len(dataset))
    features = datasets.Features(
        {
            "input_values": signal_feature(None),
            "labels": dataset.features["labels"],
            "record_index": datasets.Value("int64"),
        }
    )
    windows = dataset.map(
        _to_windows,
        batched=True,
        batch_size=64,
        with_indices=True,
        fn_kwargs={"window": window, "stride": stride},
        remove_columns=dataset.column_names,
        features=features,
        num_proc=num_proc,
        desc=f"Sliding {window}-sample windows",
    )
    record_index = np.asarray(windows["record_index"])
    return windows.select_columns(["input_values", "labels"]), record_index


class IndexedRecords(torch.utils.data.Dataset):
    """The training split, each record with its `index`: its random crop then depends on nothing else."""

    def __init__(self, dataset: datasets.Dataset):
        self.dataset = dataset.select_columns(["input_values", "labels"]).with_format("numpy")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        return {**self.dataset[index], "index": index}


@dataclass
class WindowCollator:
    """Batches records into `(batch, window, leads)`.

    A record longer than the window is cropped: at a random start drawn from `(seed, epoch, index)` when the example
    carries its `index` (training: the same crop in any process or worker and after a resume, a new one every
    epoch), else at its start. Shorter records are zero-padded and get an `attention_mask`. With `mean`/`std` (the
    feature extractor's, `--normalize`) each lead is standardised as the feature extractor does at inference.
    """

    window: int
    seed: int = 0
    epoch: int = 0  # set by CropEpochCallback at every epoch's start
    mean: list[float] | None = None
    std: list[float] | None = None
    use_attention_mask: bool = True

    def crop_start(self, length: int, index) -> int:
        if index is None:
            return 0
        return int(np.random.default_rng([self.seed, self.epoch, int(index)]).integers(length - self.window + 1))

    def __call__(self, examples: list[dict]) -> dict:
        first = np.asarray(examples[0]["input_values"])
        values = np.zeros((len(examples), self.window, first.shape[-1]), dtype=np.float32)
        mask = np.zeros((len(examples), self.window), dtype=np.int64)
        for i, example in enumerate(examples):
            signal = np.asarray(example["input_values"], dtype=np.float32)
            if len(signal) > self.window:
                start = self.crop_start(len(signal), example.get("index"))
                signal = signal[start : start + self.window]
            values[i, : len(signal)] = signal
            mask[i, : len(signal)] = 1
        if self.mean is not None:
            values = (values - np.float32(self.mean)) / np.float32(self.std) * mask[..., None]
        batch = {
            "input_values": torch.from_numpy(values),
            "labels": torch.tensor(np.stack([np.asarray(e["labels"], dtype=np.float32) for e in examples])),
        }
        if self.use_attention_mask and not mask.all():
            batch["attention_mask"] = torch.from_numpy(mask)
        return batch


class CropEpochCallback(TrainerCallback):
    """Tells the collator which epoch starts (before the Trainer creates the epoch's data iterator and workers)."""

    def __init__(self, collator: WindowCollator):
        self.collator = collator

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.collator.epoch = int(state.epoch + 1e-6)  # also right when a run resumes in the middle of an epoch

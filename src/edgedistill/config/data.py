"""``data:``: which dataset, how it is batched, augmented and (for large sets) streamed."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from edgedistill.config.base import Strict


class AugmentConfig(Strict):
    enabled: bool = True
    crop_pad: int | None = Field(None, ge=0, description="None: the dataset's default")
    hflip: bool | None = None


class DataConfig(Strict):
    dataset: str = "fashion_mnist"
    root: str | None = None
    limit_train: int | None = Field(None, gt=0)
    limit_test: int | None = Field(None, gt=0)
    val_split: int | None = Field(
        None, gt=0, description="hold out this many training images (class-stratified, the "
        "same ones for every seed) as a validation set; halting rules then read validation "
        "metrics, so the test set never steers training")
    batch_size: int = Field(128, gt=0)
    eval_batch_size: int = Field(512, gt=0)
    augment: AugmentConfig = AugmentConfig()
    num_draws: int | None = Field(None, gt=0, description="augmentation draws reused cyclically")
    options: dict[str, Any] = {}
    streaming: bool | None = Field(
        None, description="read samples from disk while training (imagefolder, webdataset); "
        "unset: only when the decoded set would exceed memory_budget_gb")
    memory_budget_gb: float = Field(4.0, gt=0, description="largest decoded set held in "
                                    "memory, in GiB")
    workers: int = Field(2, ge=0, description="DataLoader worker processes when streaming")
    prefetch: int = Field(2, ge=1, description="batches each worker prepares ahead (streaming "
                          "memory is about workers x prefetch batches)")
    transform: str = Field("imagenet", description="streaming per-sample recipe: imagenet "
                           "(RandomResizedCrop + flip; resize + centre crop) or fit (the "
                           "in-memory imagefolder's fit and pad-crop + flip)")
    transform_options: dict[str, Any] = {}
    on_corrupt: Literal["skip", "error"] = Field(
        "error", description="an unreadable image when streaming: stop naming it, or skip it "
        "with a warning naming it")
    mean: list[float] | None = Field(None, description="per-channel mean on the 0-1 scale; "
                                     "unset: the train split's (streaming: ImageNet's)")
    std: list[float] | None = None
    num_classes: int | None = Field(None, gt=0, description="the classes the data must have "
                                    "(checked when it loads); lets `edgedistill check` build "
                                    "the models before the data is fetched")

    @field_validator("dataset")
    @classmethod
    def _registered(cls, name: str) -> str:
        from edgedistill.config.builtins import check_dataset_name  # imports no torch

        return check_dataset_name(name)

    @model_validator(mode="after")
    def _check_streaming(self):
        from edgedistill.config.builtins import check_dataset

        self.options = check_dataset(self.dataset, self.options, self.streaming)
        if self.transform != "imagenet" or self.transform_options:  # the default needs no
            from edgedistill.data.transforms import TRANSFORMS  # check, nor torch imported

            TRANSFORMS.validate_settings(self.transform, self.transform_options,
                                         "data.transform_options")
        if (self.mean is None) != (self.std is None) or (
                self.mean is not None and (len(self.mean) != len(self.std)
                                           or min(self.std) <= 0)):
            raise ValueError("data.mean and data.std go together, one value per channel, "
                             "std > 0")
        return self

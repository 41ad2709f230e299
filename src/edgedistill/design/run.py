"""``edgedistill design``: teacher + device profile -> the student to train, with evidence.

Writes ``OUT/design.json`` (every candidate with its numbers and reasons),
``OUT/DESIGN.md`` (the report) and ``OUT/onnx/*.onnx`` (the chosen student and the
measured sample, exported and timed in ONNX Runtime under the profile's threads).
"""

from __future__ import annotations

import json
from pathlib import Path

from edgedistill.design.measure import measure_candidates, pick_sample
from edgedistill.design.profiles import DeviceProfile
from edgedistill.design.report import design_markdown
from edgedistill.design.search import DEFAULT_WIDTHS, Design, search
from edgedistill.errors import UsageError


def teacher_data(source: str, dataset: str | None):
    """The data the teacher takes: its run's own data settings (root, options) when it is
    a run, else ``dataset`` or the zoo manifest's."""
    from edgedistill import api

    if dataset is None and api.run_dir_of(source) is None and not source.startswith("zoo:"):
        raise UsageError(f"cannot tell which data {source!r} takes; pass --dataset or "
                         "--input-shape CxHxW")
    return api.source_data_config(source, dataset)


def dataset_shape(data) -> tuple[int, int, int]:
    """(C, H, W) of a dataset's images, read from a 16-image load."""
    from edgedistill import api

    small = data.model_copy(update={"limit_train": 16, "limit_test": 16, "val_split": None})
    train, _ = api.build_data(small, 0)
    return tuple(train.image_shape)


def run_design(teacher_source: str, profile: DeviceProfile, out: str | Path,
               dataset: str | None = None, input_shape: tuple[int, int, int] | None = None,
               widths: tuple[float, ...] = DEFAULT_WIDTHS, zoo: bool = True,
               measure: int = 5) -> Design:
    """Search, measure a sample (the chosen student first) and write the report.

    Raises ``UsageError`` after writing the report when no candidate fits.
    """
    from edgedistill import api

    out = Path(out)
    teacher = api.load_model(teacher_source)
    if input_shape is None:
        input_shape = dataset_shape(teacher_data(teacher_source, dataset))
    if input_shape[0] != teacher.spec.get("in_channels", input_shape[0]):
        raise UsageError(f"teacher {teacher_source!r} takes {teacher.spec['in_channels']} "
                         f"channel(s) but the input has {input_shape[0]}")
    design = search(teacher, teacher_source, tuple(input_shape), profile, widths, zoo)
    if measure > 0 and design.chosen is not None:
        sample = pick_sample(design.candidates, design.chosen, measure)
        measure_candidates(sample, (profile.batch, *input_shape), profile.threads, out / "onnx")
    out.mkdir(parents=True, exist_ok=True)
    (out / "design.json").write_text(json.dumps(design.to_json(), indent=2))
    (out / "DESIGN.md").write_text(design_markdown(design))
    if design.chosen is None:
        smallest = min((c for c in design.candidates if c.params), key=lambda c: c.storage_bytes,
                       default=None)
        hint = f"; the smallest candidate, {smallest.name}, fails: " \
               f"{'; '.join(smallest.reasons)}" if smallest else ""
        raise UsageError(f"no student fits {'; '.join(profile.budgets())}{hint}. "
                         f"Relax a budget; report: {out / 'DESIGN.md'}")
    return design

"""``edgedistill design`` and ``edgedistill profile-device``.

``design_app`` is a typer sub-app that the main CLI mounts; ``python -m
edgedistill.design.cli`` runs it alone with the same error handling (a ``UsageError``
is one line on stderr and exit status 2).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from edgedistill.errors import SET_HELP, UsageError, run_cli

design_app = typer.Typer(add_completion=False, no_args_is_help=True,
                         help="Design students for a device budget; profile this machine.")


def _shape(text: Optional[str]) -> Optional[tuple[int, int, int]]:
    if text is None:
        return None
    try:
        shape = tuple(int(x) for x in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"--input-shape {text!r}: expected CxHxW, e.g. 1x28x28")
    return shape


def _widths(text: str) -> tuple[float, ...]:
    try:
        widths = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        widths = ()
    if not widths or any(not 0 < w <= 1 for w in widths):
        raise UsageError(f"--widths {text!r}: give multipliers in (0, 1], e.g. 0.25,0.5,1")
    return widths


def _budgets(storage, max_time, speed, activation_memory) -> dict:
    """CLI budgets parsed with errors that name the option."""
    from edgedistill.design.units import parse_bytes, parse_flops, parse_ms

    return {"storage_bytes": storage and parse_bytes(storage, "--storage"),
            "max_time_ms": max_time and parse_ms(max_time, "--max-time"),
            "flops_per_s": speed and parse_flops(speed, "--speed"),
            "activation_bytes": activation_memory and parse_bytes(activation_memory,
                                                                  "--activation-memory")}


def _profile(name: Optional[str], budgets: dict, **settings):
    from edgedistill.design.profiles import DeviceProfile, load_profile, with_overrides

    if name is None:
        if budgets["max_time_ms"] and not budgets["flops_per_s"]:
            raise UsageError("--max-time needs --speed (e.g. 5GFLOPS) or a --profile with a "
                             "latency model (write one with `edgedistill profile-device`)")
        base = DeviceProfile(name="custom", source="budgets given on the command line")
    else:
        base = load_profile(name)
    return with_overrides(base, **budgets, **settings)


@design_app.command()
def design(
    teacher: str = typer.Option(..., help="zoo:NAME, a run directory or a weights file."),
    profile: Optional[str] = typer.Option(None, help="Built-in (rpi4, jetson-nano, mcu) or a "
                                                      "profile YAML."),
    storage: Optional[str] = typer.Option(None, help="Storage for the weights, e.g. 2MB."),
    max_time: Optional[str] = typer.Option(None, help="Longest inference, e.g. 15ms."),
    speed: Optional[str] = typer.Option(None, help="Sustained compute, e.g. 5GFLOPS."),
    activation_memory: Optional[str] = typer.Option(None, help="Activation budget, e.g. 256KB."),
    precision: Optional[str] = typer.Option(None, help="fp32, fp16 or int8 weights."),
    threads: Optional[int] = typer.Option(None, min=1, help="Inference threads."),
    batch: Optional[int] = typer.Option(None, min=1, help="Inputs per inference."),
    dataset: Optional[str] = typer.Option(None, help="Default: the teacher's dataset."),
    input_shape: Optional[str] = typer.Option(None, help="CxHxW instead of --dataset."),
    widths: str = typer.Option("0.25,0.375,0.5,0.75,1", help="Width multipliers to try."),
    zoo: bool = typer.Option(True, help="Also try the zoo's small students."),
    measure: int = typer.Option(5, min=0, help="Candidates to export and time here "
                                                "(the chosen one first)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (default runs/design-PROFILE)."),
    train: bool = typer.Option(False, "--train", help="Distil the chosen student, train it "
                                                      "from scratch too, and report."),
    config: Optional[Path] = typer.Option(None, help="Distill YAML for --train (data, train, "
                                                     "losses, halting)."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    halting: bool = typer.Option(True, help="Halt the --train distillation early (config "
                                            "rules, else plateau or teacher_gap)."),
    halting_report: bool = typer.Option(False, "--halting-report",
                                        help="With --train: also run the full schedule and "
                                             "compare."),
    resume: bool = typer.Option(False, help="With --train: continue interrupted runs."),
):
    """Pick the most capable student of the teacher that fits a device budget."""
    from edgedistill.design.run import run_design

    if (config or set_ or halting_report or resume) and not train:
        raise UsageError("--config, --set, --halting-report and --resume apply to --train; "
                         "add --train")
    from edgedistill import api

    budgets = _budgets(storage, max_time, speed, activation_memory)
    device = _profile(profile, budgets, precision=precision, threads=threads, batch=batch)
    target = out or Path("runs") / f"design-{device.name}"
    api.check_run_dir(target, resume=True)  # a design folder is rewritten on each call
    shape, width_list = _shape(input_shape), _widths(widths)
    base = _train_base(config, set_, teacher, dataset) if train else {}
    result = run_design(teacher, device, target, dataset=dataset, input_shape=shape,
                        widths=width_list, zoo=zoo, measure=measure)
    print((target / "DESIGN.md").read_text())
    if train:
        _train(result, target, dataset, base, set_, halting, halting_report, resume)


def _train_base(config: Optional[Path], set_: list[str], teacher: str,
                dataset: Optional[str]) -> dict:
    """The ``--train`` config before the student is known, checked now (YAML, keys,
    values, ``--set``) so that bad input fails before DESIGN.md is written. Without a data
    section of its own it loads the data the teacher's run used (root, options)."""
    import json

    from edgedistill import api
    from edgedistill.config import DistillExperiment, apply_overrides, read_yaml_mapping, validate

    base = read_yaml_mapping(config) if config is not None else {}
    teacher_data = api.run_data_config(teacher)
    if teacher_data is not None and dataset in (None, teacher_data.dataset):
        data = base.setdefault("data", {})
        if isinstance(data, dict) and "dataset" not in data:
            data.update(dataset=teacher_data.dataset, root=teacher_data.root,
                        options=teacher_data.options)
    trial = json.loads(json.dumps(base))
    given = trial.get("teacher")
    trial["teacher"] = {**(given if isinstance(given, dict) else {}), "source": teacher}
    trial["student"] = {"derive": "shallower"}  # stands for the designed one, not known yet
    validate(apply_overrides(trial, list(set_)), DistillExperiment,
             str(config) if config else "design --train config")
    return base


def _train(result, target: Path, dataset, base: dict, set_, halting, halting_report,
           resume) -> None:
    from edgedistill.design.train import design_configs, train_design

    kd, scratch = design_configs(result, dataset, base, set_, halting)
    train_design(result, target, kd, scratch, halting_report, resume)
    print((target / "REPORT.md").read_text())


@design_app.command("profile-device")
def profile_device(
    out: Path = typer.Option(Path("device_profile.yaml"), help="Profile YAML to write."),
    name: str = typer.Option("this-machine", help="Profile name."),
    threads: int = typer.Option(1, min=1, help="Inference threads to measure with."),
    batch: int = typer.Option(1, min=1, help="Inputs per inference."),
    quick: bool = typer.Option(False, help="A third of the shapes (seconds, less accurate)."),
    storage: Optional[str] = typer.Option(None, help="Budget to record, e.g. 2MB."),
    max_time: Optional[str] = typer.Option(None, help="Budget to record, e.g. 15ms."),
    activation_memory: Optional[str] = typer.Option(None, help="Budget to record, e.g. 256KB."),
    precision: str = typer.Option("fp32", help="Weight precision to record."),
):
    """Measure this machine with ONNX Runtime micro-benchmarks; write a profile YAML."""
    from edgedistill.design.latency import profile_latency
    from edgedistill.design.profiles import DeviceProfile, save_profile, with_overrides

    budgets = _budgets(storage, max_time, None, activation_memory)
    print(f"timing ONNX Runtime micro-benchmarks ({threads} thread(s), batch {batch})...",
          file=sys.stderr)
    model = profile_latency(threads, batch, quick)
    device = with_overrides(DeviceProfile(
        name=name, threads=threads, batch=batch, latency_model=model,
        source=f"measured by `edgedistill profile-device` on {model.measured_on}, "
               f"{model.runtime}, {model.date}"), precision=precision, **budgets)
    path = save_profile(device, out)
    print(f"{model.benchmarks} benchmarks; median fit error {100 * model.fit_median_error:.1f}%; "
          f"channel block {model.channel_block}; call overhead {model.call_us:.1f} us")
    for kind, cost in model.ops.items():
        print(f"  {kind:9s} {cost.per_op_us:7.2f} us/op  {cost.us_per_mflop:7.2f} us/MFLOP  "
              f"{cost.us_per_kb:6.3f} us/KB")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    """Run ``design_app`` with the main CLI's error handling."""
    run_cli(design_app, argv)


if __name__ == "__main__":
    main()

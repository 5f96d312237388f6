"""Peak memory and wall time of `monai-fetal segment` on a normal and a huge image, and the start-up of small runs (issue 18).

Every case is one fresh ``python -m monai_fetal.cli`` process measured with ``/usr/bin/time -v`` (peak
RSS, wall clock): ``--help``; ``prepare`` of a 3-image HC18 folder; ``segment`` of one 800 x 540 HC18
image, of three, and of an 8000 x 6000 greyscale PNG (HC18 ``012_HC.png`` resized bilinearly, made in a
temporary folder, never in the repository). Pretrained LiteMedSAM, no box, the default precision
(``ov-int8``, its OpenVINO IR already cached). A further process runs the three-image ``segment`` in
phases (imports; config parsed and inputs checked; model built; each image; tables written) with the
resident memory at each, by wrapping the functions the inference config calls.

Each mask's SHA-256 is recorded, so runs of two code versions show whether any mask changed. The
machine is shared: the 1-, 5- and 15-minute load averages are recorded around every case. Results
go under ``--label`` (``before``, ``after``) in ``--out``, keeping the other labels there; with both, a
``summary`` of ``[before, after]`` per case.

    python benchmarks/segment_memory.py --label after --out benchmarks/results/segment_huge_image_cpu.json
    python benchmarks/segment_memory.py --label before --pythonpath /tmp/old-checkout --out benchmarks/results/segment_huge_image_cpu.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "hc18_subset"
IMAGES = ("012_HC.png", "000_HC.png", "001_HC.png")
HUGE_SIZE = (8000, 6000)
_PHASE_MARK = "PHASES "


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _timed(args: list[str], env: dict[str, str]) -> dict:
    """Peak RSS (MB), wall seconds and load averages of one ``python ARGS`` process under ``/usr/bin/time -v``."""
    load = _load()
    run = subprocess.run(["/usr/bin/time", "-v", sys.executable, *args], env=env, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{run.stderr[-3000:]}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", run.stderr)
    hours, minutes, seconds = wall.groups()
    return {
        "peak_rss_mb": round(int(rss.group(1)) / 1024),
        "wall_s": round(int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds), 2),
        "load_average_before": load,
        "load_average_after": _load(),
    }


def _segment(images: list[Path], out: Path, env: dict[str, str]) -> dict:
    result = _timed(["-m", "monai_fetal.cli", "segment", *map(str, images), "--out", str(out)], env)
    result["mask_sha256"] = {p.name: _sha256(p) for p in sorted(out.glob("*_mask.png"))}
    return result


def _hc18_folder(folder: Path) -> Path:
    """A 3-image HC18 folder (images, annotations, the published CSV's rows of them) in ``folder``."""
    for sub in ("images", "annotations"):
        (folder / sub).mkdir(parents=True)
    for name in IMAGES:
        shutil.copy(DATA / "images" / name, folder / "images" / name)
        annotation = name.replace(".png", "_Annotation.png")
        shutil.copy(DATA / "annotations" / annotation, folder / "annotations" / annotation)
    csv_name = "training_set_pixel_size_and_HC.csv"
    lines = (DATA / csv_name).read_text().splitlines()
    (folder / csv_name).write_text("\n".join([lines[0], *(line for line in lines[1:] if line.split(",")[0] in IMAGES)]) + "\n")
    return folder


def _huge_image(path: Path) -> Path:
    from PIL import Image

    with Image.open(DATA / "images" / IMAGES[0]) as image:
        image.convert("L").resize(HUGE_SIZE, Image.BILINEAR).save(path)
    return path


def measure(env: dict[str, str], work: Path) -> dict:
    """Every case in its own process (see the module docstring)."""
    images = [DATA / "images" / name for name in IMAGES]
    cases = {"help": _timed(["-m", "monai_fetal.cli", "--help"], env)}
    source = _hc18_folder(work / "hc18_three")
    cases["prepare_three_images"] = _timed(["-m", "monai_fetal.cli", "prepare", str(source), str(work / "prepared")], env)
    cases["segment_one_800x540"] = _segment(images[:1], work / "one", env)
    cases["segment_three_800x540"] = _segment(images, work / "three", env)
    cases["segment_one_8000x6000"] = _segment([_huge_image(work / "huge.png")], work / "huge", env)
    load = _load()
    run = subprocess.run(
        [sys.executable, __file__, "--phases", str(work / "phases"), *map(str, images)], env=env, capture_output=True, text=True
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith(_PHASE_MARK)]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f"the phase run failed:\n{run.stderr[-3000:]}")
    cases["segment_three_phases"] = {**json.loads(lines[-1][len(_PHASE_MARK) :]), "load_average_before": load, "load_average_after": _load()}
    return cases


def _rss_mb() -> int:
    with open("/proc/self/status") as status:
        return round(next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024)


def phases(out: str, images: list[str]) -> dict:
    """``segment IMAGES --out OUT`` in this process, timed in phases by wrapping what the inference config calls."""
    start = time.perf_counter()
    marks: list[dict] = []

    def mark(event: str) -> None:
        marks.append({"event": event, "s": round(time.perf_counter() - start, 2), "rss_mb": _rss_mb()})

    import monai_fetal.engines.segment as segment
    import monai_fetal.networks as networks
    from monai_fetal.cli import main

    mark("imports")

    def after(owner: object, name: str, event: str) -> None:
        function = getattr(owner, name)

        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            mark(event)
            return result

        setattr(owner, name, wrapped)

    after(segment, "plan_segmentation", "config parsed, inputs checked")
    after(networks, "build_prompted_sam", "model built")
    after(segment.MeasurementWriter, "start", "engine started")
    after(segment.MeasurementWriter, "write_items", "image written")
    after(segment.MeasurementWriter, "write_tables", "tables written")
    if main(["segment", *images, "--out", out]) != 0:
        raise RuntimeError("segment failed")
    times = {m["event"]: m["s"] for m in marks}
    image_times = [m["s"] for m in marks if m["event"] == "image written"]
    split = {
        "imports_s": times["imports"],
        "config_and_input_check_s": round(times["config parsed, inputs checked"] - times["imports"], 2),
        "model_build_s": round(times["engine started"] - times["config parsed, inputs checked"], 2),
        "first_image_s (with OpenVINO compile)": round(image_times[0] - times["engine started"], 2),
        "later_images_s_each": round((image_times[-1] - image_times[0]) / max(1, len(image_times) - 1), 2),
        "total_s": times["tables written"],
    }
    return {"split": split, "marks": marks, "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after", help="key of these results in --out (before, after)")
    parser.add_argument("--pythonpath", help="checkout to measure (default: this one)")
    parser.add_argument("--code", help="what --pythonpath holds, e.g. a commit (default: its git HEAD)")
    parser.add_argument("--out", default="benchmarks/results/segment_huge_image_cpu.json")
    parser.add_argument("--phases", nargs="+", metavar=("OUT", "IMAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases:
        print(_PHASE_MARK + json.dumps(phases(args.phases[0], args.phases[1:])), flush=True)
        return
    root = Path(args.pythonpath or Path(__file__).resolve().parents[1]).resolve()
    env = {**os.environ, "PYTHONPATH": str(root)}
    head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="segment_memory_") as work:
        cases = measure(env, Path(work))
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    results.update(
        what="peak RSS and wall time of `monai-fetal` processes (/usr/bin/time -v), pretrained LiteMedSAM, no box, "
        "default precision ov-int8 with its OpenVINO IR cached; benchmarks/segment_memory.py",
        images=f"HC18 hc18_subset {', '.join(IMAGES)} (800 x 540); the 8000 x 6000 PNG is {IMAGES[0]} resized bilinearly",
    )
    results[args.label] = {
        "code": args.code or head or str(root),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores shared with other jobs (see the load averages)",
        "torch": version("torch"),
        "monai": version("monai"),
        "openvino": version("openvino"),
        "cases": cases,
    }
    if "before" in results and "after" in results:
        old, new = results["before"]["cases"], results["after"]["cases"]
        results["summary"] = {
            case: {key: [old[case].get(key), new[case].get(key)] for key in ("peak_rss_mb", "wall_s")} for case in old if case in new
        }
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps({case: (result["peak_rss_mb"], result.get("wall_s")) for case, result in cases.items()}, indent=1))


if __name__ == "__main__":
    main()

"""Run the whole benchmark suite, one script per process, and write results.json and RESULTS.md.

    python bench/run_all.py                 # the full suite (15-20 minutes on an idle 2-core CPU)
    python bench/run_all.py --quick         # a reduced suite (a few minutes)
    python bench/run_all.py --only bench_eval bench_heads --out-dir /tmp/bench

Every bench/bench_*.py runs in its own process with a fresh TensorFlow. The convention: a script
that accepts `--json PATH` writes {"title": str, "columns": [name, ...], "rows": [{name: value}]}
there, and its rows become a table; the output of a script without `--json` is kept verbatim (its
Markdown tables stay tables). FULL_ARGS and QUICK_ARGS hold the arguments that keep each suite in
its time budget; with --quick, a script not listed there gets `--quick` if it accepts it.
The results name the machine (CPU, cores, memory, load average), the versions and the date.
"""
import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

from arcface_keras.io import write_json, write_text  # noqa: E402

# Arguments that keep the suite inside its budget (full: 20 minutes, quick: a few, on 2 cores).
FULL_ARGS = {
    "bench_backbones.py": ["--frameworks", "keras3,keras3-bf16", "--interleave", "--train-batch", "16",
                           "--infer-batch", "32", "--steps", "2", "--warmup", "1"],
    "bench_heads.py": ["--classes", "100000", "1000000"],
    "bench_pipeline.py": ["--images", "1000"],
    "bench_lfw.py": ["--quick"],  # all 6,000 pairs take an hour or more: run it on its own
    "bench_gpu.py": ["--device", "cpu", "--config", "full", "--matmul-size", "2048", "--precision", "float32",
                     "--batches", "64", "--warmup", "1", "--steps", "3", "--heads", "none"],  # bench/gpu.sh: the GPU run
}
QUICK_ARGS = {
    "bench_backbones.py": ["--quick", "--models", "mobilefacenet", "--frameworks", "keras3"],
    "bench_heads.py": ["--classes", "10000", "100000", "--steps", "1"],
    "bench_pipeline.py": ["--images", "128", "--calls", "1"],
    "bench_gpu.py": ["--device", "cpu", "--steps", "1"],
    "bench_synthetic_baseline.py": ["--identities", "20", "--images", "4", "--pairs", "200", "--write", "10x4"],
}
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "numpy", "jax", "opencv-python-headless", "mtcnn", "wandb")


def machine():
    """CPU model, cores, memory, load, versions and date of this run."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").is_file() else ""
    mem_kb = next((int(line.split()[1]) for line in meminfo.splitlines() if line.startswith("MemTotal")), 0)
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "cpu": models[0] if models else platform.processor() or platform.machine(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "load_average_start": os.getloadavg()[0],
        "platform": platform.platform(),
        "versions": versions,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def accepts(script, option):
    """Whether a bench script declares `option` among its arguments."""
    return f'"{option}"' in script.read_text()


def script_args(script, quick):
    """The benchmark's own arguments: QUICK_ARGS or its `--quick` with --quick, FULL_ARGS otherwise."""
    if not quick:
        return FULL_ARGS.get(script.name, [])
    if script.name in QUICK_ARGS:
        return QUICK_ARGS[script.name]
    return ["--quick"] if accepts(script, "--quick") else []


def as_text(output):
    return output.decode(errors="replace") if isinstance(output, bytes) else output or ""


def run_script(script, quick, timeout, scratch):
    """Run one bench script; its rows (or its output) and how long it took."""
    args = script_args(script, quick)
    json_path = Path(scratch) / f"{script.stem}.json" if accepts(script, "--json") else None
    command = [sys.executable, str(script), *args, *(["--json", str(json_path)] if json_path else [])]
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    result = {"script": script.name, "command": " ".join(["python", f"bench/{script.name}", *args])}
    began = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, cwd=BENCH.parent, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        result.update(seconds=round(time.perf_counter() - began, 1), error=f"timed out after {timeout} s",
                      stdout=as_text(expired.stdout))
        return result
    result["seconds"] = round(time.perf_counter() - began, 1)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no error output"])[-1]
        result.update(error=f"exit {done.returncode}: {tail}", stdout=done.stdout)
    elif json_path is not None and json_path.is_file():
        result.update(json.loads(json_path.read_text()))
    else:
        result["stdout"] = done.stdout
    return result


def fmt(value):
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def rows_table(columns, rows):
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def verbatim(text):
    """A script's output: its Markdown table lines as they are, everything else in text blocks."""
    blocks, current, in_table = [], [], None
    for line in text.strip().splitlines():
        is_table = line.lstrip().startswith("|")
        if current and is_table != in_table:
            blocks.append((in_table, current))
            current = []
        current.append(line)
        in_table = is_table
    if current:
        blocks.append((in_table, current))
    texts = [(table, "\n".join(lines).strip("\n")) for table, lines in blocks]
    return "\n\n".join(text if table else f"```text\n{text}\n```" for table, text in texts if text)


def markdown(report):
    info = report["machine"]
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    lines = [
        f"# Benchmark results{' (quick run)' if report['quick'] else ''}",
        "",
        f"`{report['command']}`, {info['date']}, {report['seconds']:.0f} s in all.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {info['cpu']} |",
        f"| cores | {info['usable_cpus']} usable of {info['logical_cpus']} logical |",
        f"| memory | {info['memory_gib']} GiB |",
        f"| load average (1 min) | {info['load_average_start']:.1f} at the start, "
        f"{info['load_average_end']:.1f} at the end |",
        f"| platform | {info['platform']} |",
        f"| versions | {versions} |",
    ]
    for result in report["results"]:
        title = result.get("title", "")
        lines += ["", f"## {result['script']}" + (f": {title}" if title else ""), "",
                  f"`{result['command']}`, {result['seconds']} s", ""]
        if "error" in result:
            lines.append(f"**failed**: {result['error']}")
            if result.get("stdout", "").strip():
                lines += ["", verbatim(result["stdout"])]
        elif "rows" in result:
            lines.append(rows_table(result["columns"], result["rows"]))
        else:
            lines.append(verbatim(result["stdout"]))
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="reduced suite: a smoke run of every script")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these scripts (e.g. bench_eval)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per script (default 900)")
    parser.add_argument("--out-dir", default=str(BENCH), help="where results.json and RESULTS.md go (default bench/)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    scripts = sorted(BENCH.glob("bench_*.py"))
    if args.only:
        wanted = {name.removesuffix(".py") for name in args.only}
        unknown = sorted(wanted - {s.stem for s in scripts})
        if unknown:
            sys.exit(f"--only: no bench/{unknown[0]}.py; scripts: {', '.join(s.stem for s in scripts)}")
        scripts = [s for s in scripts if s.stem in wanted]
    report = {"quick": args.quick, "machine": machine(), "results": [],
              "command": " ".join(["python bench/run_all.py", *(argv if argv is not None else sys.argv[1:])])}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        for script in scripts:
            print(f"[run_all] {script.name} ...", flush=True)
            result = run_script(script, args.quick, args.timeout, scratch)
            print(f"[run_all] {script.name}: {result.get('error', 'done')} in {result['seconds']} s", flush=True)
            report["results"].append(result)
    report["seconds"] = round(time.perf_counter() - began, 1)
    report["machine"]["load_average_end"] = os.getloadavg()[0]
    out = Path(args.out_dir)
    write_json(out / "results.json", report)
    write_text(out / "RESULTS.md", markdown(report))
    print(f"[run_all] {len(scripts)} scripts in {report['seconds']:.0f} s: {out / 'results.json'}, "
          f"{out / 'RESULTS.md'}")
    return report


if __name__ == "__main__":
    main()

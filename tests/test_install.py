"""Every install path resolves to at most one TensorFlow distribution (pip's resolver, dry run).

Several distributions install the same `tensorflow/` package (tensorflow, tensorflow-cpu, ...): two
of them in one environment overwrite each other's files. pip resolves every extra at once against the
package index without installing anything (`pip install --dry-run --report .[cpu,gpu,dev]`), and each
install (cpu,dev; gpu,dev; none) is read from that resolution's dependency graph: the distributions its
requirements reach. Resolved one by one, the cpu,dev and gpu,dev installs gave the same distributions
at the same versions (checked by hand), in twice the time. Wheels only (`--only-binary :all:`, the
project itself excepted): every distribution here ships wheels, and pip skips the source releases.
pip 25.3 and later (the dev extra) read only the wheels' metadata: the index's metadata files, or ranges of
the wheels themselves where an index serves none (`--use-feature=fast-deps`); older pips download every
wheel resolved, ~4 GB with the CUDA libraries. Without the index the test skips.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import urllib.request

import pytest

# Distributions that write the top-level `tensorflow` package.
TENSORFLOW_DISTRIBUTIONS = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel",
                            "tensorflow-macos", "tensorflow-aarch64", "intel-tensorflow",
                            "tf-nightly", "tf-nightly-cpu", "tf-nightly-gpu"}
INDEX = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple/")
RESOLVE_SECONDS = 600


def normalise(name):
    return name.lower().replace("_", "-").replace(".", "-")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The files pip reads to resolve the project, copied so that building its metadata writes nothing here."""
    from conftest import ROOT

    copy = tmp_path_factory.mktemp("project")
    for name in ("setup.cfg", "pyproject.toml", "README.md", "arcface_keras/__init__.py"):
        (copy / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, copy / name)
    try:
        urllib.request.urlopen(INDEX.rstrip("/") + "/pip/", timeout=15).close()
    except OSError as exc:
        pytest.skip(f"package index {INDEX} unreachable ({exc}): install resolution needs it")
    return copy


def resolve(project, extras):
    """The distributions `pip install .[extras]` would install into an empty environment: pip's report items."""
    target = f"{project}[{extras}]"
    report = project / f"report-{extras}.json"
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet", "--only-binary",
               ":all:", "--use-feature=fast-deps", "--report", str(report), target]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=RESOLVE_SECONDS)
    except subprocess.TimeoutExpired:
        pytest.skip(f"pip did not resolve {target} within {RESOLVE_SECONDS} s (slow or unreachable index)")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text())["install"]


def reached(items, extras=()):
    """Names of the distributions among `items` that the project's requirements with `extras` reach, through
    each resolved distribution's requirements (with the extras asked of it)."""
    from packaging.requirements import Requirement

    resolved = {normalise(item["metadata"]["name"]): item["metadata"] for item in items}
    project = next(item["metadata"] for item in items if item.get("is_direct"))
    found, todo = set(), [(project, tuple(extras))]
    while todo:
        metadata, asked = todo.pop()
        for requirement in map(Requirement, metadata.get("requires_dist", [])):
            key = (normalise(requirement.name), tuple(sorted(requirement.extras)))
            wanted = requirement.marker is None or any(requirement.marker.evaluate({"extra": extra})
                                                       for extra in asked or ("",))
            if wanted and key not in found:
                found.add(key)
                todo.append((resolved[key[0]], key[1]))
    return {name for name, _ in found}


INSTALLS = [
    ("cpu,dev", {"tensorflow-cpu" if platform.machine() in ("x86_64", "AMD64") else "tensorflow"}),  # make test
    ("gpu,dev", {"tensorflow"}),  # tensorflow[and-cuda]: the same distribution plus the CUDA libraries
]


@pytest.fixture(scope="module")
def resolution(project):
    """pip's report items for every extra at once."""
    return resolve(project, ",".join(sorted({extra for extras, _ in INSTALLS for extra in extras.split(",")})))


@pytest.mark.parametrize("extras, expected", INSTALLS)
def test_each_install_has_at_most_one_tensorflow(resolution, extras, expected):
    installed = reached(resolution, extras.split(","))
    assert installed & TENSORFLOW_DISTRIBUTIONS == expected
    assert "keras" in installed
    if extras.startswith("gpu") and sys.platform == "linux":
        assert "nvidia-cudnn-cu12" in installed  # the and-cuda extra came along


def test_the_plain_install_has_no_tensorflow(resolution):
    """The models and heads alone (`pip install .`; the JAX backend needs no TensorFlow)."""
    installed = reached(resolution)
    assert not installed & TENSORFLOW_DISTRIBUTIONS and {"keras", "numpy", "mtcnn"} <= installed
    assert not installed & {"jax", "pytest", "onnxruntime"}  # what only the extras ask for stays out

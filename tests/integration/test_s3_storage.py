"""`--storage s3://...` end to end against a local S3 server (moto), through pyarrow.fs.

The driver, Tune's experiment state and every trial's Parquet segments and checkpoints go to
the bucket; nothing is read back from a node-local folder. The endpoint reaches the driver
and the trial workers through ``AWS_ENDPOINT_URL``, as it would on a cluster.
"""

from __future__ import annotations

import logging
import os
import socket

import pyarrow.fs as pafs
import pytest

from analysis.cli import mtrl
from orchestrator.status import read_status
from testkit.ray import assert_rows_exactly_once, read_dataset, tiny_sweep, trials_of

pytestmark = pytest.mark.slow

BUCKET = "sweeps"


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server with one bucket, and the AWS settings pyarrow and boto read."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per S3 request otherwise
    server.start()
    settings = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {key: os.environ.get(key) for key in settings}
    os.environ.update(settings)
    import boto3

    boto3.client("s3").create_bucket(Bucket=BUCKET)
    yield settings["AWS_ENDPOINT_URL"]
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    server.stop()


@pytest.fixture(scope="module")
def local_ray(s3_endpoint):
    import ray

    # Started after the endpoint is in the environment: the trial workers inherit it.
    # log_to_driver=False as `mtrl run` starts its own Ray (ray_connect.ray_connected): workers' output
    # stays off the console, where a dying worker's interpreter-shutdown noise could land.
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


def test_sweep_on_s3_writes_every_row_once_and_resumes_from_the_bucket(tmp_path, capsys, local_ray):
    sweep = tiny_sweep(tmp_path / "s3.yaml", "s3sweep", seeds=2, total_steps=400)
    trials = trials_of(sweep)
    storage = f"s3://{BUCKET}/results"
    assert mtrl(["run", sweep, "--storage", storage]) == 0
    assert "all 2 trials done" in capsys.readouterr().out

    fs, _ = pafs.FileSystem.from_uri(f"s3://{BUCKET}")  # from the URI: honours AWS_ENDPOINT_URL
    root = f"{BUCKET}/results/s3sweep"
    listed = [info.path for info in fs.get_file_info(pafs.FileSelector(root, recursive=True))]
    assert any(path.endswith(".parquet") for path in listed)
    assert any("/checkpoints/" in path or "/tune/" in path for path in listed)

    # The bucket's Parquet, copied down, holds exactly the expected rows.
    local = tmp_path / "copy"
    pafs.copy_files(root, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    assert_rows_exactly_once(str(local), trials)
    assert len(read_dataset(str(local), "evals")) == 2 * 3  # 2 trials x 3 evaluation points x 1 task

    status = read_status(f"{storage}/s3sweep")
    assert [t.state for t in status.trials] == ["done", "done"]

    # The same command again finds the finished sweep in the bucket and runs nothing.
    before = {info.path: info.mtime for info in fs.get_file_info(pafs.FileSelector(f"{root}/metrics", recursive=True))}
    assert mtrl(["run", sweep, "--storage", storage]) == 0
    assert "all 2 trials done" in capsys.readouterr().out
    after = {info.path: info.mtime for info in fs.get_file_info(pafs.FileSelector(f"{root}/metrics", recursive=True))}
    assert after == before


def test_a_missing_bucket_is_refused_in_one_line_before_ray_starts(tmp_path, capsys, s3_endpoint):
    sweep = tiny_sweep(tmp_path / "nobucket.yaml", "nobucket")
    assert mtrl(["run", sweep, "--storage", "s3://no-such-bucket/results"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no-such-bucket" in err and "not writable" in err

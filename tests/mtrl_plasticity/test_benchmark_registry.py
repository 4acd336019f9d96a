"""The task and benchmark registries, and a plugin counter column from the sink to the analysis loader."""

import pyarrow.parquet as pq
import pytest

from envs.multitask import make_task_env
from mtrl_plasticity.benchmarks import (
    MULTI_TASK_BENCHMARKS,
    TASKS,
    benchmark_names,
    get_benchmark,
    register_benchmark,
    register_task,
    unregister,
)
from mtrl_plasticity.errors import RegistryError
from orchestrator import schema


@pytest.fixture
def cleanup():
    names: list[str] = []
    yield names
    for name in reversed(names):
        unregister(name)


def test_the_paper_benchmarks_are_registered_through_the_registry():
    assert benchmark_names()[:3] == ["MT3", "MT5", "MT7"]
    assert [(b.name, b.n_tasks, b.n_experts) for b in MULTI_TASK_BENCHMARKS.values()][:3] == [
        ("MT3", 3, 2), ("MT5", 5, 3), ("MT7", 7, 4)]
    assert TASKS["LavaGapS7-v0"].best_reward == pytest.approx(1 - 0.9 * 8 / 196)
    for name, task in list(TASKS.items())[:8]:  # registered max_steps are the environments' own
        assert make_task_env(name).max_steps == task.max_steps


def test_a_plugin_task_and_benchmark(cleanup):
    cleanup += ["DoorKey-5x5-v0", "PairTest"]
    register_task("DoorKey-5x5-v0", optimal_steps=10, max_steps=250)
    register_benchmark("PairTest", ["Empty-5x5-v0", "DoorKey-5x5-v0"], n_experts=2)
    assert get_benchmark("PairTest").tasks == ("Empty-5x5-v0", "DoorKey-5x5-v0")
    assert get_benchmark("DoorKey-5x5-v0").n_tasks == 1  # a task is a one-task benchmark too
    assert TASKS["DoorKey-5x5-v0"].best_reward == pytest.approx(1 - 0.9 * 10 / 250)
    assert make_task_env("DoorKey-5x5-v0").max_steps == 250
    assert "PairTest" in benchmark_names() and "DoorKey-5x5-v0" in benchmark_names()


def test_a_registered_max_steps_must_be_the_environments(cleanup):
    cleanup.append("Empty-6x6-v0")
    register_task("Empty-6x6-v0", optimal_steps=8, max_steps=100)  # the env says 144
    with pytest.raises(ValueError, match="registered with max_steps=100 but 'MiniGrid-Empty-6x6-v0' has max_steps=144"):
        make_task_env("Empty-6x6-v0")
    from orchestrator.preflight import check_task_env

    with pytest.raises(ValueError, match="the scores would be normalised wrongly"):
        check_task_env("Empty-6x6-v0")


@pytest.mark.parametrize("register,message", [
    (lambda: register_task("Bad-v0", optimal_steps=0, max_steps=10), "optimal_steps must be a positive integer"),
    (lambda: register_task("Bad-v0", optimal_steps=20, max_steps=10), "optimal_steps 20 exceeds max_steps 10"),
    (lambda: register_task("MT3", optimal_steps=2, max_steps=10), "clashes with the benchmark of that name"),
    (lambda: register_benchmark("Solo", ["Empty-5x5-v0"], n_experts=1), "needs two or more distinct tasks"),
    (lambda: register_benchmark("Nope", ["Empty-5x5-v0", "NoSuch-v0"], n_experts=1), "unknown task(s) ['NoSuch-v0']"),
    (lambda: register_benchmark("Pair", ["Empty-5x5-v0", "LavaGapS7-v0"], n_experts=0), "n_experts must be"),
    (lambda: register_benchmark("a/b", ["Empty-5x5-v0", "LavaGapS7-v0"], n_experts=1), "is not folder-safe"),
])
def test_registrations_that_cannot_stand(register, message):
    with pytest.raises(RegistryError) as info:
        register()
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not {"Bad-v0", "Solo", "Nope", "Pair", "a/b"} & set(benchmark_names())


def test_a_clash_with_a_paper_benchmark_names_both_modules():
    namespace = {"__name__": "my_lab.benchmarks"}
    with pytest.raises(RegistryError, match="benchmark 'MT5' from my_lab.benchmarks clashes with the benchmark "
                                            "of that name registered by envs.benchmarks"):
        exec("from mtrl_plasticity import register_benchmark\n"
             "register_benchmark('MT5', ['Empty-5x5-v0', 'LavaGapS7-v0'], n_experts=2)\n", namespace)
    assert get_benchmark("MT5").n_tasks == 5


def test_train_columns_of_a_treatment_with_its_own_counter():
    columns = schema.train_metric_columns(["prune_events", "weights_pruned"])
    assert columns[columns.index("interventions/set_rewires") + 1] == "interventions/weights_pruned"
    assert columns[columns.index("interventions/weights_pruned") + 1].startswith("perf/")
    assert schema.train_metric_columns(["prune_events"]) == schema.TRAIN_METRIC_COLUMNS
    assert schema.train_schema(()) is schema.TRAIN_SCHEMA
    assert schema.train_schema(["weights_pruned"]).field("interventions/weights_pruned").type == "double"
    assert schema.CORE_COUNTERS == ("prune_events", "neurons_recycled", "resets_done", "set_rewires")


def test_a_counter_column_lands_in_parquet_and_the_loader_unions_it(tmp_path):
    from analysis.load import load_train
    from orchestrator.sink import ParquetSink

    def rows(run_key, seed, counters):
        base = {"schema_version": schema.SCHEMA_VERSION, "sweep": "s", "run_key": run_key, "seed": seed, "epoch": 1}
        return [{**base, "step": step, **{c: 0.0 for c in schema.TRAIN_METRIC_COLUMNS},
                 **{schema.counter_column(k): float(v * step) for k, v in counters.items()}} for step in (500, 1000)]

    plugin = ParquetSink(str(tmp_path), "s", "MT3-mtppo-rand-s00", "MT3", "mtppo", "rand",
                         extra_counters=["weights_pruned"])
    plugin.write_segment([], rows("MT3-mtppo-rand-s00", 0, {"weights_pruned": 2}), 0, 1000)
    dense = ParquetSink(str(tmp_path), "s", "MT3-mtppo-dense-s00", "MT3", "mtppo", "dense")
    dense.write_segment([], rows("MT3-mtppo-dense-s00", 0, {}), 0, 1000)
    written = pq.read_schema(plugin.run_files("train")[0]).names
    assert "interventions/weights_pruned" in written and "interventions/prune_events" in written
    frame = load_train(tmp_path).sort_values(["treatment", "step"])
    assert frame.loc[frame.treatment == "dense", "interventions/weights_pruned"].isna().tolist() == [True, True]
    assert frame.loc[frame.treatment == "rand", "interventions/weights_pruned"].tolist() == [1000.0, 2000.0]
    assert len(frame) == 4
